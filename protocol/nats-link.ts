/**
 * A Link over two NATS subjects (one per direction) that keeps the guarantees a WebSocket gives and
 * core NATS does not: frames larger than max_payload travel as checked chunks (chunking.ts); every
 * frame has a sequence number and stays buffered until the peer acknowledges it, so a message lost
 * in a server restart or a failover to another cluster node is resent after the reconnect (or after
 * a retransmission timeout), and a repeat is dropped by its number: nothing lost, nothing counted
 * twice. Heartbeats stand in for a socket's close: a peer silent for `deadAfterMs` is gone.
 */
import { type MsgHdrs, type NatsConnection, type Subscription, headers as natsHeaders } from 'nats';
import { type Reassembly, Reassembler, chunkFrame } from './chunking.js';
import {
  BROADCAST_ID_HEADER,
  BroadcastCache,
  type BroadcastPublisher,
  type BroadcastRef,
} from './nats-broadcast.js';
import { CHUNK_HEADERS, chunkHeaders, chunkInfoOf } from './nats-chunk-headers.js';
import { SEALED_HEADER, sealMessage, unsealMessage } from './nats-sealing.js';
import type { SessionKeys } from './sealing.js';
import type { RejectionReason } from './errors.js';
import type { Link, LinkHandlers } from './transport.js';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { DEFAULT_RETRANSMIT, RetransmitTimeout } from './retransmit-timeout.js';

const H = {
  ...CHUNK_HEADERS,
  control: 'Gf-Ctl',
  ack: 'Gf-Ack',
  reason: 'Gf-Reason',
  broadcastId: BROADCAST_ID_HEADER,
  broadcastSeq: 'Gf-Bseq',
} as const;

/**
 * Control messages: `ack` (I hold every frame up to Gf-Ack), `ping` (an ack that also says I am
 * alive), `resume` (resend after Gf-Ack; answer with your own resume if Gf-Reason is `reply`),
 * `close`, and `ref` (frame Gf-Seq is broadcast Gf-Bseq of publisher Gf-Bid: nats-broadcast.ts).
 */
type Control = 'ack' | 'ping' | 'resume' | 'close' | 'ref';

export interface NatsLinkOptions {
  nc: NatsConnection;
  sendSubject: string;
  recvSubject: string;
  peer: string;
  /** Largest chunk payload: the server's max_payload less room for the headers. */
  chunkBytes: number;
  maxFrameBytes?: number;
  heartbeatMs?: number;
  deadAfterMs?: number;
  /**
   * The first retransmission timeout, before a round trip is measured; then it follows the measured round
   * trips (retransmit-timeout.ts).
   */
  retransmitMs?: number;
  /** Runs when the link ends (the worker closes its own connection here). */
  onEnd?: () => void;
  /** The coordinator's side: where shared frames are offered once for every worker. */
  broadcast?: BroadcastPublisher;
  /** The worker's side: the subject shared frames are offered on (subscribed for the link's life). */
  broadcastSubject?: string;
  /**
   * Bytes of frames sent and not yet acknowledged, at most (default 4 × maxFrameBytes): a peer that stops
   * acknowledging is dropped.
   */
  maxUnackedBytes?: number;
  /** Where the peer joined from (per-source limits). */
  source?: string;
  /** The join pass its join request carried (protocol/join-pass.ts), unchecked. */
  joinPass?: string;
}

interface Unacked {
  frame: Uint8Array;
  sentAt: number;
  /** Sent more than once: its ack times neither copy (Karn). */
  resent: boolean;
}

