/**
 * A link that speaks messages: decodes and validates every incoming frame, hands valid ones to the
 * role's handler, and turns every bad one into a counted, logged rejection instead of an exception.
 */
import type { Logger } from 'pino';
import { DEFAULT_MAX_FRAME_BYTES, type Frame, decodeFrame, encodeFrame } from './codec.js';
import { type ErrorCode, ProtocolError, type RejectionReason } from './errors.js';
import type { Message } from './messages.js';
import type { SharedSecret } from './auth.js';
import { type Handshake, type SessionKeys, sessionKeys } from './sealing.js';
import type { Link } from './transport.js';
import type { WireDtype } from './wire-dtype.js';

/** Rejections by reason: protocol checks plus the roles' own (e.g. a contribution nobody asked for). */
export class RejectionCounts {
  readonly byReason: Partial<Record<RejectionReason, number>> = {};

  /** `onRecord` sees every rejection as it happens (the metrics' counter). */
  constructor(private readonly onRecord?: (reason: RejectionReason) => void) {}

  record(reason: RejectionReason): void {
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1;
    this.onRecord?.(reason);
  }

  get total(): number {
    return Object.values(this.byReason).reduce((a, b) => a + (b ?? 0), 0);
  }
}

/** Where a role counts its traffic (metrics); every hook is optional and must be cheap. */
export interface ChannelMeter {
  /** A frame encoded by this channel (weights shared by many are encoded elsewhere). */
  encoded?(seconds: number): void;
  sent?(bytes: number): void;
  /** A frame written out to the transport, `seconds` after it was handed over. */
  delivered?(seconds: number): void;
  received?(bytes: number): void;
}

export interface ChannelOptions<In extends Message> {
  log: Logger;
  /** The message types this side receives (its peer's direction). */
  accepts: ReadonlyArray<In['type']>;
  /** A frame that decoded but is not of `accepts`; by default rejected as unexpected_message. */
  onUnexpected?(message: Message): void;
  rejections: RejectionCounts;
  maxFrameBytes?: number;
  /**
   * Tell the peer why its frame was rejected. Only one side of a link may do this: if both did, two
   * peers that cannot read each other's frames would bounce error frames forever.
   */
  replyToRejections: boolean;
  onMessage(frame: Frame<In>): void;
  onClose(reason: string): void;
  /** Raw bytes the link read, before decoding (the pool charges peers not yet admitted for them). */
  onWireBytes?(bytes: number): void;
}

/** A link speaking messages: `In` is what the peer may send us, `Out` what we send it. */
export class Channel<In extends Message = Message, Out extends Message = Message> {
  bytesIn = 0;
  bytesOut = 0;
  /** Set by the role once it knows who the peer is (a worker's id arrives with its hello). */
  meter: ChannelMeter | undefined;
  private frameLimit: number | undefined;

  /**
   * Largest frame decoded; a role may keep it small until the peer has authenticated. A link that
   * assembles frames itself (NATS) is held to it too, so no claim of a length allocates past it.
   */
  get maxFrameBytes(): number | undefined {
    return this.frameLimit;
  }

  set maxFrameBytes(bytes: number | undefined) {
    this.frameLimit = bytes;
    this.link.limitFrames?.(bytes ?? DEFAULT_MAX_FRAME_BYTES);
  }

  constructor(
    readonly link: Link,
    private readonly options: ChannelOptions<In>,
  ) {
    this.maxFrameBytes = options.maxFrameBytes;
    link.attach({
      frame: (bytes) => this.receive(bytes),
      close: (reason) => options.onClose(reason),
      // The transport recovers these itself (resends): count and log, never answer.
      rejected: (reason, detail) => {
        options.rejections.record(reason);
        options.log.warn({ peer: this.peer, reason }, detail);
      },
      received: options.onWireBytes,
    });
  }

  get peer(): string {
    return this.link.peer;
  }

  /** Set once the handshake agreed on keys and the link does not seal by itself. */
  private sealing: SessionKeys | undefined;

