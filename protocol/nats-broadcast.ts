/**
 * One frame for many workers (the weights, every step) published once on the run's broadcast
 * subject instead of once per session: with N workers the coordinator sends the model once, not N
 * times. A broadcast is only an offer. Each link still carries, in its own ordered stream, a small
 * reference to it (nats-link.ts `ref`); a worker that holds the referenced frame delivers it in that
 * place, and one that missed it (joined later, reconnected, lost a chunk) asks for the frame again
 * and gets it in full over its session. So the guarantees of the link (in order, nothing lost,
 * nothing twice) hold whatever happened to the broadcast.
 */
import { type MsgHdrs, type NatsConnection, nuid } from 'nats';
import { crc32 } from 'node:zlib';
import { type Chunk, type ChunkInfo, chunkFrame } from './chunking.js';
import type { ChunkRange } from './chunk-acks.js';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';
import { chunkHeaders, chunkInfoOf } from './nats-chunk-headers.js';
import type { BroadcastSeal, SealFailure } from './sealing.js';

/** Whose broadcast a chunk (or a link's `ref`) belongs to; the chunk headers are a link's own. */
export const BROADCAST_ID_HEADER = 'Gf-Bid';

/**
 * What a link's `ref` names: a frame of one publisher's broadcast, with its length and CRC-32 to check it
 * against.
 */
export interface BroadcastRef {
  /** The publisher's id: a restarted coordinator numbers its broadcasts from 1 again. */
  id: string;
  seq: number;
  length: number;
  crc: number;
}

export const broadcastSubject = (prefix: string) => `${prefix}.weights`;

/** A broadcast as offered to a link: its reference and its chunks (views into the sealed bytes), to fill gaps from. */
export interface Offered {
  ref: BroadcastRef;
  chunks: readonly Chunk[];
  /**
   * Published after this offer (later in this turn of the event loop): a link's reference, sent now, arrives
   * ahead of it, and the worker waits for it. Not fresh: published before, perhaps before the worker
   * subscribed, so it asks for it at once.
   */
  fresh: boolean;
}

/** The coordinator's side: one per connection. */
export class BroadcastPublisher {
  private readonly id = nuid.next();
  private seq = 0;
  private last:
    | { frame: Uint8Array; ref: BroadcastRef; chunks: readonly Chunk[]; published: boolean }
    | undefined;
  /** Set when the run has a secret: every broadcast is then sealed under the run's key. */
  private seal: BroadcastSeal | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    private readonly chunkBytes: number,
  ) {}

  /** Every session of a run shares the one secret, so the first to authenticate decides for all. */
  sealWith(seal: BroadcastSeal): void {
    this.seal ??= seal;
  }

  /**
   * The reference to `frame` and its chunks. A frame not offered last is published once the current turn
   * of the event loop ends, so that every link it is offered to in this turn sends its reference first:
   * anything a link sends after the broadcast waits behind it at the server (14 MB to each of N workers
   * through one link: seconds), and would be resent for want of an ack. Undefined when the connection is
   * closed: the caller sends the frame over the session instead.
   */
  offer(frame: Uint8Array): Offered | undefined {
    if (this.nc.isClosed()) return undefined;
    if (this.last?.frame !== frame) {
      const seq = ++this.seq;
      // The ref's length and CRC then name the sealed bytes, which is what travels and what a worker
      // reassembles.
      const chunks = chunkFrame(
        seq,
        this.seal ? this.seal.seal(this.id, seq, frame) : frame,
        this.chunkBytes,
      );
      const ref = { id: this.id, seq, length: chunks[0].info.length, crc: chunks[0].info.crc };
      const entry = { frame, ref, chunks, published: false };
      this.last = entry;
      setImmediate(() => {
        entry.published = true;
        try {
          for (const { info, bytes } of chunks)
            this.nc.publish(this.subject, bytes, { headers: broadcastHeaders(this.id, info) });
        } catch {
          // Closed meanwhile: each worker asks for the parts it lacks over its session.
        }
      });
    }
    const { ref, chunks, published } = this.last;
    return { ref, chunks, fresh: !published };
  }
}

/** The headers of one chunk of publisher `id`'s broadcast, on the broadcast subject or filling a gap. */
export function broadcastHeaders(id: string, info: ChunkInfo): MsgHdrs {
  const headers = chunkHeaders(info);
  headers.set(BROADCAST_ID_HEADER, id);
  return headers;
}

/** How many broadcasts a worker keeps, whole or in part: the one a `ref` is about to name, and one spare. */
const KEEP = 2;

/**
 * A broadcast arriving in parts, in any order (its own subject, then the gaps filled over a session): each
 * part is written at its place in a buffer of the claimed length, allocated at the first part (bounded by
 * maxFrameBytes, as in chunking.ts). Every part but the last has the publisher's chunk size, so a part's
 * place follows from its number and size.
 */
class PartialBroadcast {
  readonly buffer: Uint8Array;
  private readonly got: boolean[];
  private count = 0;
  private chunkSize = 0;

  constructor(readonly info: ChunkInfo) {
    this.buffer = new Uint8Array(info.length);
    this.got = new Array<boolean>(info.parts).fill(false);
  }

