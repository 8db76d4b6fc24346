/**
 * A Link over two NATS subjects (one per direction) that keeps the guarantees a WebSocket gives and
 * core NATS does not: frames larger than max_payload travel as checked chunks (chunking.ts); every
 * chunk has a number in its direction and stays buffered until the peer acknowledges it, so a message
 * lost in a server restart or a failover to another cluster node is resent after the reconnect (or
 * after a retransmission timeout), and a repeat is dropped by its number: nothing lost, nothing counted
 * twice. As in TCP, at most a window of bytes is out unacknowledged, acks (cumulative, with the ranges
 * held beyond a gap) clock new chunks out, and only chunks shown lost are sent again (send-window.ts,
 * chunk-acks.ts): resending whole frames on a fixed timer collapsed under load (#32). Heartbeats stand
 * in for a socket's close: a peer silent for `deadAfterMs` is gone.
 */
import { type MsgHdrs, type NatsConnection, type Subscription, headers as natsHeaders } from 'nats';
import { type ChunkInfo, type Reassembly, Reassembler, chunkFrame } from './chunking.js';
import { type ChunkRange, ReceiveWindow, formatRanges, parseRanges } from './chunk-acks.js';
import {
  BROADCAST_ID_HEADER,
  BroadcastCache,
  type BroadcastPublisher,
  type BroadcastRef,
  type Offered,
  broadcastHeaders,
} from './nats-broadcast.js';
import { CHUNK_HEADERS, chunkHeaders, chunkInfoOf } from './nats-chunk-headers.js';
import { SEALED_HEADER, sealMessage, unsealMessage } from './nats-sealing.js';
import type { SessionKeys } from './sealing.js';
import type { RejectionReason } from './errors.js';
import type { Link, LinkHandlers } from './transport.js';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { DEFAULT_RETRANSMIT, RetransmitTimeout } from './retransmit-timeout.js';
import { SendWindow } from './send-window.js';

const H = {
  ...CHUNK_HEADERS,
  chunk: 'Gf-Chunk',
  control: 'Gf-Ctl',
  ack: 'Gf-Ack',
  sack: 'Gf-Sack',
  want: 'Gf-Want',
  fresh: 'Gf-Fresh',
  tx: 'Gf-Tx',
  echo: 'Gf-Echo',
  reason: 'Gf-Reason',
  broadcastId: BROADCAST_ID_HEADER,
  broadcastSeq: 'Gf-Bseq',
} as const;

/**
 * Control messages: `ack` (I hold every chunk up to Gf-Ack and the ranges in Gf-Sack), `ping` (an ack that
 * also says I am alive), `resume` (an ack after a reconnect: send again what I do not hold; answer with your
 * own resume if Gf-Reason is `reply`), `close`, `ref` (chunk Gf-Chunk is frame Gf-Seq, broadcast Gf-Bseq of
 * publisher Gf-Bid: nats-broadcast.ts), `want` (send chunk Gf-Chunk again; for a `ref`, the parts Gf-Want of
 * its broadcast, or all) and `fill` (a part of a broadcast, sent over the session because it was missed).
 */
type Control = 'ack' | 'ping' | 'resume' | 'close' | 'ref' | 'want' | 'fill';

/**
 * The window's ceiling, as a number of chunks, unless set (2 MiB with the 256 KiB chunks nats-transport.ts
 * uses). A window limits a link to W per round trip, and a round trip through a server on a busy machine is
 * tens to hundreds of ms (measured on the simulated cluster: with 4 chunks, 8 workers at 500 Mbit/s moved
 * their gradients slower than with no window at all); the queue all windows can build at a central server
 * (8 workers: 16 MiB, 0.27 s at 500 Mbit/s) stays well under the 1 s floor of the retransmission timeout
 * and the server's 64 MB slow-consumer limit.
 */
const DEFAULT_WINDOW_CHUNKS = 8;
/** At least this, however small the chunks: a window of a few tiny chunks would stall on every round trip. */
const MIN_WINDOW_BYTES = 256 * 1024;
/** How far ahead of a gap a chunk may be numbered and still be held. */
const MAX_CHUNKS_AHEAD = 4096;

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
  /**
   * Bytes out unacknowledged at most, each way (default: 8 chunks, at least 256 KiB); the peer holds up to
   * twice this beyond a gap.
   */
  windowBytes?: number;
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

