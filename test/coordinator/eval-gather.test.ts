/**
 * What --verify-fraction needs of an evaluation (issue 31): who computed each test chunk, one chunk's result
 * to compare with a recomputation, replacing a liar's chunk with the honest one, and a gather of just the
 * chunks being checked (`only`).
 */
import { describe, expect, it } from 'vitest';
import { EvalGather } from '../../coordinator/eval-gather.js';
import type { MessageOf } from '../../protocol/messages.js';

const CLASSES = 10;
const CHUNK = 10;
/** 25 test samples: chunks [0, 10), [10, 20) and the short [20, 25). */
const labels = Uint8Array.from({ length: 25 }, (_, i) => (i * 3) % CLASSES);

function evaluation(
  round: number,
  first: number,
  count: number,
  lossSums: number[],
): MessageOf<'evaluation'> {
  return { type: 'evaluation', round, first, count, lossSums, payloadValues: 0 };
}

/** Predictions for chunks [first, end): the labels, except where `wrong` says which sample to get wrong. */
function predictions(first: number, end: number, wrong: (sample: number) => boolean = () => false) {
  const from = first * CHUNK;
  const to = Math.min(labels.length, end * CHUNK);
  return Float32Array.from({ length: to - from }, (_, i) => {
    const label = labels[from + i];
    return wrong(from + i) ? (label + 1) % CLASSES : label;
  });
}

/** Round 4, w1 owes chunks [0, 2) and w2 chunk [2, 3), both delivered. */
function delivered(): EvalGather {
  const gather = new EvalGather(4, labels, CHUNK, CLASSES);
  gather.tracker.expect('w1', { first: 0, end: 2 });
  gather.tracker.expect('w2', { first: 2, end: 3 });
  expect(gather.accept('w1', evaluation(4, 0, 2, [1.5, 2.5]), predictions(0, 2))).toEqual({ ok: true });
  expect(gather.accept('w2', evaluation(4, 2, 1, [0.75]), predictions(2, 3))).toEqual({ ok: true });
  return gather;
}

describe('EvalGather.chunkOwners', () => {
  it('lists no chunk before any result', () => {
    const gather = new EvalGather(4, labels, CHUNK, CLASSES);
    gather.tracker.expect('w1', { first: 0, end: 3 });
    expect(gather.chunkOwners()).toEqual([]);
  });

  it('names who computed each chunk, in chunk order', () => {
    const gather = new EvalGather(4, labels, CHUNK, CLASSES);
    gather.tracker.expect('w1', { first: 0, end: 2 });
    gather.tracker.expect('w2', { first: 2, end: 3 });
    gather.accept('w2', evaluation(4, 2, 1, [0.75]), predictions(2, 3));
    expect(gather.chunkOwners()).toEqual([{ chunk: 2, worker: 'w2' }]);
    gather.accept('w1', evaluation(4, 0, 2, [1.5, 2.5]), predictions(0, 2));
    expect(gather.chunkOwners()).toEqual([
      { chunk: 0, worker: 'w1' },
      { chunk: 1, worker: 'w1' },
      { chunk: 2, worker: 'w2' },
    ]);
  });

  it('does not name a worker for a result that was refused', () => {
    const gather = new EvalGather(4, labels, CHUNK, CLASSES);
    gather.tracker.expect('w1', { first: 0, end: 1 });
    // Not assigned, stale, and malformed: none of them makes w1 or w2 an owner.
    expect(gather.accept('w2', evaluation(4, 0, 1, [1]), predictions(0, 1)).ok).toBe(false);
    expect(gather.accept('w1', evaluation(3, 0, 1, [1]), predictions(0, 1)).ok).toBe(false);
    expect(gather.accept('w1', evaluation(4, 0, 1, [1]), predictions(0, 1).subarray(1)).ok).toBe(false);
    expect(gather.chunkOwners()).toEqual([]);
  });
});

describe('EvalGather.chunkResult', () => {
  it("is one chunk's predictions with its loss sum", () => {
    const gather = delivered();
    const r1 = gather.chunkResult(1);
    expect(r1.predictions).toBeInstanceOf(Float32Array);
    expect([...r1.predictions]).toEqual([...predictions(1, 2)]);
    expect(r1.lossSum).toBe(2.5);
    expect(r1.predictions).toHaveLength(10);
    expect(gather.chunkResult(0).lossSum).toBe(1.5);
  });

  it('is as short as the last chunk', () => {
    const r2 = delivered().chunkResult(2);
    expect(r2.predictions).toHaveLength(5);
    expect([...r2.predictions]).toEqual([...predictions(2, 3)]);
    expect(r2.lossSum).toBe(0.75);
  });

  it('is a copy: changing it changes neither the gather nor the next result', () => {
    const gather = delivered();
    const r = gather.chunkResult(0);
    r.predictions.fill(9);
    expect([...gather.chunkResult(0).predictions]).toEqual([...predictions(0, 1)]);
    expect(gather.result().accuracy).toBe(1);
  });
});

