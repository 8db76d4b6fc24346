/**
 * The sending side of --bucket-mb: a node reduced range by range as backward makes the ranges final gives the
 * bits of the whole reduce, and its buckets cover it once, each at least the bucket size but the last.
 */
import { describe, expect, it } from 'vitest';
import {
  type NodeSum,
  leafSum,
  nodeKey,
  nodeRange,
  reduceNodes,
} from '../../training/parallel/reduction-tree.js';
import { BucketedNode } from '../../worker/bucketed-node.js';

const SIZE = 1000;
const MICRO_BATCHES = 6;

function meanValues(seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: SIZE }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 1e-3;
  });
}

const results = [0, 1, 2, 3, 4, 5].map((i) => ({ loss: 2.3 - i / 17, correct: i, count: i === 5 ? 3 : 7 }));

/** The node's micro-batches but the last, summed as a worker keeps them. */
function earlierLeaves(first: number, last: number): Map<string, NodeSum> {
  const leaves = new Map<string, NodeSum>();
  for (let i = first; i < last; i++) {
    const r = results[i];
    leaves.set(nodeKey({ level: 0, index: i }), leafSum(meanValues(i + 1), r.loss, r.correct, r.count));
  }
  return leaves;
}

describe('BucketedNode', () => {
  for (const node of [
    { level: 0, index: 3 },
    { level: 1, index: 2 },
    { level: 2, index: 1 },
    { level: 3, index: 0 },
  ])
    it(`node ${nodeKey(node)}: buckets of the ranges as they become final hold the whole reduce's bits`, () => {
      const { first, end } = nodeRange(node, MICRO_BATCHES);
      const last = end - 1;
      const whole = earlierLeaves(first, last);
      const r = results[last];
      whole.set(
        nodeKey({ level: 0, index: last }),
        leafSum(meanValues(last + 1), r.loss, r.correct, r.count),
      );
      const expected = reduceNodes(whole, node, MICRO_BATCHES);

      const sent: { offset: number; values: Float32Array }[] = [];
      const bucketed = new BucketedNode(
        node,
        MICRO_BATCHES,
        earlierLeaves(first, last),
        { index: last, count: r.count },
        SIZE,
        150,
        (offset, values) => sent.push({ offset, values: values.slice() }),
      );
      const values = meanValues(last + 1);
      // Backward's layers, last first, of uneven sizes; the first 40 values are never told (final at the end).
      for (const [from, to] of [
        [900, 1000],
        [880, 900],
        [500, 880],
        [500, 500],
        [40, 500],
      ])
        bucketed.final(values, from, to);
      const sums = bucketed.finish(values, r);
      expect({ lossSum: sums.lossSum, correct: sums.correct, samples: sums.samples }).toEqual({
        lossSum: expected.lossSum,
        correct: expected.correct,
        samples: expected.samples,
      });
      const assembled = new Float32Array(SIZE);
      for (const b of sent) assembled.set(b.values, b.offset);
      expect(Buffer.from(assembled.buffer)).toEqual(Buffer.from(expected.values.buffer));
      expect(bucketed.buckets).toBe(sent.length);
      // A bucket goes once 150 values wait: 100 and 20 do not make one, with the next 380 they do.
      expect(sent.map((b) => [b.offset, b.offset + b.values.length])).toEqual([
        [500, 1000],
        [40, 500],
        [0, 40],
      ]);
    });

  it('refuses ranges that do not come last first and meet', () => {
    const bucketed = new BucketedNode(
      { level: 0, index: 0 },
      1,
      new Map(),
      { index: 0, count: 1 },
      10,
      4,
      () => {},
    );
    const values = new Float32Array(10);
    bucketed.final(values, 6, 10);
    expect(() => bucketed.final(values, 2, 5)).toThrow(/made final after \[6/);
  });
});