export class NatsLink implements Link {
  readonly peer: string;
  readonly source: string | undefined;
  readonly joinPass: string | undefined;
  private unackedBytes = 0;
  private handlers: LinkHandlers | undefined;
  private readonly early: Array<() => void> = [];
  private readonly subscription: Subscription;
  private readonly broadcasts: { cache: BroadcastCache; subscription: Subscription } | undefined;
  private readonly reassembler: Reassembler;
  private readonly unacked = new Map<number, Unacked>();
  private sentSeq = 0;
  private lastSent = 0;
  private readonly rto: RetransmitTimeout;
  /** When an ack last acknowledged a frame not acknowledged before: the resend timer counts from there. */
  private lastProgress = 0;
  private lastReceived = Date.now();
  private ackTimer: NodeJS.Timeout | undefined;
  private resumeAskedFor = -1;
  /** The frame whose broadcast this side missed and asked to be resent in full (-1: none). */
  private broadcastMissed = -1;
  private readonly ticker: NodeJS.Timeout;
  private closed = false;
  /** Once the handshake agreed on keys: every message both ways is sealed (nats-sealing.ts). */
  private keys: SessionKeys | undefined;
  /**
   * Whether a sealed message came from the peer yet: until then its plain controls may still be in flight.
   */
  private peerSealed = false;

