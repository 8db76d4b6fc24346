/**
 * WebSocket transport (ws). Per-message deflate is off on both ends: the client enables it by
 * default and it is ~50× slower on float payloads. Client frames carry a zero mask (see connectWs);
 * `bufferutil` (a dependency) still unmasks natively any masked frame another client sends.
 */
import {
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
  createServer as createHttpServer,
} from 'node:http';
import { type Server as HttpsServer, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { JOIN_PASS_HEADER } from './join-pass.js';
import {
  type ConnectionGuard,
  type Link,
  type LinkHandlers,
  type Listener,
  TransportError,
} from './transport.js';

export interface WsOptions {
  maxFrameBytes?: number;
}

/** A connection that has not asked for the WebSocket upgrade within this time is closed. */
const UPGRADE_TIMEOUT_MS = 10_000;

/** wss:// for the coordinator: its certificate chain and key (PEM). */
export interface WsServerTls {
  cert: Buffer;
  key: Buffer;
}

/** Certificate errors: the server is not who it claims, or not trusted; waiting will not change that. */
const CERTIFICATE_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/;
/** wss:// to a plain ws:// server (or the reverse through a proxy): the scheme is wrong, not the network. */
const WRONG_SCHEME = /WRONG_VERSION_NUMBER|HPE_INVALID/;

/**
 * ws cuts a connection (close 1009) on a message over its maxPayload before anyone sees it. Setting
 * it a little above the decoder's limit lets moderately oversized frames reach the decoder, where
 * they are rejected, logged and counted as too_large like every other bad frame.
 */
const wsMaxPayload = (options: WsOptions) => (options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) + (1 << 20);

/**
 * Sending: frames handed to ws whose write has not completed count as in flight. Past HIGH_WATER
 * further frames wait in order in the link's queue until writes complete (backpressure: a slow
 * reader is fed as fast as it reads, no faster); past the cap (in flight + queued) the peer is not
 * reading at all and is dropped, before it can make the coordinator hold gigabytes for it.
 */
const HIGH_WATER_BYTES = 16 * 1024 * 1024;
/** An honest peer answers a close frame within milliseconds. */
const CLOSE_GRACE_MS = 1000;
const sendCapOf = (options: WsOptions) => 4 * (options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

class WsLink implements Link {
  private handlers: LinkHandlers | undefined;
  /** Why the link closed; undefined while open. */
  private closedFor: string | undefined;
  private inFlight = 0;
  private queued = 0;
  private readonly queue: Array<{ frame: Uint8Array; written?: () => void }> = [];

  /**
   * `raw`: the accepted TCP (or TLS) socket, whose reads are counted as they arrive, before ws assembles a
   * message.
   */
  constructor(
    private readonly socket: WebSocket,
    readonly peer: string,
    readonly confidential: boolean,
    private readonly sendCap: number,
    raw?: Socket,
    readonly source?: string,
    readonly joinPass?: string,
  ) {
    socket.binaryType = 'nodebuffer';
    raw?.on('data', (chunk: Buffer) => this.handlers?.received?.(chunk.byteLength));
    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.close('text frames are not part of the protocol');
        return;
      }
      this.handlers?.frame(toBytes(data));
    });
    socket.on('close', (code, reason) =>
      this.finish(`closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`),
    );
    socket.on('error', (err) => this.finish(`error: ${err.message}`));
  }

  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
    // Closed before anyone listened (refused at once): say so, or the owner would wait forever.
    if (this.closedFor !== undefined) handlers.close(this.closedFor);
  }

  send(frame: Uint8Array, written?: () => void): void {
    if (this.closedFor !== undefined || this.socket.readyState !== WebSocket.OPEN) return;
    if (this.inFlight + this.queued + frame.byteLength > this.sendCap) {
      const detail = `${this.peer} is not reading: ${this.inFlight + this.queued} bytes wait to be sent to it (cap ${this.sendCap})`;
      this.handlers?.rejected?.('send_buffer_full', `${detail}: dropped`);
      return this.close(detail);
    }
    if (this.queue.length > 0 || this.inFlight >= HIGH_WATER_BYTES) {
      this.queue.push({ frame, written });
      this.queued += frame.byteLength;
      return;
    }
    this.write(frame, written);
  }

  private write(frame: Uint8Array, written?: () => void): void {
    this.inFlight += frame.byteLength;
    // A failed write closes the socket, which finish() reports; the callback only times success.
    this.socket.send(frame, { binary: true }, (err) => {
      this.inFlight -= frame.byteLength;
      if (!err) written?.();
      this.drain();
    });
  }

  private drain(): void {
    while (this.queue.length > 0 && this.inFlight < HIGH_WATER_BYTES && this.closedFor === undefined) {
      const next = this.queue.shift()!;
      this.queued -= next.frame.byteLength;
      this.write(next.frame, next.written);
    }
  }

  close(reason: string): void {
    if (this.closedFor !== undefined) return;
    // Close reasons are limited to 123 bytes by the WebSocket spec.
    this.socket.close(1000, Buffer.from(reason).subarray(0, 123).toString());
    // ws waits 30 s for the peer's answer, reading all the while: a peer we drop gets a second.
    setTimeout(() => this.socket.terminate(), CLOSE_GRACE_MS).unref();
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.closedFor !== undefined) return;
    this.closedFor = reason;
    this.queue.length = 0;
    this.queued = 0;
    this.handlers?.close(reason);
  }
}

