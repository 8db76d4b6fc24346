/**
 * How the flat parameter vector is cut among S shard reducers: S contiguous slices balanced by
 * element count, not tied to tensor boundaries (a reducer's cost is per element, whatever tensor
 * the element belongs to). Pure, so any two processes that know (size, S) agree on the cut.
 */
import type { ParamSlice } from '../optimizer/adam.js';

export function planShards(size: number, shards: number): ParamSlice[] {
  if (!Number.isInteger(shards) || shards < 1)
    throw new RangeError(`shards must be a positive integer, got ${shards}`);
  if (!Number.isInteger(size) || size < shards)
    throw new RangeError(`cannot cut ${size} parameters into ${shards} non-empty shards`);
  const base = Math.floor(size / shards);
  const extra = size % shards;
  const slices: ParamSlice[] = [];
  for (let k = 0, offset = 0; k < shards; k++) {
    const length = base + (k < extra ? 1 : 0);
    slices.push({ offset, size: length });
    offset += length;
  }
  return slices;
}

/** The part of `range` that lies inside `window`, in the window's own coordinates (null: none). */
export function intersectInto(range: ParamSlice, window: ParamSlice): ParamSlice | null {
  const first = Math.max(range.offset, window.offset);
  const end = Math.min(range.offset + range.size, window.offset + window.size);
  return end > first ? { offset: first - window.offset, size: end - first } : null;
}

/** True when `slices` cover [0, size) exactly, in order, without gaps or overlaps. */
export function coversExactly(slices: readonly ParamSlice[], size: number): boolean {
  let at = 0;
  for (const s of slices) {
    if (s.offset !== at || s.size <= 0) return false;
    at += s.size;
  }
  return at === size;
}