  constructor(private readonly settings: NatsLinkOptions) {
    this.peer = settings.peer;
    this.source = settings.source;
    this.joinPass = settings.joinPass;
    this.reassembler = new Reassembler(0, settings.maxFrameBytes);
    this.rto = new RetransmitTimeout({
      ...DEFAULT_RETRANSMIT,
      initialMs: settings.retransmitMs ?? DEFAULT_RETRANSMIT.initialMs,
    });
    this.subscription = settings.nc.subscribe(settings.recvSubject, {
      callback: (err, msg) => {
        if (err) return this.finish(`subscription failed: ${err.message}`);
        this.onMessage(msg.headers, msg.data);
      },
    });
    if (settings.broadcastSubject) {
      const cache = new BroadcastCache(settings.maxFrameBytes);
      this.broadcasts = {
        cache,
        subscription: settings.nc.subscribe(settings.broadcastSubject, {
          callback: (err, msg) => err || cache.add(msg.headers, msg.data),
        }),
      };
    }
    const heartbeat = settings.heartbeatMs ?? 1000;
    this.ticker = setInterval(() => this.tick(), Math.min(heartbeat, 500));
  }

  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
    for (const deliver of this.early.splice(0)) deliver();
    // Closed before anyone listened (refused at once): say so, or the owner would wait forever.
    if (this.closedFor !== undefined) handlers.close(this.closedFor);
  }

  private closedFor: string | undefined;

  send(frame: Uint8Array, written?: () => void): void {
    if (this.closed || !this.holdUnacked(frame)) return;
    const seq = ++this.sentSeq;
    this.unacked.set(seq, { frame, sentAt: Date.now(), resent: false });
    this.publishFrame(seq, frame);
    if (written) this.settings.nc.flush().then(written, () => {});
  }

  /**
   * The same frame for many links (the weights): offered once on the broadcast subject, and this
   * link's stream carries only a reference to it. Unacknowledged, it is resent in full, like any frame.
   */
  sendShared(frame: Uint8Array, written?: () => void): void {
    const ref = this.closed ? undefined : this.settings.broadcast?.offer(frame);
    if (!ref) return this.send(frame, written);
    if (!this.holdUnacked(frame)) return;
    const seq = ++this.sentSeq;
    this.unacked.set(seq, { frame, sentAt: Date.now(), resent: false });
    this.control('ref', {
      [H.seq]: String(seq),
      [H.broadcastId]: ref.id,
      [H.broadcastSeq]: String(ref.seq),
      [H.length]: String(ref.length),
      [H.crc]: String(ref.crc),
    });
    if (written) this.settings.nc.flush().then(written, () => {});
  }

  /**
   * Every frame stays buffered until acknowledged; a peer that never acknowledges (gone without a
   * word, or hostile) would make this side hold all it sends. Past the cap the link ends instead.
   */
  private holdUnacked(frame: Uint8Array): boolean {
    const cap = this.settings.maxUnackedBytes ?? 4 * (this.settings.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    if (this.unackedBytes + frame.byteLength <= cap) {
      this.unackedBytes += frame.byteLength;
      return true;
    }
    const detail = `${this.peer} has not acknowledged ${this.unackedBytes} bytes (cap ${cap})`;
    this.report('send_buffer_full', `${detail}: dropped`);
    this.close(detail);
    return false;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.control('close', { [H.reason]: reason.slice(0, 200) });
    this.finish(reason);
  }

  limitFrames(bytes: number): void {
    // Never above what the transport itself was configured for.
    this.reassembler.maxFrameBytes = Math.min(bytes, this.settings.maxFrameBytes ?? bytes);
  }

  secure(keys: SessionKeys): void {
    this.keys = keys;
    this.settings.broadcast?.sealWith(keys.broadcast);
    this.broadcasts?.cache.sealWith(keys.broadcast, (reason, detail) =>
      this.report(reason, `${detail} (a broadcast)`),
    );
  }

  /** After the connection came back: ask the peer for what it sent meanwhile, and offer the same. */
  resync(): void {
    if (!this.closed)
      this.control('resume', { [H.ack]: String(this.reassembler.delivered), [H.reason]: 'reply' });
  }

  private publishFrame(seq: number, frame: Uint8Array): void {
    for (const { info, bytes } of chunkFrame(seq, frame, this.settings.chunkBytes)) {
      if (!this.publish(bytes, chunkHeaders(info))) return;
    }
  }

  /**
   * False when the connection refuses (closed or its reconnect buffer full): the frame stays unacked and is
   * resent.
   */
  private publish(data: Uint8Array, h: MsgHdrs): boolean {
    try {
      if (this.keys)
        this.settings.nc.publish(this.settings.sendSubject, sealMessage(this.keys.send, h, data), {
          headers: SEALED_HEADER(),
        });
      else this.settings.nc.publish(this.settings.sendSubject, data, { headers: h });
      this.lastSent = Date.now();
      return true;
    } catch {
      return false;
    }
  }

  private control(kind: Control, fields: Record<string, string> = {}): void {
    const h = natsHeaders();
    h.set(H.control, kind);
    for (const [k, v] of Object.entries(fields)) h.set(k, v);
    this.publish(new Uint8Array(0), h);
  }

  private onMessage(sealedOrPlain: MsgHdrs | undefined, message: Uint8Array): void {
    if (this.closed) return;
    this.handlers?.received?.(message.byteLength);
    let h = sealedOrPlain;
    let data = message;
    if (this.keys) {
      const opened = unsealMessage(this.keys.receive, sealedOrPlain, message);
      if (!opened.ok) {
        // The peer's last plain acks and pings, sent before it switched, are expected: drop them quietly.
        if (opened.plain && !this.peerSealed && sealedOrPlain?.get(H.control)) return;
        return this.report(opened.reason, `${opened.detail} on ${this.settings.recvSubject}: dropped`);
      }
      this.peerSealed = true;
      ({ headers: h, data } = opened);
    }
    // Only authentic messages count as signs of life: a forger must not keep a dead session open.
    this.lastReceived = Date.now();
    const kind = h?.get(H.control);
    if (kind) return this.onControl(kind as Control, h!);
    const info = chunkInfoOf(h);
    if (!info)
      return this.report('malformed_chunk', `a message from ${this.peer} without valid chunk headers`);
    this.handle(this.reassembler.add(info, data));
  }

  private handle(result: Reassembly): void {
    switch (result.kind) {
      case 'frame':
        this.deliver(result.bytes);
        this.scheduleAck();
        return;
      case 'partial':
        return;
      case 'duplicate':
        return this.report(
          'duplicate_chunk',
          `chunk ${result.part} of frame ${result.seq} from ${this.peer} arrived again: dropped`,
        );
      case 'gap':
      case 'corrupt':
        // Frames sent before our request for a missed broadcast was answered: expected, and already asked
        // for.
        if (result.kind === 'gap' && this.broadcastMissed === result.expected) return;
        this.report(
          result.kind === 'gap' ? 'lost_chunk' : 'corrupt_chunk',
          `${result.detail} (from ${this.peer}): asking for frames from ${result.expected} again`,
        );
        if (this.resumeAskedFor !== result.expected) {
          this.resumeAskedFor = result.expected;
          this.control('resume', { [H.ack]: String(result.expected - 1) });
        }
    }
  }

  private onControl(kind: Control, h: MsgHdrs): void {
    const acked = Number(h.get(H.ack));
    switch (kind) {
      case 'ack':
      case 'ping':
        if (Number.isInteger(acked)) this.dropAcked(acked);
        return;
      case 'resume':
        if (!Number.isInteger(acked)) return;
        this.dropAcked(acked);
        for (const [seq, u] of this.unacked) {
          u.sentAt = Date.now();
          u.resent = true;
          this.publishFrame(seq, u.frame);
        }
        if (h.get(H.reason) === 'reply')
          this.control('resume', { [H.ack]: String(this.reassembler.delivered) });
        return;
      case 'close':
        return this.finish(`peer closed: ${h.get(H.reason) || 'no reason'}`);
      case 'ref':
        return this.onRef(h);
      default:
        return this.report(
          'malformed_chunk',
          `unknown control message ${String(kind).slice(0, 40)} from ${this.peer}`,
        );
    }
  }

  /** A frame of this link that was broadcast: delivered from the cache, or asked for again in full. */
  private onRef(h: MsgHdrs): void {
    const seq = Number(h.get(H.seq));
    const ref: BroadcastRef = {
      id: h.get(H.broadcastId),
      seq: Number(h.get(H.broadcastSeq)),
      length: Number(h.get(H.length)),
      crc: Number(h.get(H.crc)),
    };
    // Out of its place (a repeat, or frames lost before it): handled as any frame's number would be; no bytes
    // are used.
    if (seq !== this.reassembler.expected)
      return this.handle(this.reassembler.acceptWhole(seq, new Uint8Array(0)));
    const frame = this.broadcasts?.cache.take(ref);
    if (frame) return this.handle(this.reassembler.acceptWhole(seq, frame));
    // Missed (joined after it, or lost a chunk): not an error of the peer's, so not reported. Ask once.
    this.broadcastMissed = seq;
    if (this.resumeAskedFor === seq) return;
    this.resumeAskedFor = seq;
    this.control('resume', { [H.ack]: String(seq - 1) });
  }

  private dropAcked(acked: number): void {
    const now = Date.now();
    for (const [seq, u] of this.unacked) {
      if (seq > acked) break;
      if (!u.resent) this.rto.sample(now - u.sentAt);
      this.unackedBytes -= u.frame.byteLength;
      this.unacked.delete(seq);
      this.lastProgress = now;
    }
  }

  private scheduleAck(): void {
    this.resumeAskedFor = -1;
    this.broadcastMissed = -1;
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      this.control('ack', { [H.ack]: String(this.reassembler.delivered) });
    }, 5);
  }

  private tick(): void {
    const now = Date.now();
    const { heartbeatMs = 1000, deadAfterMs = 30_000 } = this.settings;
    if (now - this.lastReceived > deadAfterMs)
      return this.finish(`no message from ${this.peer} for ${(deadAfterMs / 1000).toFixed(0)} s`);
    if (now - this.lastSent >= heartbeatMs)
      this.control('ping', { [H.ack]: String(this.reassembler.delivered) });
    // A frame is resent once the link has gone a timeout without progress since it was sent: while acks keep
    // coming, the frames behind them are queued, not lost (a gap the peer sees, it asks for itself: resume).
    const timeout = this.rto.ms;
    let fired = false;
    for (const [seq, u] of this.unacked) {
      if (now - Math.max(u.sentAt, this.lastProgress) < timeout) continue;
      fired = true;
      u.sentAt = now;
      u.resent = true;
      this.publishFrame(seq, u.frame);
    }
    if (fired) this.rto.backoff();
  }

  private deliver(bytes: Uint8Array): void {
    if (this.handlers) this.handlers.frame(bytes);
    else this.early.push(() => this.handlers?.frame(bytes));
  }

  private report(reason: RejectionReason, detail: string): void {
    this.handlers?.rejected?.(reason, detail);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    clearTimeout(this.ackTimer);
    this.unacked.clear();
    this.unackedBytes = 0;
    this.subscription.unsubscribe();
    this.broadcasts?.subscription.unsubscribe();
    this.settings.onEnd?.();
    this.closedFor = reason;
    this.handlers?.close(reason);
  }
}
