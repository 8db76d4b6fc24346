/**
 * WebSocket transport (ws). Per-message deflate is off on both ends: the client enables it by
 * default and it is ~50× slower on float payloads. Client frames carry a zero mask (see connectWs);
 * `bufferutil` (a dependency) still unmasks natively any masked frame another client sends.
 */
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { type Link, type LinkHandlers, type Listener, TransportError } from './transport.js';

export interface WsOptions {
  maxFrameBytes?: number;
}

/**
 * ws cuts a connection (close 1009) on a message over its maxPayload before anyone sees it. Setting
 * it a little above the decoder's limit lets moderately oversized frames reach the decoder, where
 * they are rejected, logged and counted as too_large like every other bad frame.
 */
const wsMaxPayload = (options: WsOptions) => (options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) + (1 << 20);

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

class WsLink implements Link {
  private handlers: LinkHandlers | undefined;
  private closed = false;

  constructor(private readonly socket: WebSocket, readonly peer: string) {
    socket.binaryType = 'nodebuffer';
    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.close('text frames are not part of the protocol');
        return;
      }
      this.handlers?.frame(toBytes(data));
    });
    socket.on('close', (code, reason) => this.finish(`closed (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
    socket.on('error', (err) => this.finish(`error: ${err.message}`));
  }

  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
  }

  send(frame: Uint8Array, written?: () => void): void {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) return;
    // A failed write closes the socket, which finish() reports; the callback only times success.
    this.socket.send(frame, { binary: true }, written && ((err) => {
      if (!err) written();
    }));
  }

  close(reason: string): void {
    if (this.closed) return;
    // Close reasons are limited to 123 bytes by the WebSocket spec.
    this.socket.close(1000, Buffer.from(reason).subarray(0, 123).toString());
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close(reason);
  }
}

export async function listenWs(host: string, port: number, options: WsOptions = {}): Promise<Listener> {
  const server = new WebSocketServer({ host, port, maxPayload: wsMaxPayload(options), perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err) => reject(new TransportError(`cannot listen on ${host}:${port}: ${err.message}`)));
  });
  const address = server.address() as AddressInfo;
  let onLink: (link: Link) => void = (link) => link.close('not accepting workers yet');
  server.on('connection', (socket, request) => {
    const remote = request.socket;
    onLink(new WsLink(socket, `ws ${remote.remoteAddress}:${remote.remotePort}`));
  });
  return {
    url: `ws://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    onLink: (handler) => (onLink = handler),
    close: () => new Promise<void>((resolve) => {
      for (const client of server.clients) client.terminate();
      server.close(() => resolve());
    }),
  };
}

/**
 * RFC 6455 masks client frames so that scripts in browsers cannot poison caching proxies with
 * chosen bytes. Both ends here are gradfleet processes, so the client uses an all-zero mask, which
 * ws recognises and skips: no XOR pass and no copy of a 14 MB gradient on either side.
 */
const zeroMask = (mask: Uint8Array) => mask.fill(0);

export async function connectWs(url: string, options: WsOptions = {}): Promise<Link> {
  const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: wsMaxPayload(options), generateMask: zeroMask });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', (err) => reject(new TransportError(`cannot connect to ${url}: ${err.message}`)));
  });
  return new WsLink(socket, `ws ${url}`);
}
