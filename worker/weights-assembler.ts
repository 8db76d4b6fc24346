/**
 * Weights arrive in parts: a sharded run's S slices (one from each shard reducer), and with --bucket-mb each
 * slice, or the coordinator's whole vector, in parts front layers first. A version is usable once every part
 * is in, but its first layers are usable before that: a worker that computes layer by layer starts its
 * forward on them (what the version's buffer holds so far, and `ranges`, say which).
 *
 * The buffer is shared memory, so that a compute thread reads the parts as they land without a copy. A part of
 * a version newer than the one being assembled starts a new buffer, and the older one is dropped: a worker is
 * sent v + 1 only once the step of v is over (it did its share, or had none); parts of an older one are stale. A part of the current version over a range it already
 * holds starts it again: the run went back (a caught liar) and sends that version again, with other values.
 */
import { RangeSet } from '../common/range-set.js';
import type { ParamSlice } from '../training/optimizer/adam.js';

export interface WeightsInProgress {
  version: number;
  values: Float32Array;
  /** The parts in, as [from, to) of the flat vector. */
  ranges: RangeSet;
}

/** What a part did: began a version's buffer, and whether it completed it. */
export interface PartTaken {
  weights: WeightsInProgress;
  began: boolean;
  complete: boolean;
}

export class WeightsAssembler {
  private current: WeightsInProgress | undefined;

  /** `slices`: the shard map, whose shard k may send parts of its slice alone; absent: one sender, any part. */
  constructor(
    private readonly size: number,
    private readonly slices?: readonly ParamSlice[],
  ) {}

  /** The version being assembled or last completed. */
  get latest(): WeightsInProgress | undefined {
    return this.current;
  }

  /**
   * Takes a part of `version` at `offset` (from shard `shard`); undefined when it is stale. Throws on a part
   * outside the sender's slice (it is not following the protocol).
   */
  add(version: number, offset: number, values: Float32Array, shard?: number): PartTaken | undefined {
    const from = offset;
    const to = offset + values.length;
    const bounds = shard === undefined || !this.slices ? { offset: 0, size: this.size } : this.slices[shard];
    if (from < bounds.offset || to > bounds.offset + bounds.size || values.length === 0)
      throw new Error(
        `${shard === undefined ? 'the coordinator' : `shard ${shard}`} sent weights [${from}, ${to}), which is not within [${bounds.offset}, ${bounds.offset + bounds.size})`,
      );
    const current = this.current;
    const fresh = (): WeightsInProgress => {
      this.current = {
        version,
        values: new Float32Array(new SharedArrayBuffer(this.size * 4)),
        ranges: new RangeSet(),
      };
      return this.current;
    };
    const overlaps = current?.ranges.overlaps(from, to);
    if (!this.slices) {
      // One sender, in order: whatever version it sends now is the current one, an older one included (the
      // run went back to a trust anchor), and the current one sent again starts over.
      const began = !current || version !== current.version || overlaps === true;
      return this.fill(began ? fresh() : current, from, values, began);
    }
    // Shard reducers send their slices each on its own link: a newer version takes over, an older one is stale,
    // and a slice sent again (a replacement shard, a worker newly joined) rewrites its values in place.
    if (current && version < current.version) return undefined;
    if (!current || version > current.version) return this.fill(fresh(), from, values, true);
    if (current.ranges.held === this.size) return undefined;
    if (current.ranges.has(from, to)) {
      current.values.set(values, from);
      return { weights: current, began: false, complete: false };
    }
    // Parts are cut the same way every time: one that overlaps another without matching it is no resend.
    if (overlaps) return undefined;
    return this.fill(current, from, values, false);
  }

  private fill(target: WeightsInProgress, from: number, values: Float32Array, began: boolean): PartTaken {
    target.values.set(values, from);
    target.ranges.add(from, from + values.length);
    return { weights: target, began, complete: target.ranges.held === this.size };
  }
}
