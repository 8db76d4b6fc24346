/**
 * A link that speaks messages: decodes and validates every incoming frame, hands valid ones to the
 * role's handler, and turns every bad one into a counted, logged rejection instead of an exception.
 */
import type { Logger } from 'pino';
import { type Frame, decodeFrame, encodeFrame } from './codec.js';
import { ProtocolError } from './errors.js';
import type { Message } from './messages.js';
import type { Link } from './transport.js';
import type { WireDtype } from './wire-dtype.js';

/** Rejections by reason: protocol checks plus the roles' own (e.g. a contribution nobody asked for). */
export class RejectionCounts {
  readonly byReason: Record<string, number> = {};

  record(reason: string): void {
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1;
  }

  get total(): number {
    return Object.values(this.byReason).reduce((a, b) => a + b, 0);
  }
}

export interface ChannelOptions {
  log: Logger;
  rejections: RejectionCounts;
  maxFrameBytes?: number;
  /**
   * Tell the peer why its frame was rejected. Only one side of a link may do this: if both did, two
   * peers that cannot read each other's frames would bounce error frames forever.
   */
  replyToRejections: boolean;
  onMessage(frame: Frame): void;
  onClose(reason: string): void;
}

export class Channel {
  bytesIn = 0;
  bytesOut = 0;

  constructor(readonly link: Link, private readonly options: ChannelOptions) {
    link.attach({
      frame: (bytes) => this.receive(bytes),
      close: (reason) => options.onClose(reason),
    });
  }

  get peer(): string {
    return this.link.peer;
  }

  /** Tensor payloads travel in `wire` (set once the run's wire dtype is agreed). */
  wire: WireDtype = 'f32';

  send(message: Message, payload?: Float32Array): void {
    this.sendEncoded(encodeFrame(message, payload, { dtype: payload && payload.length > 0 ? this.wire : 'f32' }));
  }

  /** For frames encoded once and sent to many (weights). */
  sendEncoded(frame: Uint8Array): void {
    this.bytesOut += frame.byteLength;
    this.link.send(frame);
  }

  /** Counts and logs a rejection found by the role (after decoding), naming the peer. */
  reject(reason: string, detail: string): void {
    this.options.rejections.record(reason);
    this.options.log.warn({ peer: this.peer, reason }, `rejected a frame from ${this.peer}: ${detail}`);
    if (this.options.replyToRejections) this.trySendError(reason, detail);
  }

  private trySendError(code: string, message: string): void {
    try {
      this.link.send(encodeFrame({ type: 'error', code, message: message.slice(0, 4096) }));
    } catch {
      // The peer is gone or the link is closing: the rejection is already counted and logged.
    }
  }

  private receive(bytes: Uint8Array): void {
    this.bytesIn += bytes.byteLength;
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, { maxFrameBytes: this.options.maxFrameBytes });
    } catch (err) {
      if (err instanceof ProtocolError) return this.reject(err.reason, err.message);
      return this.reject('malformed_header', (err as Error).message);
    }
    try {
      this.options.onMessage(frame);
    } catch (err) {
      // A handler that throws on a peer's message must not take the process down with it.
      if (err instanceof ProtocolError) return this.reject(err.reason, err.message);
      this.options.log.error({ peer: this.peer, err }, `handling ${frame.message.type} from ${this.peer} failed`);
      this.trySendError('internal', (err as Error).message);
    }
  }
}
