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
import { Reassembler, chunkFrame } from './chunking.js';
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

/** The coordinator's side: one per connection. */
export class BroadcastPublisher {
  private readonly id = nuid.next();
  private seq = 0;
  private last: { frame: Uint8Array; ref: BroadcastRef } | undefined;
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
   * The reference to `frame`, publishing it first unless it was the frame published last (the same
   * weights, offered to one session after another). Undefined when the connection refuses to publish:
   * the caller sends the frame over the session instead.
   */
  offer(frame: Uint8Array): BroadcastRef | undefined {
    if (this.last?.frame === frame) return this.last.ref;
    const seq = ++this.seq;
    // The ref's length and CRC then name the sealed bytes, which is what travels and what a worker
    // reassembles.
    const chunks = chunkFrame(seq, this.seal ? this.seal.seal(this.id, seq, frame) : frame, this.chunkBytes);
    try {
      for (const { info, bytes } of chunks) {
        const headers = chunkHeaders(info);
        headers.set(BROADCAST_ID_HEADER, this.id);
        this.nc.publish(this.subject, bytes, { headers });
      }
    } catch {
      this.last = undefined;
      return undefined;
    }
    const ref = { id: this.id, seq, length: chunks[0].info.length, crc: chunks[0].info.crc };
    this.last = { frame, ref };
    return ref;
  }
}

/** How many whole broadcasts a worker keeps: the one a `ref` is about to name, and one spare. */
const KEEP = 2;

/**
 * The worker's side: reassembles what the broadcast subject carries and keeps the last frames until
 * a link's `ref` claims one. Anything incomplete (the worker subscribed mid-frame, a chunk was lost)
 * is dropped quietly: the `ref` then finds nothing, and the link asks for the frame in full.
 */
export class BroadcastCache {
  private assembling: { id: string; reassembler: Reassembler } | undefined;
  private readonly complete = new Map<string, { bytes: Uint8Array; length: number; crc: number }>();
  /**
   * The newest sealed broadcast accepted per publisher (a few publishers: a restarted coordinator is a new
   * one).
   */
  private readonly newest = new Map<string, number>();
  private seal: { open: BroadcastSeal; rejected: (reason: SealFailure, detail: string) => void } | undefined;

  constructor(private readonly maxFrameBytes?: number) {}

  /** From now on only broadcasts sealed under the run's key are kept; anything else is reported. */
  sealWith(open: BroadcastSeal, rejected: (reason: SealFailure, detail: string) => void): void {
    this.seal = { open, rejected };
    // Whatever arrived before we could check it is not trusted.
    this.complete.clear();
    this.assembling = undefined;
  }

  add(h: MsgHdrs | undefined, data: Uint8Array): void {
    const id = h?.get(BROADCAST_ID_HEADER);
    const info = chunkInfoOf(h);
    if (!id || !info) return;
    if (info.part === 0)
      this.assembling = { id, reassembler: new Reassembler(info.seq - 1, this.maxFrameBytes) };
    const a = this.assembling;
    if (!a || a.id !== id) return;
    const result = a.reassembler.add(info, data);
    if (result.kind === 'partial') return;
    this.assembling = undefined;
    if (result.kind !== 'frame') return;
    let bytes = result.bytes;
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
    this.complete.set(`${id}:${info.seq}`, { bytes, length: result.bytes.byteLength, crc: info.crc });
    for (const key of this.complete.keys()) if (this.complete.size > KEEP) this.complete.delete(key);
  }

  /** The frame `ref` names, once, if it arrived whole and matches; else undefined. */
  take(ref: BroadcastRef): Uint8Array | undefined {
    const key = `${ref.id}:${ref.seq}`;
    const frame = this.complete.get(key);
    this.complete.delete(key);
    // The reassembler checked the bytes against the CRC their chunks claimed; this checks that the
    // chunks claimed what the ref says.
    return frame && frame.length === ref.length && frame.crc === ref.crc ? frame.bytes : undefined;
  }
}