/**
 * Every TCP connection the server accepted, from accept to close, upgraded or not: a socket that never
 * finishes the WebSocket upgrade holds a slot of the guard's --max-connections like a link does, and is
 * closed after the guard's upgrade time; at close, every one of them is destroyed.
 */
class Connections {
  private readonly open = new Set<Socket>();
  /** Sockets the HTTP layer reads (the TLS socket under wss://), until their upgrade. */
  private readonly awaitingUpgrade = new Map<Duplex, NodeJS.Timeout>();
  private guard: ConnectionGuard | undefined;
  private closing = false;

  constructor(private readonly upgradeTimeoutMs: number) {}

  /** A TCP connection, as the server accepted it (before TLS). */
  accepted(socket: Socket): void {
    const peer = `ws ${socket.remoteAddress}:${socket.remotePort}`;
    if (this.closing) return void socket.destroy();
    const max = this.guard?.maxConnections;
    if (max !== undefined && this.open.size >= max) {
      this.guard?.refused(peer, this.open.size);
      return void socket.destroy();
    }
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }

  /** The socket HTTP will read a request from (the TCP socket, or the TLS one once its handshake is done). */
  reading(socket: Duplex): void {
    const timer = setTimeout(() => {
      this.awaitingUpgrade.delete(socket);
      socket.destroy();
    }, this.upgradeTimeoutMs);
    timer.unref();
    this.awaitingUpgrade.set(socket, timer);
    socket.once('close', () => this.upgraded(socket));
  }

  /** Its upgrade request arrived: from now on it is a link's (or ws refuses it and closes it). */
  upgraded(socket: Duplex): void {
    clearTimeout(this.awaitingUpgrade.get(socket));
    this.awaitingUpgrade.delete(socket);
  }

  use(guard: ConnectionGuard): void {
    this.guard = guard;
  }