describe('EvalGather.replaceChunk', () => {
  it("replaces one chunk's predictions, loss sum and owner, and the evaluation with them", () => {
    const gather = new EvalGather(4, labels, CHUNK, CLASSES);
    gather.tracker.expect('liar', { first: 0, end: 2 });
    gather.tracker.expect('w2', { first: 2, end: 3 });
    // The liar gets every sample of its chunk 1 wrong and claims a small loss.
    const lies = predictions(0, 2, (s) => s >= 10);
    gather.accept('liar', evaluation(4, 0, 2, [1.5, 0.001]), lies);
    gather.accept('w2', evaluation(4, 2, 1, [0.75]), predictions(2, 3));
    expect(gather.complete).toBe(true);
    expect(gather.result().accuracy).toBeCloseTo(15 / 25, 12);

    gather.replaceChunk(1, { predictions: predictions(1, 2), lossSum: 2.5 }, 'w2');
    expect(gather.chunkOwners()).toEqual([
      { chunk: 0, worker: 'liar' },
      { chunk: 1, worker: 'w2' },
      { chunk: 2, worker: 'w2' },
    ]);
    expect([...gather.chunkResult(1).predictions]).toEqual([...predictions(1, 2)]);
    expect(gather.chunkResult(1).lossSum).toBe(2.5);
    const result = gather.result();
    expect(result.accuracy).toBe(1);
    expect(result.loss).toBeCloseTo((1.5 + 2.5 + 0.75) / 25, 12);
    // The chunks on either side are untouched.
    expect([...gather.chunkResult(0).predictions]).toEqual([...predictions(0, 1)]);
    expect(gather.chunkResult(0).lossSum).toBe(1.5);
    expect([...gather.chunkResult(2).predictions]).toEqual([...predictions(2, 3)]);
    expect(gather.chunkResult(2).lossSum).toBe(0.75);
  });

  it('replaces the short last chunk without touching the others', () => {
    const gather = delivered();
    gather.replaceChunk(2, { predictions: new Float32Array(5), lossSum: 9 }, 'w3');
    expect([...gather.chunkResult(2).predictions]).toEqual([0, 0, 0, 0, 0]);
    expect(gather.chunkResult(2).lossSum).toBe(9);
    expect([...gather.chunkResult(1).predictions]).toEqual([...predictions(1, 2)]);
    expect(gather.chunkOwners().at(-1)).toEqual({ chunk: 2, worker: 'w3' });
  });
});

describe('EvalGather with `only`', () => {
  it('is complete once just those chunks are in, and names only their owner', () => {
    const gather = new EvalGather(7, labels, CHUNK, CLASSES, { first: 1, end: 2 });
    expect(gather.complete).toBe(false);
    expect(gather.tracker.remaining).toBe(1);
    expect(gather.tracker.items).toBe(3);
    gather.tracker.expect('checker', { first: 1, end: 2 });
    expect(gather.accept('checker', evaluation(7, 1, 1, [2.5]), predictions(1, 2))).toEqual({ ok: true });
    expect(gather.complete).toBe(true);
    expect(gather.chunkOwners()).toEqual([{ chunk: 1, worker: 'checker' }]);
    expect(gather.chunkResult(1)).toEqual({ predictions: predictions(1, 2), lossSum: 2.5 });
  });

  it('gathers the short last chunk alone', () => {
    const gather = new EvalGather(7, labels, CHUNK, CLASSES, { first: 2, end: 3 });
    gather.tracker.expect('checker', { first: 2, end: 3 });
    expect(gather.accept('checker', evaluation(7, 2, 1, [0.75]), predictions(2, 3))).toEqual({ ok: true });
    expect(gather.complete).toBe(true);
    expect(gather.chunkResult(2)).toEqual({ predictions: predictions(2, 3), lossSum: 0.75 });
  });

  it('refuses chunks outside what it was asked to gather unless assigned, and a result of another round', () => {
    const gather = new EvalGather(7, labels, CHUNK, CLASSES, { first: 1, end: 2 });
    gather.tracker.expect('checker', { first: 1, end: 2 });
    const other = gather.accept('checker', evaluation(7, 0, 1, [1]), predictions(0, 1));
    expect(other).toMatchObject({ ok: false, reason: 'unexpected_message' });
    const stale = gather.accept('checker', evaluation(6, 1, 1, [1]), predictions(1, 2));
    expect(stale).toMatchObject({ ok: false, reason: 'stale_result' });
    expect(gather.complete).toBe(false);
    expect(gather.chunkOwners()).toEqual([]);
  });

  it('without `only`, every chunk is owed', () => {
    const gather = new EvalGather(7, labels, CHUNK, CLASSES);
    expect(gather.tracker.remaining).toBe(3);
    gather.tracker.expect('w1', { first: 0, end: 3 });
    gather.accept('w1', evaluation(7, 1, 1, [2.5]), predictions(1, 2));
    expect(gather.complete).toBe(false);
    gather.accept('w1', evaluation(7, 0, 1, [1.5]), predictions(0, 1));
    gather.accept('w1', evaluation(7, 2, 1, [0.75]), predictions(2, 3));
    expect(gather.complete).toBe(true);
  });
});
