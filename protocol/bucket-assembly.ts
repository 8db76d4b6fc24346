/**
 * The receiving end of gradient buckets (--bucket-mb): a peer's buckets of a tree node are copied into one
 * buffer as they arrive, and the node's closing `contribution` (no payload, `buckets: n`) turns them into the
 * node as if it had come whole. What happens to the node then (its checks, the gather, the reduce) does not
 * know it came in parts, so it gets the same bits.
 *
 * A receiver holds the span of the flat vector it takes: the whole layout (the coordinator) or its slice (a
 * shard reducer). A node whose buckets do not cover the span exactly once comes out with no values, and the
 * receiver's own size check refuses it as it refuses any node of the wrong size.
 */
import { RangeSet } from '../common/range-set.js';
import type { RejectionReason } from './errors.js';
import type { MessageOf } from './messages.js';

/** The part of the flat vector a receiver takes: [offset, offset + size). */
export interface Span {
  offset: number;
  size: number;
}

/** Nodes a peer may have in assembly at once: a worker closes each node before it starts the next. */
const MAX_OPEN_NODES = 2;

interface OpenNode {
  step: number;
  values: Float32Array;
  /** [from, to) of each bucket taken, relative to the span. */
  ranges: RangeSet;
  /** When each arrived (performance.now()). */
  arrivals: number[];
}

export type BucketVerdict = { ok: true } | { ok: false; detail: string };

/** A node of a step, as its buckets and its contribution name it. */
export const bucketKey = (m: { step: number; level: number; index: number }) =>
  `${m.step}:${m.level}:${m.index}`;

export class BucketAssembly {
  private readonly open = new Map<string, OpenNode>();
  /**
   * When the buckets of the node closed last arrived (performance.now()), in arrival order: read by whoever
   * takes that node, during the same call.
   */
  lastArrivals: readonly number[] = [];

  /** `span()`: asked at each node's first bucket (a sharded coordinator's span is empty: it takes none). */
  constructor(private readonly span: () => Span) {}

  /** A peer's bucket, taken, or refused on its channel (counted and answered like any refused frame). */
  take(
    channel: { reject(reason: RejectionReason, detail: string): void },
    bucket: MessageOf<'bucket'>,
    values: Float32Array,
  ): void {
    const verdict = this.add(bucket, values);
    if (!verdict.ok) channel.reject('invalid_message', verdict.detail);
  }

  /** Copies a bucket's values into its node; refused when it lies outside the span or overlaps another. */
  add(bucket: MessageOf<'bucket'>, values: Float32Array): BucketVerdict {
    const { offset, size } = this.span();
    const from = bucket.offset - offset;
    const to = from + values.length;
    if (from < 0 || to > size)
      return {
        ok: false,
        detail: `bucket [${bucket.offset}, ${bucket.offset + values.length}) is outside [${offset}, ${offset + size})`,
      };
    const key = bucketKey(bucket);
    let node = this.open.get(key);
    if (!node) {
      // A node of an older step never closed (its share was taken back): it never will.
      for (const [k, n] of this.open) if (n.step < bucket.step) this.open.delete(k);
      if (this.open.size >= MAX_OPEN_NODES)
        return { ok: false, detail: `more than ${MAX_OPEN_NODES} nodes in buckets at once` };
      node = { step: bucket.step, values: new Float32Array(size), ranges: new RangeSet(), arrivals: [] };
      this.open.set(key, node);
    }
    if (node.ranges.overlaps(from, to))
      return {
        ok: false,
        detail: `bucket [${bucket.offset}, ${bucket.offset + values.length}) overlaps another`,
      };
    node.values.set(values, from);
    node.ranges.add(from, to);
    node.arrivals.push(performance.now());
    return { ok: true };
  }

  /**
   * The node a closing contribution stands for: its message with the payload's size, and the values its
   * buckets brought; none when they did not cover the span once, in exactly `buckets` frames.
   */
  close(message: MessageOf<'contribution'>): {
    message: MessageOf<'contribution'>;
    payload: Float32Array;
  } {
    const key = bucketKey(message);
    const node = this.open.get(key);
    this.open.delete(key);
    this.lastArrivals = node?.arrivals ?? [];
    const whole = node && node.ranges.count === message.buckets && node.ranges.held === node.values.length;
    const payload = whole ? node.values : new Float32Array(0);
    const { buckets: _, ...rest } = message;
    return { message: { ...rest, payloadValues: payload.length }, payload };
  }
}