/** What one numbered chunk of this side's stream carries, kept until the peer acknowledges it. */
type Outbound =
  | { kind: 'chunk'; info: ChunkInfo; bytes: Uint8Array; written?: () => void }
  | {
      kind: 'ref';
      seq: number;
      offered: Offered;
      frameBytes: number;
      written?: () => void;
      /** When parts of it were last sent over the session on request, and which. */
      filled?: { at: number; asked: string };
    };

/** What one numbered chunk of the peer's stream carried, held while a gap before it is filled. */
type Inbound =
  | { kind: 'chunk'; info: ChunkInfo; data: Uint8Array }
  | { kind: 'ref'; seq: number; ref: BroadcastRef; fresh: boolean };

/** Used (in its place), refused (not acknowledged: the peer sends it again), or waiting for a broadcast. */
type Consumed = 'used' | 'refused' | 'waiting';

const heldBytesOf = (o: Outbound) => (o.kind === 'chunk' ? o.bytes.byteLength : o.frameBytes);

export class NatsLink implements Link {
  readonly peer: string;
  readonly source: string | undefined;
  readonly joinPass: string | undefined;
  private unackedBytes = 0;
  private handlers: LinkHandlers | undefined;
  private readonly early: Array<() => void> = [];
  private readonly subscription: Subscription;
  private readonly broadcastSubscription: Subscription | undefined;
  /** Broadcasts received (or filled in over this session), until a `ref` claims one. */
  private readonly cache: BroadcastCache;
  private readonly reassembler: Reassembler;
  private readonly window: SendWindow<Outbound>;
  private readonly arrivals: ReceiveWindow<Inbound>;
  private sentSeq = 0;
  private lastSent = 0;
  private readonly rto: RetransmitTimeout;
  /** When an ack last acknowledged a chunk not acknowledged before: the resend timer counts from there. */
  private lastProgress = 0;
  private lastReceived = Date.now();
  private ackPending = false;
  /** Something arrived since the last ack. */
  private ackDirty = false;
  /** Frames completed by the chunks just used, handed on once the ack is out. */
  private readonly ready: Uint8Array[] = [];
  /** The transmission id of the last numbered chunk that arrived: acks echo it (send-window.ts). */
  private lastTx = 0;
  /** The `ref` at the head of the peer's stream whose broadcast is still missing parts, and when we asked. */
  private waitingRef:
    | {
        n: number;
        ref: BroadcastRef;
        askedAt: number;
        asks: number;
        /** When a part of it last arrived: while parts keep coming, the request is being answered. */
        partAt: number;
        /** The parts last asked for (none yet: []). */
        asked: ChunkRange[];
      }
    | undefined;
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
    const windowBytes = Math.max(
      settings.chunkBytes,
      settings.windowBytes ?? Math.max(MIN_WINDOW_BYTES, DEFAULT_WINDOW_CHUNKS * settings.chunkBytes),
    );
    this.window = new SendWindow({ windowBytes, chunkBytes: settings.chunkBytes });
    // Before admission the frame limit is small, and so is what a stranger can make this side hold.
    this.arrivals = new ReceiveWindow({
      maxHeldBytes: () => Math.min(2 * windowBytes, this.reassembler.maxFrameBytes),
      maxAhead: MAX_CHUNKS_AHEAD,
    });
    this.cache = new BroadcastCache(settings.maxFrameBytes);
    this.subscription = settings.nc.subscribe(settings.recvSubject, {
      callback: (err, msg) => {
        if (err) return this.finish(`subscription failed: ${err.message}`);
        this.onMessage(msg.headers, msg.data);
      },
    });
    this.broadcastSubscription = settings.broadcastSubject
      ? settings.nc.subscribe(settings.broadcastSubject, {
          callback: (err, msg) => {
            if (err || this.closed) return;
            this.cache.add(msg.headers, msg.data);
            this.resumeWaitingRef();
          },
        })
      : undefined;
    const heartbeat = settings.heartbeatMs ?? 1000;
    // Often enough for the retransmission timer's 200 ms floor; a check costs next to nothing.
    this.ticker = setInterval(() => this.tick(), Math.min(heartbeat, 50));
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
    const chunks = chunkFrame(++this.sentSeq, frame, this.settings.chunkBytes);
    chunks.forEach(({ info, bytes }, i) =>
      this.window.push(
        { kind: 'chunk', info, bytes, written: i === chunks.length - 1 ? written : undefined },
        bytes.byteLength,
      ),
    );
    this.pump();
  }

  /**
   * The same frame for many links (the weights): offered once on the broadcast subject, and this
   * link's stream carries only a reference to it. A worker that missed parts of it asks for those parts.
   */
  sendShared(frame: Uint8Array, written?: () => void): void {
    const offered = this.closed ? undefined : this.settings.broadcast?.offer(frame);
    if (!offered) return this.send(frame, written);
    if (!this.holdUnacked(frame)) return;
    this.window.push(
      { kind: 'ref', seq: ++this.sentSeq, offered, frameBytes: frame.byteLength, written },
      offered.ref.length,
      true,
    );
    this.pump();
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
    this.cache.sealWith(keys.broadcast, (reason, detail) => this.report(reason, `${detail} (a broadcast)`));
  }

  /**
   * After the connection came back: what was out may have gone with the old one. Send it again, and tell the
   * peer what we hold so it does the same.
   */
  resync(): void {
    if (this.closed) return;
    this.control('resume', { ...this.ackFields(), [H.reason]: 'reply' });
    this.window.resendUnheld();
    this.pump();
  }

  /** Sends what the window lets out now. */
  private pump(): void {
    if (this.closed) return;
    for (const { n, xmit, item } of this.window.take(Date.now())) {
      if (item.kind === 'chunk') {
        // Refused by the connection (closed, or its reconnect buffer full): it counts as sent and lost, and
        // the timer sends it again.
        const headers = chunkHeaders(item.info);
        headers.set(H.chunk, String(n));
        headers.set(H.tx, String(xmit));
        this.publish(item.bytes, headers);
      } else {
        const { ref } = item.offered;
        this.control('ref', {
          [H.chunk]: String(n),
          [H.tx]: String(xmit),
          [H.seq]: String(item.seq),
          [H.broadcastId]: ref.id,
          [H.broadcastSeq]: String(ref.seq),
          [H.length]: String(ref.length),
          [H.crc]: String(ref.crc),
          ...(item.offered.fresh ? { [H.fresh]: '1' } : {}),
        });
      }
      if (item.written) {
        const written = item.written;
        item.written = undefined;
        this.settings.nc.flush().then(written, () => {});
      }
    }
  }

  /** False when the connection refuses (closed or its reconnect buffer full). */
  private publish(data: Uint8Array, h: MsgHdrs | Record<string, string>): boolean {
    const headers = isHeaders(h) ? h : toHeaders(h);
    try {
      if (this.keys)
        this.settings.nc.publish(this.settings.sendSubject, sealMessage(this.keys.send, headers, data), {
          headers: SEALED_HEADER(),
        });
      else this.settings.nc.publish(this.settings.sendSubject, data, { headers });
      this.lastSent = Date.now();
      return true;
    } catch {
      return false;
    }
  }

  private control(kind: Control, fields: Record<string, string> = {}, data = new Uint8Array(0)): void {
    this.publish(data, { [H.control]: kind, ...fields });
  }

  private ackFields(): Record<string, string> {
    const ranges = this.arrivals.ranges();
    return {
      [H.ack]: String(this.arrivals.cumulative),
      ...(this.lastTx > 0 ? { [H.echo]: String(this.lastTx) } : {}),
      ...(ranges.length > 0 ? { [H.sack]: formatRanges(ranges) } : {}),
    };
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
    if (kind) return this.onControl(kind as Control, h!, data);
    const info = chunkInfoOf(h);
    const n = chunkNumberOf(h);
    if (!info || n === undefined)
      return this.report('malformed_chunk', `a message from ${this.peer} without valid chunk headers`);
    this.arrive(n, { kind: 'chunk', info, data }, data.byteLength, txOf(h));
  }

  /** A numbered chunk of the peer's stream: used in its place, held beyond a gap, or a repeat. */
  private arrive(n: number, item: Inbound, bytes: number, tx: number): void {
    this.scheduleAck();
    // Acks echo the newest transmission that arrived and was kept (NATS keeps order, so any sent before it and
    // not acknowledged was lost: send-window.ts). One refused for want of room is not echoed: the sender's
    // timer resends it, backing off, where an echo would make it resend at once, again and again.
    const kept = () => {
      this.lastTx = Math.max(this.lastTx, tx);
    };
    switch (this.arrivals.arrive(n, item, bytes)) {
      case 'duplicate':
        kept();
        return this.report('duplicate_chunk', `chunk ${n} from ${this.peer} arrived again: dropped`);
      case 'held':
        kept();
        // The first chunk past a gap shows the loss (NATS keeps a publisher's order); the ack that says so
        // asks for the missing chunks only.
        if (!this.arrivals.holds(n - 1))
          this.report(
            'lost_chunk',
            `chunk ${n} from ${this.peer} arrived while ${this.arrivals.next} was expected`,
          );
        return;
      case 'no_room':
        return;
      case 'next':
        if (this.consumeFrom(item)) kept();
    }
  }

  /**
   * Uses `item` (the next chunk in line), then whatever was held behind it, until a gap or a refusal. False
   * when `item` itself was refused.
   */
  private consumeFrom(first: Inbound): boolean {
    const used = this.consumeRun(first);
    // The ack goes before the frames are handed on: handling one (decoding 14 MB, reducing) can take longer
    // than the peer's retransmission timeout on a busy machine, and the chunks are here.
    if (this.ready.length > 0) {
      this.sendAck();
      for (const frame of this.ready.splice(0)) this.deliver(frame);
    }
    return used;
  }

  private consumeRun(first: Inbound): boolean {
    let item: Inbound | undefined = first;
    let fromHold = false;
    while (item) {
      const result = this.consume(item);
      if (result === 'waiting') {
        this.arrivals.park(this.arrivals.next, item);
        return true;
      }
      if (result === 'refused') {
        // We acknowledged it as held and cannot use it after all: the peer must send it again.
        if (fromHold) this.control('want', { [H.chunk]: String(this.arrivals.next) });
        return fromHold;
      }
      this.arrivals.accept();
      item = this.arrivals.takeNext();
      fromHold = true;
    }
    return true;
  }

  private consume(item: Inbound): Consumed {
    if (item.kind === 'ref') return this.consumeRef(item);
    return this.reassembled(this.reassembler.add(item.info, item.data));
  }

  private reassembled(result: Reassembly): Consumed {
    switch (result.kind) {
      case 'frame':
        this.ready.push(result.bytes);
        return 'used';
      case 'partial':
        return 'used';
      case 'duplicate':
        // Under a new number, a part already used: only a confused or hostile peer sends that.
        this.report(
          'duplicate_chunk',
          `chunk ${result.part} of frame ${result.seq} from ${this.peer} again: dropped`,
        );
        return 'used';
      case 'gap':
      case 'corrupt':
        this.report(
          result.kind === 'gap' ? 'lost_chunk' : 'corrupt_chunk',
          `${result.detail} (from ${this.peer}): not acknowledged`,
        );
        return 'refused';
    }
  }

  /** A frame of this link that was broadcast: delivered from the cache, or its missing parts asked for. */
  private consumeRef({ seq, ref, fresh }: Extract<Inbound, { kind: 'ref' }>): Consumed {
    if (seq !== this.reassembler.expected)
      return this.reassembled(this.reassembler.acceptWhole(seq, new Uint8Array(0)));
    const frame = this.cache.take(ref);
    if (frame) {
      this.waitingRef = undefined;
      return this.reassembled(this.reassembler.acceptWhole(seq, frame));
    }
    // Still arriving (fresh: published after this ref was sent), or missed in part or whole (joined after it,
    // reconnected, a chunk lost): not an error of the peer's, so not reported. One still arriving is waited
    // for while its parts keep coming (tick); one published before is asked for at once.
    this.waitingRef = { n: this.arrivals.next, ref, askedAt: Date.now(), asks: 0, partAt: 0, asked: [] };
    if (!fresh) this.askForMissing();
    return 'waiting';
  }

  /** Asks for the parts of the waiting broadcast not here yet (none listed: all of it). */
  private askForMissing(): void {
    const w = this.waitingRef;
    if (!w) return;
    // At most a window's worth of parts at a time, the next asked for as these arrive: parts sent over a
    // session bypass its window, and a whole frame for each of N late joiners at once queued seconds at the
    // server (the shard reducers' join replies timed out behind it).
    w.asked = firstParts(this.cache.missing(w.ref, MAX_WANT_RANGES) ?? [[0, FILL_PARTS - 1]], FILL_PARTS);
    w.askedAt = Date.now();
    w.asks++;
    this.control('want', { [H.chunk]: String(w.n), [H.want]: formatRanges(w.asked) });
  }

  /** A broadcast part arrived: if it completed the one the head of the stream waits for, go on. */
  private resumeWaitingRef(): void {
    const w = this.waitingRef;
    if (!w) return;
    w.partAt = Date.now();
    if (!this.cache.holds(w.ref)) {
      // The parts asked for are all here and more are missing: ask for the next ones now.
      const missing = this.cache.missing(w.ref, MAX_WANT_RANGES);
      if (w.asked.length > 0 && missing && !overlaps(missing, w.asked)) this.askForMissing();
      return;
    }
    if (w.n !== this.arrivals.next) return;
    const parked = this.arrivals.takeNext();
    if (!parked) return;
    this.scheduleAck();
    this.consumeFrom(parked);
  }

  private onControl(kind: Control, h: MsgHdrs, data: Uint8Array): void {
    switch (kind) {
      case 'ack':
      case 'ping':
        this.onAck(h);
        return;
      case 'resume':
        if (!this.onAck(h)) return;
        this.window.resendUnheld();
        this.pump();
        if (h.get(H.reason) === 'reply') this.control('resume', this.ackFields());
        return;
      case 'close':
        return this.finish(`peer closed: ${h.get(H.reason) || 'no reason'}`);
      case 'ref':
        return this.onRef(h);
      case 'want':
        return this.onWant(h);
      case 'fill':
        this.cache.add(h, data, true);
        return this.resumeWaitingRef();
      default:
        return this.report(
          'malformed_chunk',
          `unknown control message ${String(kind).slice(0, 40)} from ${this.peer}`,
        );
    }
  }

  /** False (and reported) when the ack's numbers are not numbers. */
  private onAck(h: MsgHdrs): boolean {
    const cumulative = Number(h.get(H.ack));
    const held = parseRanges(h.get(H.sack));
    if (!Number.isSafeInteger(cumulative) || cumulative < 0 || !held) {
      this.report('malformed_chunk', `an ack from ${this.peer} with unreadable numbers: ignored`);
      return false;
    }
    const now = Date.now();
    const result = this.window.ack(cumulative, held, now, txOf(h, H.echo));
    if (result.rttMs !== undefined) this.rto.sample(result.rttMs);
    if (result.progressed) this.lastProgress = now;
    for (const item of result.released) this.unackedBytes -= heldBytesOf(item);
    this.pump();
    return true;
  }

  private onRef(h: MsgHdrs): void {
    const n = chunkNumberOf(h);
    const seq = Number(h.get(H.seq));
    const ref: BroadcastRef = {
      id: h.get(H.broadcastId),
      seq: Number(h.get(H.broadcastSeq)),
      length: Number(h.get(H.length)),
      crc: Number(h.get(H.crc)),
    };
    if (n === undefined || !Number.isSafeInteger(seq))
      return this.report(
        'malformed_chunk',
        `a broadcast reference from ${this.peer} with unreadable numbers`,
      );
    this.arrive(n, { kind: 'ref', seq, ref, fresh: h.get(H.fresh) === '1' }, 0, txOf(h));
  }

  /** The peer asks for chunk Gf-Chunk again, or for parts of the broadcast it refers to. */
  private onWant(h: MsgHdrs): void {
    const n = chunkNumberOf(h);
    const parts = parseRanges(h.get(H.want), 0);
    const item = n === undefined ? undefined : this.window.get(n);
    if (n === undefined || !parts)
      return this.report('malformed_chunk', `a request from ${this.peer} with unreadable numbers`);
    if (!item) return; // acknowledged since: nothing to send
    if (item.kind === 'chunk') {
      this.window.renege(n);
      return this.pump();
    }
    // A peer asks for the same parts again only after its own timeout; one asking faster (hostile: a small
    // request buys up to FILL_PARTS chunks) is answered at most twice per round-trip timeout.
    const now = Date.now();
    const asked = h.get(H.want);
    if (item.filled?.asked === asked && now - item.filled.at < this.rto.ms / 2) return;
    item.filled = { at: now, asked };
    const { ref, chunks } = item.offered;
    const wanted = firstParts(parts.length === 0 ? [[0, chunks.length - 1]] : parts, FILL_PARTS);
    for (const [from, to] of wanted)
      for (let part = from; part <= Math.min(to, chunks.length - 1); part++) {
        const headers = broadcastHeaders(ref.id, chunks[part].info);
        headers.set(H.control, 'fill');
        this.publish(chunks[part].bytes, headers);
      }
    // The parts are on their way: the ref's timer counts from now.
    this.window.touch(n, now);
  }

  private scheduleAck(): void {
    this.ackDirty = true;
    if (this.ackPending) return;
    this.ackPending = true;
    // One ack for all the chunks that arrive in one turn of the event loop.
    setImmediate(() => {
      this.ackPending = false;
      this.sendAck();
    });
  }

  private sendAck(): void {
    if (this.closed || !this.ackDirty) return;
    this.ackDirty = false;
    this.control('ack', this.ackFields());
  }

  private tick(): void {
    const now = Date.now();
    const { heartbeatMs = 1000, deadAfterMs = 30_000 } = this.settings;
    if (now - this.lastReceived > deadAfterMs)
      return this.finish(`no message from ${this.peer} for ${(deadAfterMs / 1000).toFixed(0)} s`);
    if (now - this.lastSent >= heartbeatMs) this.control('ping', this.ackFields());
    // The timer runs from the oldest chunk out, or from the last ack that made progress if later: while acks
    // keep coming, the chunks behind them are queued, not lost (a gap the peer sees, its ack shows).
    const oldest = this.window.oldestOutAt;
    if (oldest !== undefined && now - Math.max(oldest, this.lastProgress) >= this.rto.ms) {
      this.window.timeout();
      this.rto.backoff();
      this.pump();
    }
    // The parts we asked for may have been lost too: once none has come for a timeout, ask again for those
    // still missing, waiting twice as long each time (parts still on their way would come twice).
    const w = this.waitingRef;
    if (w && now - Math.max(w.askedAt, w.partAt) >= this.rto.ms * 2 ** Math.min(Math.max(0, w.asks - 1), 6))
      this.askForMissing();
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
    this.unackedBytes = 0;
    this.waitingRef = undefined;
    this.subscription.unsubscribe();
    this.broadcastSubscription?.unsubscribe();
    this.settings.onEnd?.();
    this.closedFor = reason;
    this.handlers?.close(reason);
  }
}

