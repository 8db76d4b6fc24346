/**
 * Weights of a sharded run arrive as S slices, one from each shard reducer; a version is usable
 * once every slice of it is in. Slices of a version newer than the one being assembled start a new
 * buffer (a shard may publish version v + 1 before another has sent us v): the older one is dropped
 * once a newer completes.
 */
import type { ParamSlice } from '../training/optimizer/adam.js';

interface Assembly {
  values: Float32Array;
  missing: Set<number>;
}

export class WeightsAssembler {
  private readonly assemblies = new Map<number, Assembly>();
  private completed = -1;

  constructor(
    private readonly slices: readonly ParamSlice[],
    private readonly size: number,
  ) {}

  /**
   * Adds shard `shard`'s slice of `version`; returns the whole vector when this slice completed it.
   * Throws on a slice that does not match the shard map (the shard is not following the protocol).
   */
  add(shard: number, version: number, offset: number, values: Float32Array): Float32Array | undefined {
    const slice = this.slices[shard];
    if (offset !== slice.offset || values.length !== slice.size) {
      throw new Error(
        `shard ${shard} sent weights [${offset}, ${offset + values.length}), its slice is [${slice.offset}, ${slice.offset + slice.size})`,
      );
    }
    if (version <= this.completed) return undefined;
    let a = this.assemblies.get(version);
    if (!a) {
      a = { values: new Float32Array(this.size), missing: new Set(this.slices.map((_, i) => i)) };
      this.assemblies.set(version, a);
    }
    a.values.set(values, offset);
    a.missing.delete(shard);
    if (a.missing.size > 0) return undefined;
    this.completed = version;
    for (const v of this.assemblies.keys()) if (v <= version) this.assemblies.delete(v);
    return a.values;
  }
}
