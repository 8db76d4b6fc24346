/**
 * A weights version (or a shard's slice of it) as the frames that carry it: one, or with --bucket-mb parts of
 * at most that many values in layout order, each layer starting a part of its own, so that the first layers' weights land first and a worker whose
 * forward goes layer by layer starts on them while the rest cross (ByteScheduler's front-first order). Each
 * frame is encoded once and shared by every link it goes to.
 */
import { encodeFrame } from './codec.js';
import type { WireDtype } from './wire-dtype.js';

/** How a version is cut: parts of at most `values`, and a new part at each of `layerStarts` (flat offsets). */
export interface WeightsParts {
  values: number;
  layerStarts: readonly number[];
}

export function weightsFrames(
  version: number,
  offset: number,
  values: Float32Array,
  dtype: WireDtype,
  parts?: WeightsParts,
): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (const [from, to] of partRanges(offset, values.length, parts)) {
    const slice = values.subarray(from - offset, to - offset);
    frames.push(
      encodeFrame({ type: 'weights', version, offset: from, payloadValues: slice.length }, slice, { dtype }),
    );
  }
  return frames;
}

/**
 * [from, to) of each part of [offset, offset + size): at most `values` long, and a new one at each layer's
 * start, so that a small first layer is not held back by the big one after it (a shard reducer's first slice
 * holds the convolutions and the start of the dense layers). Without `parts`, one.
 */
export function partRanges(offset: number, size: number, parts?: WeightsParts): [number, number][] {
  const end = offset + size;
  if (!parts || parts.values <= 0) return [[offset, end]];
  const ranges: [number, number][] = [];
  for (let from = offset; from < end; ) {
    const nextLayer = parts.layerStarts.find((start) => start > from) ?? end;
    const to = Math.min(end, from + parts.values, nextLayer);
    ranges.push([from, to]);
    from = to;
  }
  return ranges;
}
