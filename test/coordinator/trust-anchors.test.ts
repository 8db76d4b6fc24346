/**
 * The copies a spot-checked run goes back to when a liar is caught (issue 31 item 2): one is needed while some
 * worker has no unchecked node yet; a caught worker's copy is the newest at or before its first unchecked
 * step; copies are deep (nothing done to the live state or to a returned copy reaches them); a rewind forgets
 * what will be computed again; copies no worker needs are dropped, the newest kept.
 */
import { describe, expect, it } from 'vitest';
import type { RunState } from '../../coordinator/run-state.js';
import { SampleLedger } from '../../coordinator/sample-ledger.js';
import { TrustAnchors } from '../../coordinator/trust-anchors.js';
import { createAdamState } from '../../training/optimizer/adam.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';

const size = paramLayout(getModel('mnist-small')).size;
const TRAIN = 1_000;

/** An mnist-small run as it stands after `step` steps: every value tells which step it is from. */
function stateAt(step: number): RunState {
  const adam = createAdamState(size);
  adam.step = step;
  adam.m.fill(step / 100);
  adam.v.fill(step / 1000);
  return {
    config: {
      runId: 'anchors',
      model: 'mnist-small',
      seed: 7,
      batchSize: 100,
      microBatchSize: 25,
      epochs: 2,
      maxSteps: null,
      adam: { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
      lrDecay: 1,
      evalChunkSize: 500,
      maxGradNorm: null,
      localSteps: null,
      wire: 'f32',
      train: { spec: 'mnist:train', fingerprint: 'ab'.repeat(32), count: TRAIN },
      test: { spec: 'mnist:test', fingerprint: 'cd'.repeat(32), count: 500 },
    },
    step,
    weights: Float32Array.from({ length: size }, (_, i) => step + Math.sin(i) / 10),
    adam,
    epochAccumulator: { lossSum: step * 2.5, correct: step * 10, samples: step * 100 },
    history: [],
    stepLosses: Array.from({ length: step }, (_, i) => 2.3 - i / 100),
  };
}

/** The ledger after `step` steps of 100 samples in epoch 0. */
function ledgerAt(step: number): SampleLedger {
  const ledger = new SampleLedger(TRAIN);
  ledger.begin(0, 0);
  for (let s = 0; s < step; s++) ledger.record(0, s * 100, (s + 1) * 100);
  return ledger;
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Whether two tensors hold the same bits (faster than toEqual over 60,874 values). */
function expectSameBits(actual: Float32Array, expected: Float32Array): void {
  expect(actual).toBeInstanceOf(Float32Array);
  expect(bytesOf(actual).equals(bytesOf(expected))).toBe(true);
}

/** Which step a copy is from, checked throughout: weights, moments, figures, losses and the ledger. */
function stepOf(anchor: { state: RunState; ledger: SampleLedger } | undefined): number | undefined {
  if (!anchor) return undefined;
  const { state, ledger } = anchor;
  const expected = stateAt(state.step);
  expectSameBits(state.weights, expected.weights);
  expectSameBits(state.adam.m, expected.adam.m);
  expectSameBits(state.adam.v, expected.adam.v);
  expect(state.adam.step).toBe(expected.adam.step);
  expect(state.epochAccumulator).toEqual(expected.epochAccumulator);
  expect(state.stepLosses).toEqual(expected.stepLosses.map(Math.fround));
  expect(state.config).toEqual(expected.config);
  expect(ledger.totals.samples).toBe(state.step * 100);
  return state.step;
}

/** Anchors taken at `steps`, with the state and ledger of each. */
function anchorsAt(...steps: number[]): TrustAnchors {
  const anchors = new TrustAnchors();
  for (const s of steps) anchors.take(stateAt(s), ledgerAt(s));
  return anchors;
}

describe('TrustAnchors.needed', () => {
  it('is true while a worker has no unchecked node and no copy is held, false once every worker has one', () => {
    const anchors = new TrustAnchors();
    expect(anchors.needed(['a', 'b'], 0)).toBe(true);
    anchors.take(stateAt(0), ledgerAt(0));
    // A copy of this step is held already.
    expect(anchors.needed(['a', 'b'], 0)).toBe(false);
    anchors.unchecked('a', 0);
    anchors.unchecked('b', 1);
    expect(anchors.needed(['a', 'b'], 2)).toBe(false);
    expect(anchors.needed(['a'], 2)).toBe(false);
    expect(anchors.needed([], 2)).toBe(false);
    // A worker given work for the first time needs one again.
    expect(anchors.needed(['a', 'b', 'c'], 2)).toBe(true);
  });

  it('a worker that joins after the newest copy with no unchecked node needs one; one unchecked node ends it', () => {
    const anchors = anchorsAt(0);
    anchors.unchecked('a', 0);
    expect(anchors.needed(['a', 'b'], 1)).toBe(true);
    anchors.take(stateAt(1), ledgerAt(1));
    expect(anchors.needed(['a', 'b'], 1)).toBe(false);
    anchors.unchecked('b', 1);
    expect(anchors.needed(['a', 'b'], 2)).toBe(false);
    expect(anchors.needed(['b', 'a'], 5)).toBe(false);
  });

  it('one copy per distinct join: with every node checked (--verify-fraction 1) no copy is taken after the first', () => {
    const anchors = new TrustAnchors();
    for (let step = 0; step < 50; step++)
      if (anchors.needed(['a', 'b'], step)) anchors.take(stateAt(step), ledgerAt(step));
    expect(anchors.held).toBe(1);
    expect(anchors.needed(['a', 'b', 'c'], 50)).toBe(true);
  });
});

describe('TrustAnchors.anchorFor', () => {
  it('is undefined for a worker with no unchecked node', () => {
    const anchors = anchorsAt(0, 2);
    anchors.unchecked('a', 2);
    expect(anchors.anchorFor('b')).toBeUndefined();
    expect(anchors.anchorFor('never-seen')).toBeUndefined();
  });

  it('is the newest copy at or before the worker first unchecked step', () => {
    const anchors = new TrustAnchors();
    anchors.take(stateAt(0), ledgerAt(0));
    anchors.unchecked('a', 0); // the copy of step 0 is from before a's node at step 0
    anchors.take(stateAt(2), ledgerAt(2));
    anchors.unchecked('b', 3);
    anchors.take(stateAt(5), ledgerAt(5));
    anchors.unchecked('c', 5);
    anchors.unchecked('a', 6); // not its first: changes nothing
    anchors.take(stateAt(8), ledgerAt(8));
    anchors.unchecked('d', 11);
    expect(stepOf(anchors.anchorFor('a'))).toBe(0);
    expect(stepOf(anchors.anchorFor('b'))).toBe(2);
    expect(stepOf(anchors.anchorFor('c'))).toBe(5);
    expect(stepOf(anchors.anchorFor('d'))).toBe(8);
  });

  it('copies the state and the ledger when taken: changing the live ones later changes no copy', () => {
    const anchors = new TrustAnchors();
    const state = stateAt(3);
    const ledger = ledgerAt(3);
    anchors.take(state, ledger);
    anchors.unchecked('a', 3);
    // The run goes on in place, as the coordinator's does.
    state.weights.fill(42);
    state.adam.m.fill(1);
    state.adam.v.fill(2);
    state.adam.step = 99;
    state.epochAccumulator.lossSum = -1;
    state.stepLosses.push(0.5);
    state.history.push({
      epoch: 1,
      step: 10,
      trainLoss: 1,
      trainAccuracy: 0.5,
      testLoss: null,
      testAccuracy: null,
      wallSeconds: 1,
    });
    state.config.seed = 12345;
    ledger.record(0, 300, 400);
    const anchor = anchors.anchorFor('a');
    expect(stepOf(anchor)).toBe(3);
    expect(anchor?.state.history).toEqual([]);
    expect(anchor?.state.weights).not.toBe(state.weights);
    expect(anchor?.state.adam.m).not.toBe(state.adam.m);
  });

  it('returns a fresh copy each time: changing a returned copy changes neither the next one nor the live state', () => {
    const anchors = new TrustAnchors();
    const state = stateAt(4);
    const ledger = ledgerAt(4);
    anchors.take(state, ledger);
    anchors.unchecked('a', 4);
    const first = anchors.anchorFor('a')!;
    // Used as the coordinator uses it: the live state becomes the copy and the run goes on in it.
    first.state.weights.fill(-7);
    first.state.adam.m.fill(-7);
    first.state.adam.v.fill(7);
    first.state.epochAccumulator.correct = -7;
    first.state.stepLosses.length = 0;
    first.state.config.batchSize = 1;
    first.ledger.record(0, 400, 500);
    const second = anchors.anchorFor('a')!;
    expect(stepOf(second)).toBe(4);
    expect(second.state.weights).not.toBe(first.state.weights);
    expectSameBits(state.weights, stateAt(4).weights);
    expect(ledger.totals.samples).toBe(400);
  });

  it('throws when no copy is at or before the first unchecked step', () => {
    const anchors = new TrustAnchors();
    anchors.unchecked('a', 2);
    expect(() => anchors.anchorFor('a')).toThrow(/no copy of the run's state from before step 2/);
  });
});

describe('TrustAnchors.rewound', () => {
  it('forgets the banned worker, later copies and first-unchecked steps at or after the rewind', () => {
    const anchors = new TrustAnchors();
    anchors.take(stateAt(0), ledgerAt(0));
    anchors.unchecked('a', 0);
    anchors.take(stateAt(2), ledgerAt(2));
    anchors.unchecked('liar', 2);
    anchors.unchecked('b', 2);
    anchors.take(stateAt(5), ledgerAt(5));
    anchors.unchecked('c', 6);
    expect(anchors.held).toBe(3);

    anchors.rewound(2, 'liar');
    expect(anchors.anchorFor('liar')).toBeUndefined();
    // Step 2 and later are computed again: b's and c's unchecked nodes there are gone.
    expect(anchors.anchorFor('b')).toBeUndefined();
    expect(anchors.anchorFor('c')).toBeUndefined();
    expect(stepOf(anchors.anchorFor('a'))).toBe(0);
    // The copy of step 5 describes a step that will be computed again; the copy rewound to stays.
    expect(anchors.held).toBe(2);
    // The copy rewound to serves the replay: none is needed before step 2 again.
    expect(anchors.needed(['a', 'b', 'c'], 2)).toBe(false);
    anchors.unchecked('b', 3);
    expect(stepOf(anchors.anchorFor('b'))).toBe(2);
  });

  it('keeps a banned worker forgotten even when it had the earliest unchecked node', () => {
    const anchors = anchorsAt(0, 3);
    anchors.unchecked('liar', 1);
    anchors.unchecked('a', 4);
    anchors.rewound(0, 'liar');
    expect(anchors.anchorFor('liar')).toBeUndefined();
    expect(anchors.anchorFor('a')).toBeUndefined();
    expect(anchors.held).toBe(1);
  });
});

describe('TrustAnchors: pruning', () => {
  it('keeps only the copies some worker needs, and the newest', () => {
    const anchors = anchorsAt(0, 1, 2, 3);
    expect(anchors.held).toBe(4);
    anchors.unchecked('a', 1);
    // a needs 1; 3 is the newest.
    expect(anchors.held).toBe(2);
    expect(stepOf(anchors.anchorFor('a'))).toBe(1);
    anchors.take(stateAt(4), ledgerAt(4));
    anchors.take(stateAt(6), ledgerAt(6));
    anchors.unchecked('b', 5);
    // a needs 1, b needs 4, 6 is the newest; 3 goes.
    expect(anchors.held).toBe(3);
    expect(stepOf(anchors.anchorFor('a'))).toBe(1);
    expect(stepOf(anchors.anchorFor('b'))).toBe(4);
    anchors.take(stateAt(7), ledgerAt(7));
    anchors.unchecked('c', 7);
    // 6 is needed by no one any more: the newest is now 7, which c needs.
    expect(anchors.held).toBe(3);
    expect(stepOf(anchors.anchorFor('c'))).toBe(7);
  });

  it('keeps the newest copy when no worker needs any', () => {
    const anchors = anchorsAt(0, 2, 4);
    anchors.unchecked('a', 9);
    expect(anchors.held).toBe(1);
    expect(stepOf(anchors.anchorFor('a'))).toBe(4);
  });

  it('a copy two workers need is held once', () => {
    const anchors = anchorsAt(0, 2);
    anchors.unchecked('a', 2);
    anchors.unchecked('b', 3);
    expect(anchors.held).toBe(1);
    expect(stepOf(anchors.anchorFor('a'))).toBe(2);
    expect(stepOf(anchors.anchorFor('b'))).toBe(2);
  });
});
