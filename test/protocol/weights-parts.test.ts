/**
 * Weights in parts (--bucket-mb): front layers first, each layer starting a part of its own, at most the
 * bucket's values each; the frames decode back to the whole version.
 */
import { describe, expect, it } from 'vitest';
import { decodeFrame } from '../../protocol/codec.js';
import { partRanges, weightsFrames } from '../../protocol/weights-parts.js';
import { layerStarts, paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';

describe('weights in parts', () => {
  it('cuts at each layer’s start and every `values`, in layout order; without parts, one', () => {
    const parts = { values: 4, layerStarts: [0, 3, 12] };
    expect(partRanges(0, 14, parts)).toEqual([
      [0, 3],
      [3, 7],
      [7, 11],
      [11, 12],
      [12, 14],
    ]);
    // A shard's slice from offset 5: the same cuts, from there.
    expect(partRanges(5, 8, parts)).toEqual([
      [5, 9],
      [9, 12],
      [12, 13],
    ]);
    expect(partRanges(5, 8)).toEqual([[5, 13]]);
  });

  it('mnist-cnn in 1 MB parts: its convolutions come ahead of the dense layer, and the frames put back the whole', () => {
    const layout = paramLayout(getModel('mnist-cnn'));
    const starts = layerStarts(layout);
    expect(starts[0]).toBe(0);
    expect(starts).toHaveLength(new Set(layout.entries.map((e) => e.layer)).size);
    const values = Float32Array.from({ length: layout.size }, (_, i) => i % 1000);
    const frames = weightsFrames(3, 0, values, 'f32', { values: 262_144, layerStarts: starts });
    const back = new Float32Array(layout.size);
    const offsets: number[] = [];
    for (const bytes of frames) {
      const { message, payload } = decodeFrame(bytes);
      if (message.type !== 'weights') throw new Error(message.type);
      expect(message.version).toBe(3);
      expect(payload.length).toBeLessThanOrEqual(262_144);
      back.set(payload, message.offset);
      offsets.push(message.offset!);
    }
    expect(back).toEqual(values);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    // Every layer's first value starts a frame.
    for (const start of starts) expect(offsets).toContain(start);
  });
});
