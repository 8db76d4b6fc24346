/**
 * A shard reducer's checks of the slices it is sent, a worker's assembly of S weights slices, and the
 * coordinator's gate.
 */
import { describe, expect, it } from 'vitest';
import type { MessageOf } from '../../protocol/messages.js';
import { ExactSquares } from '../../training/optimizer/exact-squares.js';
import { ShardReducer } from '../../shard/shard-reducer.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { geometryOf } from '../../training/parallel/step-plan.js';
import { MAX_NODE_ABS } from '../../training/parallel/node-values.js';
import { WeightsAssembler } from '../../worker/weights-assembler.js';

const layout = paramLayout(getModel('mnist-small'));
const geometry = geometryOf({ batchSize: 64, microBatchSize: 8 }, 60_000);
const slice = { offset: 1000, size: 500 };

function loaded(): ShardReducer {
  const r = new ShardReducer(layout, geometry, slice, true);
  for (const tensor of ['weights', 'adam_m', 'adam_v'] as const) {
    r.load(
      { type: 'shardState', tensor, version: 4, adamStep: 4, payloadValues: slice.size },
      new Float32Array(slice.size).fill(tensor === 'weights' ? 0.5 : 0),
    );
  }
  return r;
}

const node = (fields: Partial<MessageOf<'contribution'>> = {}): MessageOf<'contribution'> => ({
  type: 'contribution',
  step: 4,
  level: 3,
  index: 0,
  offset: slice.offset,
  lossSum: 8,
  correct: 1,
  samples: 64,
  computeSeconds: 0.1,
  payloadValues: slice.size,
  ...fields,
});

