/**
 * The native backend gives the same bits every time, and for any oneDNN thread count: the
 * cluster's bit-identity across worker counts needs each micro-batch's gradient to be the same
 * whichever worker (with however many threads) computes it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../training/kernels/native/addon.js';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { computeContribution } from '../../training/step/model-runner.js';
import { randomArray, relativeError, useBackend } from '../helpers/backends.js';

async function gradientSha(modelName: string, batch: number, threads: number): Promise<string> {
  await useBackend('native', { threads });
  const model = getModel(modelName);
  const images = randomArray(batch * 784, 17);
  const labels = Uint8Array.from({ length: batch }, (_, i) => (i * 3) % 10);
  const c = await computeContribution(model, initialWeights(model, 5), { images, labels, count: batch }, 99);
  return createHash('sha256').update(c.values).digest('hex');
}

// Batch 40: more than two of the filter gradient's 16-image chunks, the last one short. Batch 64:
// mnist-small's dense products, which oneDNN's sgemm split by thread count on AVX2.
describe.each([
  ['mnist-small', 40],
  ['mnist-small', 64],
  ['mnist-cnn', 40],
])('%s on native (batch %i)', (modelName, batch) => {
  it('the same gradient bits twice, and with 1, 2 and 3 oneDNN threads', async () => {
    const shas = [];
    for (const threads of [1, 1, 2, 3]) shas.push(await gradientSha(modelName, batch, threads));
    expect(new Set(shas)).toEqual(new Set([shas[0]]));
  }, 60_000);
});

interface Product {
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  ta: boolean;
  tb: boolean;
  bias: boolean;
  relu: boolean;
}

/** C = A·B (+ bias, ReLU) in float64, reading A and B through their transpose flags and batch broadcast. */
function reference(p: Product, a: Float32Array, b: Float32Array, bias: Float32Array): Float32Array {
  const batch = Math.max(p.batchA, p.batchB);
  const c = new Float32Array(batch * p.m * p.n);
  for (let t = 0; t < batch; t++) {
    const ao = p.batchA > 1 ? t * p.m * p.k : 0;
    const bo = p.batchB > 1 ? t * p.k * p.n : 0;
    for (let i = 0; i < p.m; i++)
      for (let j = 0; j < p.n; j++) {
        let s = p.bias ? bias[j] : 0;
        for (let l = 0; l < p.k; l++)
          s += a[ao + (p.ta ? l * p.m + i : i * p.k + l)] * b[bo + (p.tb ? j * p.k + l : l * p.n + j)];
        c[(t * p.m + i) * p.n + j] = p.relu ? Math.max(s, 0) : s;
      }
  }
  return c;
}

// Products above the addon's one-thread size, wide enough to be cut into column blocks (the last
// one short), with every operand layout the kernels pass.
const products: Product[] = [
  { batchA: 1, batchB: 1, m: 40, k: 512, n: 300, ta: false, tb: false, bias: true, relu: true },
  { batchA: 1, batchB: 1, m: 300, k: 40, n: 520, ta: true, tb: false, bias: false, relu: false },
  { batchA: 1, batchB: 1, m: 64, k: 300, n: 390, ta: false, tb: true, bias: true, relu: false },
  { batchA: 3, batchB: 1, m: 40, k: 200, n: 260, ta: true, tb: true, bias: false, relu: true },
  { batchA: 1, batchB: 2, m: 50, k: 128, n: 400, ta: false, tb: false, bias: false, relu: false },
];

describe('native matMul', () => {
  it.each(products)(
    '[$batchA|$batchB, $m, $k] · [$k, $n] (transposed $ta|$tb, bias $bias, ReLU $relu): the same bits on 1, 2, 3 and 5 threads, and the float64 values',
    async (p) => {
      await useBackend('native');
      const addon = loadNativeAddon().addon!;
      const sizes = [
        p.batchA * p.m * p.k,
        p.batchB * p.k * p.n,
        p.n,
        Math.max(p.batchA, p.batchB) * p.m * p.n,
      ];
      const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((s, x) => s + 4 * x + 64, 0));
      const heap = new ArrayBuffer(offsets[3] + 4 * sizes[3]);
      const view = (i: number) => new Float32Array(heap, offsets[i], sizes[i]);
      view(0).set(randomArray(sizes[0], 3));
      view(1).set(randomArray(sizes[1], 4));
      view(2).set(randomArray(sizes[2], 5));
      const shas = [];
      try {
        for (const threads of [1, 2, 3, 5]) {
          addon.setThreads(threads);
          view(3).fill(Number.NaN);
          addon.matMul(
            heap,
            [offsets[0], offsets[1], p.bias ? offsets[2] : -1, offsets[3]],
            [p.batchA, p.batchB, p.m, p.k, p.n],
            [Number(p.ta), Number(p.tb), Number(p.relu)],
          );
          shas.push(createHash('sha256').update(view(3)).digest('hex'));
        }
      } finally {
        addon.setThreads(1);
      }
      expect(new Set(shas)).toEqual(new Set([shas[0]]));
      expect(relativeError(view(3), reference(p, view(0), view(1), view(2)))).toBeLessThan(1e-6);
    },
  );
});