  destroyAll(): void {
    this.closing = true;
    for (const timer of this.awaitingUpgrade.values()) clearTimeout(timer);
    this.awaitingUpgrade.clear();
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}

/** A plain HTTP request on the WebSocket port: answered, and the connection closed. */
function upgradeRequired(_request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(426, { Connection: 'close', 'Content-Type': 'text/plain' });
  response.end('gradfleet speaks WebSocket here\n');
}

export async function listenWs(
  host: string,
  port: number,
  options: WsOptions & {
    tls?: WsServerTls;
    /** A connection that has not asked for the upgrade by then is closed (default 10 s). */
    upgradeTimeoutMs?: number;
  } = {},
): Promise<Listener> {
  const upgradeTimeoutMs = options.upgradeTimeoutMs ?? UPGRADE_TIMEOUT_MS;
  let http: HttpServer | HttpsServer;
  if (options.tls) {
    try {
      // The TLS handshake is on the way to the upgrade: it gets the same time (Node's default is 120 s).
      http = createHttpsServer(
        { cert: options.tls.cert, key: options.tls.key, handshakeTimeout: upgradeTimeoutMs },
        upgradeRequired,
      );
    } catch (err) {
      throw new TransportError(`cannot use the TLS certificate and key: ${(err as Error).message}`, {
        permanent: true,
      });
    }
  } else http = createHttpServer(upgradeRequired);
  const tls = options.tls !== undefined;
  const connections = new Connections(upgradeTimeoutMs);
  // 'connection' is the TCP socket in both cases; HTTP reads the TLS socket under wss://.
  http.on('connection', (socket: Socket) => {
    connections.accepted(socket);
    if (!tls && !socket.destroyed) connections.reading(socket);
  });
  if (tls) http.on('secureConnection', (socket: Duplex) => connections.reading(socket));
  http.on('upgrade', (request: IncomingMessage) => connections.upgraded(request.socket));
  const server = new WebSocketServer({
    server: http,
    maxPayload: wsMaxPayload(options),
    perMessageDeflate: false,
  });
  // ws re-emits the http server's errors; a failed listen is reported by the promise below, and an 'error'
  // with no listener would end the process instead.
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    http.once('listening', resolve);
    http.once('error', (err: Error) =>
      reject(new TransportError(`cannot listen on ${host}:${port}: ${err.message}`)),
    );
    http.listen(port, host);
  });
  const address = http.address() as AddressInfo;
  let onLink: (link: Link) => void = (link) => link.close('not accepting workers yet');
  server.on('connection', (socket, request) => {
    const remote = request.socket as Socket;
    const pass = request.headers[JOIN_PASS_HEADER];
    onLink(
      new WsLink(
        socket,
        `ws ${remote.remoteAddress}:${remote.remotePort}`,
        tls,
        sendCapOf(options),
        remote,
        remote.remoteAddress,
        typeof pass === 'string' ? pass : undefined,
      ),
    );
  });
  return {
    url: `${tls ? 'wss' : 'ws'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    onLink: (handler) => (onLink = handler),
    guard: (guard) => connections.use(guard),
    close: () =>
      new Promise<void>((resolve) => {
        // Links, sockets on their way to the upgrade, and idle HTTP connections: none is waited for.
        for (const client of server.clients) client.terminate();
        connections.destroyAll();
        server.close(() => http.close(() => resolve()));
      }),
  };
}

/**
 * RFC 6455 masks client frames so that scripts in browsers cannot poison caching proxies with
 * chosen bytes. Both ends here are gradfleet processes, so the client uses an all-zero mask, which
 * ws recognises and skips: no XOR pass and no copy of a 14 MB gradient on either side.
 */
const zeroMask = (mask: Uint8Array) => mask.fill(0);

/** `joinPass`: presented in the upgrade request (protocol/join-pass.ts), when the worker holds a secret. */
export async function connectWs(
  url: string,
  options: WsOptions & { ca?: Buffer; joinPass?: string } = {},
): Promise<Link> {
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    maxPayload: wsMaxPayload(options),
    generateMask: zeroMask,
    ca: options.ca,
    headers: options.joinPass === undefined ? undefined : { [JOIN_PASS_HEADER]: options.joinPass },
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const untrusted = CERTIFICATE_ERRORS.test(err.code ?? '');
      const wrongScheme = WRONG_SCHEME.test(`${err.code ?? ''} ${err.message}`);
      const hint = untrusted
        ? " (the coordinator's certificate is not trusted: pass --tls-ca with the CA that signed it)"
        : wrongScheme
          ? ' (does the coordinator serve ws:// rather than wss://, or the reverse?)'
          : '';
      reject(
        new TransportError(`cannot connect to ${url}: ${err.message}${hint}`, {
          permanent: untrusted || wrongScheme,
        }),
      );
    });
  });
  return new WsLink(socket, `ws ${url}`, url.startsWith('wss://'), sendCapOf(options));
}
