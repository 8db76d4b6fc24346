/** A worker that authenticated still cannot poison a step or the optimizer's state. */
import { describe, expect, it } from 'vitest';
import { MAX_NODE_ABS, StepGather } from '../../coordinator/step-gather.js';
import { checkTrainableState } from '../../coordinator/state-checks.js';
import { DEFAULT_ADAM, adamStep, createAdamState } from '../../training/optimizer/adam.js';
import { averageOf } from '../../training/parallel/reduction-tree.js';
import { stepBatch } from '../../training/parallel/step-plan.js';

const geometry = { trainCount: 64, batchSize: 32, microBatchSize: 16 };
const SIZE = 8;
const contribution = (over: Partial<{ correct: number; samples: number }> = {}) => ({
  type: 'contribution' as const,
  step: 0,
  level: 0,
  index: 0,
  lossSum: 1,
  correct: 3,
  samples: 16,
  computeSeconds: 0.1,
  payloadValues: SIZE,
  ...over,
});

function gather() {
  const g = new StepGather({ step: 0, epoch: 0, stepInEpoch: 0 }, stepBatch(geometry, 0), geometry, SIZE);
  g.tracker.expect('honest', { first: 0, end: 2 });
  return g;
}

describe('contributions a worker cannot get away with', () => {
  it('values large enough to overflow the reduce or Adam are refused as out_of_range, named, and the node goes back to be recomputed', () => {
    const g = gather();
    const huge = new Float32Array(SIZE).fill(1);
    huge[5] = 3e38; // finite, but two of them sum to Inf
    const verdict = g.accept('honest', contribution(), huge);
    expect(verdict).toMatchObject({ ok: false, reason: 'out_of_range', reassign: [{ first: 0, end: 1 }] });
    expect(!verdict.ok && verdict.detail).toMatch(/value 5 is 3\.0+\d*e\+38, beyond/);
    expect(g.accept('honest', contribution(), new Float32Array(SIZE).fill(MAX_NODE_ABS / 2))).toMatchObject({
      ok: false,
      reason: 'unexpected_message',
    }); // revoked: no longer owed
  });

  it('more correct than samples is invalid; honest nodes within the bound reduce to a finite sum', () => {
    const g = gather();
    expect(g.accept('honest', contribution({ correct: 17 }), new Float32Array(SIZE))).toMatchObject({
      ok: false,
      reason: 'invalid_message',
    });
    const g2 = gather();
    const edge = new Float32Array(SIZE).fill(MAX_NODE_ABS * 0.99);
    expect(g2.accept('honest', contribution(), edge).ok).toBe(true);
    expect(g2.accept('honest', { ...contribution(), index: 1 }, edge).ok).toBe(true);
    expect(g2.complete).toBe(true);
    const root = g2.reduce();
    expect(root.values.every(Number.isFinite)).toBe(true);
    // The average goes through the real Adam (the coordinator's: float64 per element, stored as
    // float32), twice: the weights and both moments stay finite and pass the checkpoint's checks.
    const { values: average } = averageOf(root);
    expect(average.every((x) => x > 1e16)).toBe(true); // the bound's worth, not a small value
    let weights: Float32Array = new Float32Array(SIZE).fill(0.5);
    let adam = createAdamState(SIZE);
    for (let step = 0; step < 2; step++)
      ({ weights, state: adam } = adamStep(weights, average, adam, DEFAULT_ADAM, [
        { offset: 0, size: SIZE },
      ]));
    expect(() => checkTrainableState({ weights, m: adam.m, v: adam.v }, SIZE, 'after Adam')).not.toThrow();
    expect(weights.every((w) => w < 0.5)).toBe(true); // Adam moved them, against the gradient
  });
});

describe('state that is saved or resumed', () => {
  const ok = () => ({
    weights: new Float32Array(4).fill(0.5),
    m: new Float32Array(4),
    v: new Float32Array(4).fill(1e-8),
  });
  it('non-finite weights or moments, a negative v, or the wrong size are refused, naming the tensor', () => {
    expect(() => checkTrainableState(ok(), 4, 'ckpt')).not.toThrow();
    const inf = ok();
    inf.v[2] = Infinity;
    expect(() => checkTrainableState(inf, 4, 'ckpt')).toThrow(/adam_v\[2\] is Infinity/);
    const nan = ok();
    nan.weights[0] = Number.NaN;
    expect(() => checkTrainableState(nan, 4, 'ckpt')).toThrow(/weights\[0\] is NaN/);
    const negative = ok();
    negative.v[1] = -1;
    expect(() => checkTrainableState(negative, 4, 'ckpt')).toThrow(/adam_v\[1\]/);
    expect(() => checkTrainableState(ok(), 5, 'ckpt')).toThrow(/weights has 4 values, the model has 5/);
  });
});
