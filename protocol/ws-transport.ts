/**
 * WebSocket transport (ws). Per-message deflate is off on both ends: the client enables it by
 * default and it is ~50× slower on float payloads. Client frames carry a zero mask (see connectWs);
 * `bufferutil` (a dependency) still unmasks natively any masked frame another client sends.
 */
import { type Server as HttpsServer, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { type Link, type LinkHandlers, type Listener, TransportError } from './transport.js';

export interface WsOptions {
  maxFrameBytes?: number;
}

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

export async function listenWs(
  host: string,
  port: number,
  options: WsOptions & { tls?: WsServerTls } = {},
): Promise<Listener> {
  const common = { maxPayload: wsMaxPayload(options), perMessageDeflate: false };
  let https: HttpsServer | undefined;
  if (options.tls) {
    try {
      https = createHttpsServer({ cert: options.tls.cert, key: options.tls.key });
    } catch (err) {
      throw new TransportError(`cannot use the TLS certificate and key: ${(err as Error).message}`, {
        permanent: true,
      });
    }
  }
  const server = https
    ? new WebSocketServer({ server: https, ...common })
    : new WebSocketServer({ host, port, ...common });
  await new Promise<void>((resolve, reject) => {
    const emitter = https ?? server;
    emitter.once('listening', resolve);
    emitter.once('error', (err: Error) =>
      reject(new TransportError(`cannot listen on ${host}:${port}: ${err.message}`)),
    );
    https?.listen(port, host);
  });
  const address = (https ?? server).address() as AddressInfo;
  let onLink: (link: Link) => void = (link) => link.close('not accepting workers yet');
  server.on('connection', (socket, request) => {
    const remote = request.socket;
    onLink(
      new WsLink(
        socket,
        `ws ${remote.remoteAddress}:${remote.remotePort}`,
        https !== undefined,
        sendCapOf(options),
        remote,
        remote.remoteAddress,
      ),
    );
  });
  return {
    url: `${https ? 'wss' : 'ws'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    onLink: (handler) => (onLink = handler),
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => (https ? https.close(() => resolve()) : resolve()));
      }),
  };
}

/**
 * RFC 6455 masks client frames so that scripts in browsers cannot poison caching proxies with
 * chosen bytes. Both ends here are gradfleet processes, so the client uses an all-zero mask, which
 * ws recognises and skips: no XOR pass and no copy of a 14 MB gradient on either side.
 */
const zeroMask = (mask: Uint8Array) => mask.fill(0);

export async function connectWs(url: string, options: WsOptions & { ca?: Buffer } = {}): Promise<Link> {
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    maxPayload: wsMaxPayload(options),
    generateMask: zeroMask,
    ca: options.ca,
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
