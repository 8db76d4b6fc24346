import { describe, expect, it } from 'vitest';
import {
  type NodeSum,
  averageOf,
  decompose,
  isValidNode,
  leafSum,
  nodeKey,
  nodeRange,
  reduceNodes,
  rootLevel,
} from '../../training/parallel/reduction-tree.js';
import { Rng } from '../../training/rng.js';

const SIZE = 257;
function leaves(microBatches: number, seed: number): NodeSum[] {
  const rng = new Rng(seed);
  return Array.from({ length: microBatches }, (_, i) => {
    const mean = Float32Array.from(
      { length: SIZE },
      () => (rng.nextFloat() - 0.5) * 10 ** Math.floor(rng.nextFloat() * 8 - 4),
    );
    return leafSum(mean, rng.nextFloat(), i % 5, 16 - (i % 3));
  });
}
const copy = (s: NodeSum): NodeSum => ({ ...s, values: s.values.slice() });

/** What a worker owning [first, end) sends: its pre-reduced nodes. */
function workerNodes(all: NodeSum[], first: number, end: number): Array<[string, NodeSum]> {
  const m = all.length;
  return decompose(first, end, m).map((node) => {
    const mine = new Map(
      all.slice(first, end).map((s, i) => [nodeKey({ level: 0, index: first + i }), copy(s)]),
    );
    return [nodeKey(node), reduceNodes(mine, node, m)];
  });
}

function randomCuts(m: number, parts: number, rng: Rng): number[] {
  const cuts = new Set<number>([0, m]);
  while (cuts.size < Math.min(m, parts) + 1) cuts.add(1 + Math.floor(rng.nextFloat() * (m - 1)));
  return [...cuts].sort((a, b) => a - b);
}

describe('reduction tree', () => {
  it.each([1, 2, 3, 4, 5, 7, 8, 13, 16, 31])(
    'decompose covers any range of %i micro-batches exactly, with valid maximal nodes',
    (m) => {
      for (let first = 0; first < m; first++) {
        for (let end = first + 1; end <= m; end++) {
          const nodes = decompose(first, end, m);
          let at = first;
          for (const node of nodes) {
            expect(isValidNode(node, m)).toBe(true);
            const r = nodeRange(node, m);
            expect(r.first).toBe(at);
            at = r.end;
          }
          expect(at).toBe(end);
          if (first === 0 && end === m) expect(nodes).toEqual([{ level: rootLevel(m), index: 0 }]);
        }
      }
    },
  );

  it('gives the same bits for any split of the micro-batches among workers', () => {
    const rng = new Rng(42);
    for (const m of [2, 3, 5, 8, 11, 16]) {
      const all = leaves(m, m);
      const root = { level: rootLevel(m), index: 0 };
      const reference = reduceNodes(new Map(workerNodes(all, 0, m)), root, m);
      for (let trial = 0; trial < 20; trial++) {
        const cuts = randomCuts(m, 1 + Math.floor(rng.nextFloat() * m), rng);
        const supplied = new Map(cuts.slice(1).flatMap((end, i) => workerNodes(all, cuts[i], end)));
        const got = reduceNodes(supplied, root, m);
        expect(Buffer.from(got.values.buffer).equals(Buffer.from(reference.values.buffer))).toBe(true);
        expect(got.lossSum).toBe(reference.lossSum);
        expect(got.samples).toBe(reference.samples);
      }
    }
  });

  it('is a different order from a left-to-right sum (so the tree, not luck, gives the identity)', () => {
    const all = leaves(5, 9);
    const tree = reduceNodes(new Map(workerNodes(all, 0, 5)), { level: 3, index: 0 }, 5);
    const sequential = all.map((s) => s.values).reduce((a, b) => a.map((v, i) => v + b[i]));
    expect(Buffer.from(tree.values.buffer).equals(Buffer.from(sequential.buffer))).toBe(false);
  });

  it('names the missing micro-batch, and averages by samples', () => {
    const all = leaves(4, 1);
    const partial = new Map(workerNodes(all, 0, 3));
    expect(() => reduceNodes(partial, { level: 2, index: 0 }, 4)).toThrow(/micro-batch 3 is missing/);
    const one = leafSum(Float32Array.of(2, 4), 0.5, 3, 4);
    expect(Array.from(one.values)).toEqual([8, 16]);
    const avg = averageOf(one);
    expect(Array.from(avg.values)).toEqual([2, 4]);
    expect(avg.loss).toBeCloseTo(0.5);
    expect(avg.accuracy).toBe(0.75);
  });
});