  /**
   * From now on every frame out is sealed and every frame in must be (sealing.ts). Called by both
   * sides at the same point of the ordered stream: the worker right after sending its auth, the
   * coordinator on accepting it. A TLS link needs none of it.
   */
  secure(secret: SharedSecret, handshake: Handshake, role: 'coordinator' | 'worker'): void {
    if (this.link.confidential) return;
    // A link that seals itself may lose messages and resend them under new counters; frames the channel seals
    // never are.
    if (this.link.secure) return this.link.secure(sessionKeys(secret, handshake, role, 'growing'));
    this.sealing = sessionKeys(secret, handshake, role, 'strict');
  }

  /** Tensor payloads travel in `wire` (set once the run's wire dtype is agreed). */
  wire: WireDtype = 'f32';

  send(message: Out, payload?: Float32Array): void {
    const started = performance.now();
    const frame = encodeFrame(message, payload, { dtype: payload && payload.length > 0 ? this.wire : 'f32' });
    this.meter?.encoded?.((performance.now() - started) / 1000);
    this.write(frame, false);
  }

  /** For frames encoded once and sent to many (weights): the transport may publish them once for all. */
  sendShared(frame: Uint8Array): void {
    this.write(frame, true);
  }

  private write(frame: Uint8Array, shared: boolean): void {
    if (this.sealing) {
      // Each link has its own key: a frame shared by many is sealed once per link.
      frame = this.sealing.send.seal(frame);
      shared = false;
    }
    this.bytesOut += frame.byteLength;
    const meter = this.meter;
    meter?.sent?.(frame.byteLength);
    const link = this.link;
    const send = (written?: () => void) =>
      shared && link.sendShared ? link.sendShared(frame, written) : link.send(frame, written);
    if (!meter?.delivered) return send();
    const handed = performance.now();
    send(() => meter.delivered?.((performance.now() - handed) / 1000));
  }

  /** Hears every rejection this channel's role makes, after it is counted (the pool's abuse watch). */
  onRejected: ((reason: RejectionReason) => void) | undefined;

  /** Counts and logs a rejection found by the role (after decoding), naming the peer. */
  reject(reason: RejectionReason, detail: string): void {
    this.options.rejections.record(reason);
    this.options.log.warn({ peer: this.peer, reason }, `rejected a frame from ${this.peer}: ${detail}`);
    if (this.options.replyToRejections) this.trySendError(reason, detail);
    this.onRejected?.(reason);
  }

  private trySendError(code: ErrorCode, message: string): void {
    try {
      const frame = encodeFrame({ type: 'error', code, message: message.slice(0, 4096) });
      this.link.send(this.sealing ? this.sealing.send.seal(frame) : frame);
    } catch {
      // The peer is gone or the link is closing: the rejection is already counted and logged.
    }
  }

  private accepts(frame: Frame): frame is Frame<In> {
    return (this.options.accepts as readonly string[]).includes(frame.message.type);
  }

  private receive(bytes: Uint8Array): void {
    this.bytesIn += bytes.byteLength;
    this.meter?.received?.(bytes.byteLength);
    if (this.sealing) {
      const opened = this.sealing.receive.open(bytes);
      if (!opened.ok) return this.reject(opened.reason, opened.detail);
      bytes = opened.plaintext;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, { maxFrameBytes: this.maxFrameBytes });
    } catch (err) {
      if (err instanceof ProtocolError) return this.reject(err.reason, err.message);
      return this.reject('malformed_header', (err as Error).message);
    }
    if (!this.accepts(frame)) {
      if (this.options.onUnexpected) return this.options.onUnexpected(frame.message);
      return this.reject('unexpected_message', `${frame.message.type} is not a message this side receives`);
    }
    try {
      this.options.onMessage(frame);
    } catch (err) {
      // A handler that throws on a peer's message must not take the process down with it.
      if (err instanceof ProtocolError) return this.reject(err.reason, err.message);
      this.options.log.error(
        { peer: this.peer, err },
        `handling ${frame.message.type} from ${this.peer} failed`,
      );
      this.trySendError('internal', (err as Error).message);
    }
  }
}
