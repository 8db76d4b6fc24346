/**
 * The receiving half of a NATS link's loss recovery, without sockets: which numbered chunks arrived, which
 * wait beyond a gap, and the acknowledgement that says so (a cumulative number and the ranges held beyond
 * it), so the sender resends only what is missing (send-window.ts). Chunks are handed on strictly in number
 * order, each once.
 */

/** Chunk numbers [from, to], both included. */
export type ChunkRange = readonly [from: number, to: number];

/** Ranges an ack lists at most: enough for a window's worth of scattered losses, and bounded to parse. */
export const MAX_ACK_RANGES = 16;

/** "3-5,9-9": the ranges an ack carries in its Gf-Sack header. */
export function formatRanges(ranges: readonly ChunkRange[]): string {
  return ranges.map(([a, b]) => `${a}-${b}`).join(',');
}

/**
 * The ranges of a Gf-Sack header, or undefined if it is not a short, ascending list of disjoint ranges of
 * whole numbers (a hostile peer's header is refused whole, never half-read).
 */
export function parseRanges(
  text: string | undefined | null,
  lowest = 1,
  max = MAX_ACK_RANGES,
): ChunkRange[] | undefined {
  if (!text) return [];
  const parts = text.split(',');
  if (parts.length > max) return undefined;
  const ranges: ChunkRange[] = [];
  let last = lowest - 1;
  for (const part of parts) {
    const m = /^(\d{1,15})-(\d{1,15})$/.exec(part);
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = Number(m[2]);
    if (!(from > last && to >= from)) return undefined;
    ranges.push([from, to]);
    last = to;
  }
  return ranges;
}

export type Arrival = 'next' | 'held' | 'duplicate' | 'no_room';

export interface ReceiveWindowOptions {
  /** Bytes held beyond a gap, at most (read at each arrival: it may rise once the peer is admitted). */
  maxHeldBytes: () => number;
  /** How far past the next expected number a chunk may be and still be held. */
  maxAhead: number;
}

/** Chunks arriving out of order wait here until the gap before them is filled. */
export class ReceiveWindow<T> {
  /** The next number to hand on; everything below it was handed on. */
  next = 1;
  private readonly held = new Map<number, { item: T; bytes: number }>();
  private heldBytes = 0;

  constructor(private readonly options: ReceiveWindowOptions) {}

  /**
   * Where an arriving chunk goes: `next` (the caller consumes it now, then calls `accept`), `held` (kept for
   * later), `duplicate` (had it already) or `no_room` (too far ahead, or the buffer is full: dropped, the
   * sender resends it).
   */
  arrive(n: number, item: T, bytes: number): Arrival {
    if (n < this.next || this.held.has(n)) return 'duplicate';
    if (n === this.next) return 'next';
    if (n - this.next > this.options.maxAhead || this.heldBytes + bytes > this.options.maxHeldBytes())
      return 'no_room';
    this.held.set(n, { item, bytes });
    this.heldBytes += bytes;
    return 'held';
  }

  /** The chunk `next` was consumed: move on. */
  accept(): void {
    this.next++;
  }

  /** The held chunk now next in line, taken out of the buffer (the caller consumes it, then `accept`s). */
  takeNext(): T | undefined {
    const h = this.held.get(this.next);
    if (!h) return undefined;
    this.held.delete(this.next);
    this.heldBytes -= h.bytes;
    return h.item;
  }

  /**
   * Keeps `n` as held without consuming it (a chunk that cannot be used yet, such as a reference to a
   * broadcast still arriving): acknowledged as held, so the sender does not resend it.
   */
  park(n: number, item: T): void {
    if (n < this.next || this.held.has(n)) return;
    this.held.set(n, { item, bytes: 0 });
  }

  /** Drops a parked or held chunk again (it turned out unusable): the sender will resend it. */
  unpark(n: number): void {
    const h = this.held.get(n);
    if (!h) return;
    this.held.delete(n);
    this.heldBytes -= h.bytes;
  }

  holds(n: number): boolean {
    return this.held.has(n);
  }

  get cumulative(): number {
    return this.next - 1;
  }

  /** The ranges held beyond the cumulative number, lowest first, at most MAX_ACK_RANGES. */
  ranges(): ChunkRange[] {
    const numbers = [...this.held.keys()].sort((a, b) => a - b);
    const ranges: [number, number][] = [];
    for (const n of numbers) {
      const last = ranges.at(-1);
      if (last && last[1] + 1 === n) last[1] = n;
      else if (ranges.length === MAX_ACK_RANGES) break;
      else ranges.push([n, n]);
    }
    return ranges;
  }

  get bytesHeld(): number {
    return this.heldBytes;
  }
}