/** Part ranges a `want` lists at most: a broadcast's parts are few (a frame ÷ max_payload). */
const MAX_WANT_RANGES = 16;
/** Parts of a missed broadcast asked for (and answered) at a time: a default window's worth. */
const FILL_PARTS = DEFAULT_WINDOW_CHUNKS;

/** The first `max` numbers that `ranges` cover, as ranges. */
function firstParts(ranges: readonly ChunkRange[], max: number): ChunkRange[] {
  const out: ChunkRange[] = [];
  let left = max;
  for (const [from, to] of ranges) {
    if (left <= 0) break;
    const end = Math.min(to, from + left - 1);
    out.push([from, end]);
    left -= end - from + 1;
  }
  return out;
}

const overlaps = (a: readonly ChunkRange[], b: readonly ChunkRange[]) =>
  a.some(([from, to]) => b.some(([f, t]) => from <= t && f <= to));

/** A transmission id (Gf-Tx, or the Gf-Echo of one), or 0 unless a whole number. */
function txOf(h: MsgHdrs | undefined, key: string = H.tx): number {
  const tx = Number(h?.get(key) || 0);
  return Number.isSafeInteger(tx) && tx > 0 ? tx : 0;
}

/** A message's chunk number (Gf-Chunk), or undefined unless a whole number from 1. */
function chunkNumberOf(h: MsgHdrs | undefined): number | undefined {
  const n = Number(h?.get(H.chunk) || Number.NaN);
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

function isHeaders(h: MsgHdrs | Record<string, string>): h is MsgHdrs {
  return typeof (h as MsgHdrs).get === 'function' && typeof (h as MsgHdrs).set === 'function';
}

function toHeaders(fields: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(fields)) h.set(k, v);
  return h;
}