describe('ShardReducer', () => {
  it('is not loaded until all three tensors of one version are in', () => {
    const r = new ShardReducer(layout, geometry, slice);
    expect(
      r.load(
        { type: 'shardState', tensor: 'weights', version: 2, adamStep: 2, payloadValues: 500 },
        new Float32Array(500),
      ),
    ).toBeUndefined();
    expect(
      r.load(
        { type: 'shardState', tensor: 'adam_m', version: 2, adamStep: 2, payloadValues: 500 },
        new Float32Array(500),
      ),
    ).toBeUndefined();
    expect(
      r.load(
        { type: 'shardState', tensor: 'adam_v', version: 2, adamStep: 2, payloadValues: 500 },
        new Float32Array(500),
      ),
    ).toMatchObject({ version: 2, adamStep: 2 });
    expect(() =>
      r.load(
        { type: 'shardState', tensor: 'weights', version: 3, adamStep: 3, payloadValues: 5 },
        new Float32Array(5),
      ),
    ).toThrow(/slice 500/);
  });

  it('refuses slices of another step, another offset or size, non-finite or huge values, and nodes outside the tree', () => {
    const r = loaded();
    expect(r.accept('w', node(), new Float32Array(500))).toEqual({ ok: true, squares: 0 });
    const values = new Float32Array(500).fill(0.5);
    // Σg² of the slice's trainable part, for the coordinator's outlier check: every value here is trainable.
    expect(r.accept('w', node({ level: 2 }), values)).toEqual({ ok: true, squares: 125 });
    expect(r.accept('w', node({ step: 3 }), new Float32Array(500))).toMatchObject({
      ok: false,
      reason: 'stale_result',
    });
    expect(r.accept('w', node({ offset: 0 }), new Float32Array(500))).toMatchObject({
      ok: false,
      reason: 'invalid_message',
    });
    expect(r.accept('w', node(), new Float32Array(499))).toMatchObject({
      ok: false,
      reason: 'wrong_payload_size',
    });
    expect(r.accept('w', node(), new Float32Array(500).fill(Number.NaN))).toMatchObject({
      ok: false,
      reason: 'non_finite',
      detail: expect.stringContaining('value 1000'),
    });
    expect(r.accept('w', node(), new Float32Array(500).fill(MAX_NODE_ABS * 10))).toMatchObject({
      ok: false,
      reason: 'out_of_range',
    });
    expect(r.accept('w', node({ level: 4 }), new Float32Array(500))).toMatchObject({
      ok: false,
      reason: 'unexpected_message',
    });
  });

  it('reduces only the nodes it is told to, by their senders, and refuses to reduce one it lacks', () => {
    const r = loaded();
    r.accept('honest', node({ level: 2, index: 0, samples: 32 }), new Float32Array(500).fill(32));
    r.accept('honest', node({ level: 2, index: 1, samples: 32 }), new Float32Array(500).fill(32));
    r.accept('other', node({ level: 2, index: 1, samples: 32 }), new Float32Array(500).fill(1e6));
    const rule = { kind: 'adam' as const, learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
    const reduced = r.reduce({
      type: 'reduce',
      step: 4,
      microBatches: 8,
      rule,
      nodes: [
        { level: 2, index: 0, worker: 'honest' },
        { level: 2, index: 1, worker: 'honest' },
      ],
    });
    expect(reduced.version).toBe(5);
    expect(r.current).toMatchObject({ version: 5, adamStep: 5 });
    // Every trainable element saw an average gradient of 1: Σ g² counts the slice's trainable elements.
    expect(reduced.gradSquares).toBeGreaterThan(0);
    expect(reduced.gradSquares).toBeLessThanOrEqual(500);
    expect(() =>
      r.reduce({
        type: 'reduce',
        step: 5,
        microBatches: 8,
        rule,
        nodes: [{ level: 3, index: 0, worker: 'honest' }],
      }),
    ).toThrow(/does not hold/);
  });

  it("with clip, stops before Adam with the slice's exact Σg², and steps Adam on the gradient scaled as it is told", () => {
    const rule = { kind: 'adam' as const, learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
    const request = {
      type: 'reduce' as const,
      step: 4,
      microBatches: 8,
      rule,
      nodes: [{ level: 3, index: 0, worker: 'w' }],
    };
    const run = (clip: boolean, scale: number) => {
      const r = loaded();
      r.accept('w', node({ level: 3, samples: 64 }), new Float32Array(500).fill(64 * 2));
      const reduced = r.reduce({ ...request, ...(clip && { clip: true as const }) });
      return { r, reduced, finished: clip ? r.finish(4, scale) : reduced };
    };
    const clipped = run(true, 0.5);
    // An average gradient of 2 on each of 500 trainable elements: Σg² = 2000, exactly.
    expect(clipped.reduced).toBeInstanceOf(ExactSquares);
    expect((clipped.reduced as ExactSquares).total()).toBe(2000);
    // Scaled by 0.5 before Adam: the same step as an unclipped gradient of 1 everywhere.
    const halved = loaded();
    halved.accept('w', node({ level: 3, samples: 64 }), new Float32Array(500).fill(64));
    halved.reduce(request);
    expect(clipped.r.current!.weights).toEqual(halved.current!.weights);
    expect(clipped.finished).toMatchObject({ version: 5, gradSquares: 500 });
    expect(run(false, 1).finished).toMatchObject({ version: 5, gradSquares: 2000 });
    expect(() => clipped.r.finish(4, 0.5)).toThrow(/not reduced/);
  });

  it("compares two workers' slices of one node: distance sums over the slice, bit identity", () => {
    const r = loaded();
    r.accept('a', node({ level: 3 }), new Float32Array(500).fill(2));
    r.accept('b', node({ level: 3 }), new Float32Array(500).fill(2));
    r.accept('c', node({ level: 3 }), new Float32Array(500).fill(3));
    const ref = (worker: string) => ({ level: 3, index: 0, worker });
    const compare = (against: string) =>
      r.compare({ type: 'compare', step: 4, node: ref('a'), against: ref(against) });
    expect(compare('b')).toEqual({ diffSquares: 0, squares: 2000, againstSquares: 2000, identical: true });
    expect(compare('c')).toEqual({ diffSquares: 500, squares: 2000, againstSquares: 4500, identical: false });
    expect(() => compare('nobody')).toThrow(/not held/);
  });
});

describe('WeightsAssembler', () => {
  const map = [
    { offset: 0, size: 3 },
    { offset: 3, size: 2 },
  ];
  const took = (t: ReturnType<WeightsAssembler['add']>) =>
    t && { version: t.weights.version, began: t.began, complete: t.complete, values: [...t.weights.values] };

  it('completes a version once every part of every slice is in, in any order, in shared memory', () => {
    const a = new WeightsAssembler(5, map);
    expect(took(a.add(7, 3, Float32Array.of(4, 5), 1))).toEqual({
      version: 7,
      began: true,
      complete: false,
      values: [0, 0, 0, 4, 5],
    });
    expect(took(a.add(7, 2, Float32Array.of(3), 0))).toMatchObject({ began: false, complete: false });
    expect(took(a.add(7, 0, Float32Array.of(1, 2), 0))).toEqual({
      version: 7,
      began: false,
      complete: true,
      values: [1, 2, 3, 4, 5],
    });
    expect(a.latest?.values.buffer).toBeInstanceOf(SharedArrayBuffer);
  });

  it('from shards: a newer version takes over and an older one is stale; a slice sent again rewrites in place until complete', () => {
    const a = new WeightsAssembler(5, map);
    a.add(7, 0, Float32Array.of(1, 2, 3), 0);
    expect(took(a.add(8, 0, Float32Array.of(9, 9, 9), 0))).toMatchObject({ version: 8, began: true });
    expect(a.add(7, 3, Float32Array.of(4, 5), 1)).toBeUndefined();
    // A replacement shard 0 sends its slice of 8 again: rewritten, counted once.
    expect(took(a.add(8, 0, Float32Array.of(7, 7, 7), 0))).toMatchObject({ began: false, complete: false });
    expect(took(a.add(8, 3, Float32Array.of(8, 8), 1))).toMatchObject({
      complete: true,
      values: [7, 7, 7, 8, 8],
    });
    // Complete: the same version again is stale (the others will not send theirs again).
    expect(a.add(8, 3, Float32Array.of(6, 6), 1)).toBeUndefined();
  });

  it('from the coordinator: any version it sends is the current one, an older one included; the current one again starts over', () => {
    const a = new WeightsAssembler(5);
    a.add(8, 0, Float32Array.of(1, 1, 1, 1, 1));
    // The run went back to a trust anchor: version 6, then 8 again with other values.
    expect(took(a.add(6, 0, Float32Array.of(2, 2, 2, 2, 2)))).toEqual({
      version: 6,
      began: true,
      complete: true,
      values: [2, 2, 2, 2, 2],
    });
    expect(took(a.add(8, 0, Float32Array.of(3, 3, 3)))).toMatchObject({
      version: 8,
      began: true,
      complete: false,
    });
    expect(took(a.add(8, 0, Float32Array.of(4, 4, 4)))).toEqual({
      version: 8,
      began: true,
      complete: false,
      values: [4, 4, 4, 0, 0],
    });
  });

  it('throws on a part outside its sender’s slice; the coordinator may send any part of the whole', () => {
    const a = new WeightsAssembler(5, map);
    expect(() => a.add(1, 2, Float32Array.of(1, 2), 1)).toThrow(
      /shard 1 sent weights \[2, 4\), which is not within \[3, 5\)/,
    );
    expect(() => a.add(1, 2, Float32Array.of(1, 2), 0)).toThrow(/shard 0/);
    expect(took(new WeightsAssembler(5).add(1, 2, Float32Array.of(1, 2)))).toMatchObject({ began: true });
    expect(() => new WeightsAssembler(5).add(1, 4, Float32Array.of(1, 2))).toThrow(/the coordinator/);
  });
});