  /** False when the part disagrees with the others (then it is dropped). */
  add(info: ChunkInfo, data: Uint8Array): boolean {
    const { parts, length, crc } = this.info;
    if (info.parts !== parts || info.length !== length || info.crc !== crc) return false;
    if (this.got[info.part]) return true;
    const last = info.part === parts - 1;
    if (!last) {
      if (this.chunkSize === 0) this.chunkSize = data.byteLength;
      if (data.byteLength !== this.chunkSize || data.byteLength === 0) return false;
    }
    const at = last ? length - data.byteLength : info.part * this.chunkSize;
    if (at < 0 || at + data.byteLength > length) return false;
    if (last && this.chunkSize > 0 && at !== (parts - 1) * this.chunkSize) return false;
    this.buffer.set(data, at);
    this.got[info.part] = true;
    this.count++;
    return true;
  }

  get complete(): boolean {
    return this.count === this.info.parts;
  }

  /** The parts not yet here, as ranges [from, to], at most `max` of them. */
  missing(max: number): ChunkRange[] {
    const ranges: [number, number][] = [];
    this.got.forEach((have, part) => {
      if (have) return;
      const last = ranges.at(-1);
      if (last && last[1] + 1 === part) last[1] = part;
      else if (ranges.length < max) ranges.push([part, part]);
    });
    return ranges;
  }
}

/**
 * The worker's side: assembles what the broadcast subject carries (and what a session fills in) and keeps
 * the last frames until a link's `ref` claims one. A broadcast with parts missing waits: the link asks for
 * those parts only (nats-link.ts `want`).
 */
export class BroadcastCache {
  private readonly partial = new Map<string, PartialBroadcast>();
  private readonly complete = new Map<string, { bytes: Uint8Array; length: number; crc: number }>();
  /**
   * The newest sealed broadcast accepted per publisher (a few publishers: a restarted coordinator is a new
   * one).
   */
  private readonly newest = new Map<string, number>();
  private seal: { open: BroadcastSeal; rejected: (reason: SealFailure, detail: string) => void } | undefined;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** From now on only broadcasts sealed under the run's key are kept; anything else is reported. */
  sealWith(open: BroadcastSeal, rejected: (reason: SealFailure, detail: string) => void): void {
    this.seal = { open, rejected };
    // Whatever arrived before we could check it is not trusted.
    this.complete.clear();
    this.partial.clear();
  }

  /**
   * A part from the broadcast subject, or (`fill`) one a link asked for. A fill never starts a broadcast
   * already here (an answer to a request repeated while the parts were on their way); a whole broadcast
   * sent again is assembled, to be reported as `replayed` by its seal.
   */
  add(h: MsgHdrs | undefined, data: Uint8Array, fill = false): void {
    const id = h?.get(BROADCAST_ID_HEADER);
    const info = chunkInfoOf(h);
    if (!id || !info || info.part >= info.parts || info.length > this.maxFrameBytes) return;
    const key = `${id}:${info.seq}`;
    let p = this.partial.get(key);
    if (!p) {
      if (fill && (this.complete.has(key) || info.seq <= (this.newest.get(id) ?? 0))) return;
      p = new PartialBroadcast(info);
      this.partial.set(key, p);
      for (const k of this.partial.keys()) if (this.partial.size > KEEP) this.partial.delete(k);
    }
    if (!p.add(info, data) || !p.complete) return;
    this.partial.delete(key);
    if (crc32(p.buffer) !== info.crc) return;
    let bytes = p.buffer;
    if (this.seal) {
      const opened = this.seal.open.open(id, info.seq, bytes);
      if (!opened.ok) return this.seal.rejected(opened.reason, opened.detail);
      // Genuine but old (a recorded broadcast played again): a publisher's numbers only grow.
      if (info.seq <= (this.newest.get(id) ?? 0))
        return this.seal.rejected(
          'replayed',
          `broadcast ${info.seq} of ${id} arrived after ${this.newest.get(id)}`,
        );
      if (!this.newest.has(id) && this.newest.size >= KEEP)
        this.newest.delete(this.newest.keys().next().value!);
      this.newest.set(id, info.seq);
      bytes = opened.plaintext;
    }
    this.complete.set(key, { bytes, length: info.length, crc: info.crc });
    for (const k of this.complete.keys()) if (this.complete.size > KEEP) this.complete.delete(k);
  }

  /** The frame `ref` names, once, if it arrived whole and matches; else undefined. */
  take(ref: BroadcastRef): Uint8Array | undefined {
    const key = `${ref.id}:${ref.seq}`;
    const frame = this.complete.get(key);
    this.complete.delete(key);
    // The parts were checked against the CRC they claimed; this checks that they claimed what the ref says.
    return frame && frame.length === ref.length && frame.crc === ref.crc ? frame.bytes : undefined;
  }

  /** Whether `ref`'s frame arrived whole (and checked): `take` will give it. */
  holds(ref: BroadcastRef): boolean {
    return this.complete.has(`${ref.id}:${ref.seq}`);
  }

  /**
   * The parts of `ref`'s broadcast still to come, or undefined if none of it arrived (then all are missing).
   */
  missing(ref: BroadcastRef, max: number): ChunkRange[] | undefined {
    return this.partial.get(`${ref.id}:${ref.seq}`)?.missing(max);
  }
}
