/**
 * Each training kernel of the wasm and native backends against the stock cpu backend on the same
 * random inputs, including the shapes the models do not use (stride 2, 'valid', even and 5×5
 * kernels, batched, broadcast and transposed matmuls). Native needs the addon that npm ci builds
 * once scripts/install-test-deps.sh has installed libdnnl-dev: without it these tests fail, saying why.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BatchNormTrain } from '../../training/kernels/batch-norm-train.js';
import {
  type TestBackend,
  maxAbsDiff,
  onBackend,
  randomArray,
  relativeError,
  useBackend,
} from '../helpers/backends.js';

type Inputs = Record<string, { shape: number[]; values: Float32Array }>;

function randomInputs(shapes: Record<string, number[]>, seed: number): Inputs {
  return Object.fromEntries(
    Object.entries(shapes).map(([name, shape], i) => [
      name,
      {
        shape,
        values: randomArray(
          shape.reduce((a, b) => a * b, 1),
          seed + i,
        ),
      },
    ]),
  );
}

/** Runs one kernel by name on a backend and returns its outputs as plain arrays. */
async function runOn(
  backend: TestBackend,
  kernel: string,
  inputs: Inputs,
  attrs: object,
): Promise<{ shape: number[]; values: Float32Array }[]> {
  return onBackend(backend, () =>
    tf.tidy(() => {
      const tensors = Object.fromEntries(
        Object.entries(inputs).map(([n, v]) => [n, tf.tensor(v.values, v.shape)]),
      );
      const out = tf.engine().runKernel(kernel, tensors, attrs as tf.NamedAttrMap);
      return (Array.isArray(out) ? out : [out]).map((t) => ({
        shape: (t as tf.Tensor).shape,
        values: (t as tf.Tensor).dataSync() as Float32Array,
      }));
    }),
  );
}

async function expectAgreement(
  backend: TestBackend,
  kernel: string,
  inputs: Inputs,
  attrs: object,
  tolerance = 1e-5,
) {
  const expected = await runOn('cpu', kernel, inputs, attrs);
  const actual = await runOn(backend, kernel, inputs, attrs);
  expect(actual.map((out) => out.shape)).toEqual(expected.map((out) => out.shape));
  actual.forEach((out, i) =>
    expect(relativeError(out.values, expected[i].values)).toBeLessThanOrEqual(tolerance),
  );
}

beforeAll(async () => {
  await useBackend('cpu');
  await useBackend('wasm');
  await useBackend('native');
});

const CONV_CASES: [string, number, number, number, number, number, 'same' | 'valid'][] = [
  // [name, batch, height, width, kernel, stride, padding]
  ['3×3 same stride 1', 4, 12, 12, 3, 1, 'same'],
  ['3×3 same stride 2', 3, 13, 11, 3, 2, 'same'],
  ['3×3 valid stride 2', 2, 12, 12, 3, 2, 'valid'],
  ['2×2 (even) same', 2, 10, 10, 2, 1, 'same'],
  ['4×4 (even) valid stride 2', 2, 11, 11, 4, 2, 'valid'],
  ['5×5 same', 2, 14, 14, 5, 1, 'same'],
  ['5×5 valid', 2, 14, 14, 5, 1, 'valid'],
];

describe.each(['wasm', 'native'] as const)('%s kernels vs cpu', (backend) => {
  const expectAgreementOn = (kernel: string, inputs: Inputs, attrs: object, tolerance?: number) =>
    expectAgreement(backend, kernel, inputs, attrs, tolerance);

  describe('Conv2D and _FusedConv2D (bias, ReLU) forward', () => {
    for (const [name, n, h, w, k, stride, pad] of CONV_CASES) {
      it(`${name}, plain and fused`, async () => {
        const attrs = {
          strides: [stride, stride],
          pad,
          dataFormat: 'NHWC',
          dilations: [1, 1],
          dimRoundingMode: undefined,
        };
        const inputs = randomInputs({ x: [n, h, w, 3], filter: [k, k, 3, 6], bias: [6] }, 81);
        await expectAgreementOn(tf.Conv2D, { x: inputs.x, filter: inputs.filter }, attrs);
        await expectAgreementOn(tf.FusedConv2D, inputs, { ...attrs, activation: 'relu' });
      });
    }
    it("the first layer's 1-channel input, 20 batches of 28×28", () =>
      expectAgreementOn(
        tf.FusedConv2D,
        randomInputs({ x: [20, 28, 28, 1], filter: [3, 3, 1, 16], bias: [16] }, 82),
        {
          strides: [1, 1],
          pad: 'same',
          dataFormat: 'NHWC',
          dilations: [1, 1],
          dimRoundingMode: undefined,
          activation: 'linear',
        },
      ));
  });

  describe('Conv2DBackpropFilter (missing from stock wasm)', () => {
    const cases = CONV_CASES;
    // 1 input channel takes the patch-GEMM path (kh·kw·ci ≤ 32), 8 the batch/channel-swap conv.
    for (const inChannels of [1, 8]) {
      for (const [name, n, h, w, k, stride, pad] of cases) {
        it(`${name}, ${inChannels} input channel(s)`, async () => {
          const xShape: [number, number, number, number] = [n, h, w, inChannels];
          const filterShape: [number, number, number, number] = [k, k, inChannels, 5];
          const outShape = tf.backend_util.computeConv2DInfo(xShape, filterShape, stride, 1, pad).outShape;
          await expectAgreementOn(tf.Conv2DBackpropFilter, randomInputs({ x: xShape, dy: outShape }, 11), {
            strides: [stride, stride],
            pad,
            dataFormat: 'NHWC',
            dimRoundingMode: undefined,
            filterShape,
          });
        });
      }
    }
  });

  describe('Conv2DBackpropInput', () => {
    const cases: [string, number[], number[], number, 'same' | 'valid'][] = [
      ['3×3 same (fast path)', [4, 12, 12, 3], [3, 3, 3, 8], 1, 'same'],
      ['5×5 valid (fast path)', [2, 14, 14, 3], [5, 5, 3, 4], 1, 'valid'],
      ['2×2 even same (fast path, asymmetric padding)', [2, 9, 9, 3], [2, 2, 3, 4], 1, 'same'],
      ['3×3 stride 2 (stock fallback)', [2, 13, 13, 3], [3, 3, 3, 4], 2, 'same'],
    ];
    for (const [name, inputShape, filterShape, stride, pad] of cases) {
      it(name, async () => {
        const outShape = tf.backend_util.computeConv2DInfo(
          inputShape as [number, number, number, number],
          filterShape as [number, number, number, number],
          stride,
          1,
          pad,
        ).outShape;
        await expectAgreementOn(
          tf.Conv2DBackpropInput,
          randomInputs({ dy: outShape, filter: filterShape }, 21),
          { strides: [stride, stride], pad, dataFormat: 'NHWC', dimRoundingMode: undefined, inputShape },
        );
      });
    }
  });

  describe('BatchMatMul with transposed operands', () => {
    const cases: [string, number[], number[], boolean, boolean][] = [
      ['dense weight gradient xᵀ·dy', [1, 64, 300], [1, 64, 40], true, false],
      ['dense input gradient dy·Wᵀ', [1, 64, 40], [1, 300, 40], false, true],
      ['both transposed', [1, 30, 20], [1, 50, 30], true, true],
      ['batched', [3, 7, 5], [3, 6, 5], false, true],
      ['no transpose (stock)', [1, 8, 9], [1, 9, 4], false, false],
      ['batch of 1 broadcast against 3', [1, 7, 5], [3, 5, 4], false, false],
      ['rank 4, transposed', [2, 3, 6, 5], [2, 3, 6, 4], true, false],
    ];
    for (const [name, a, b, transposeA, transposeB] of cases) {
      it(name, () =>
        expectAgreementOn(tf.BatchMatMul, randomInputs({ a, b }, 31), { transposeA, transposeB }),
      );
    }
    it("_FusedMatMul with bias and ReLU (the dense layers' forward)", () =>
      expectAgreementOn(tf._FusedMatMul, randomInputs({ a: [1, 16, 300], b: [1, 300, 40], bias: [40] }, 35), {
        transposeA: false,
        transposeB: false,
        activation: 'relu',
      }));
  });

  describe('Tile, Sum and MaxPoolGrad', () => {
    it('Tile broadcasts [1,1,1,C] to [N,H,W,C] and falls back for general reps', async () => {
      await expectAgreementOn(tf.Tile, randomInputs({ x: [1, 1, 1, 7] }, 41), { reps: [5, 3, 4, 1] }, 0);
      await expectAgreementOn(tf.Tile, randomInputs({ x: [2, 3] }, 42), { reps: [2, 3] }, 0);
    });

    it('Sum over leading axes (with and without keepDims), other axes by the stock kernel', async () => {
      await expectAgreementOn(tf.Sum, randomInputs({ x: [6, 9, 9, 16] }, 51), {
        axis: [0, 1, 2],
        keepDims: false,
      });
      await expectAgreementOn(tf.Sum, randomInputs({ x: [33, 10] }, 52), { axis: 0, keepDims: true });
      await expectAgreementOn(tf.Sum, randomInputs({ x: [4, 5, 6] }, 53), { axis: [-1], keepDims: false });
    });

    // Non-overlapping windows route each dy to one place: bit-exact. Overlapping ones accumulate in
    // another order than the cpu backend: rounding-level differences.
    for (const [name, filter, stride, pad, tolerance] of [
      ['2×2 stride 2 valid', 2, 2, 'valid', 0],
      ['3×3 stride 2 same (general path)', 3, 2, 'same', 1e-6],
      ['2×2 stride 1 same (overlapping)', 2, 1, 'same', 1e-6],
    ] as const) {
      it(`MaxPool and MaxPoolGrad ${name}`, async () => {
        const inputs = randomInputs({ input: [3, 8, 8, 5] }, 61);
        await expectAgreementOn(
          tf.MaxPool,
          { x: inputs.input },
          { filterSize: filter, strides: stride, pad },
          0,
        );
        const output = await runOn(
          'cpu',
          tf.MaxPool,
          { x: inputs.input },
          { filterSize: filter, strides: stride, pad },
        );
        await expectAgreementOn(
          tf.MaxPoolGrad,
          { ...inputs, output: output[0], dy: randomInputs({ dy: output[0].shape }, 62).dy },
          { filterSize: filter, strides: stride, pad },
          tolerance,
        );
      });
    }
  });

  describe('inference BatchNorm (FusedBatchNorm with moving statistics)', () => {
    it('per-channel statistics on 4-D and 2-D inputs', async () => {
      for (const [shape, seed] of [
        [[3, 5, 5, 8], 81],
        [[7, 12], 85],
      ] as const) {
        const c = shape[shape.length - 1];
        const stats = randomInputs({ mean: [c], offset: [c], scale: [c] }, seed + 1);
        const variance = { shape: [c], values: randomArray(c, seed + 2).map((v) => v * v + 0.1) };
        await expectAgreementOn(
          tf.FusedBatchNorm,
          { ...randomInputs({ x: [...shape] }, seed), ...stats, variance },
          { varianceEpsilon: 1e-3 },
        );
      }
    });

    it('falls back to the replaced kernel for broadcast statistics', async () => {
      const x = randomInputs({ x: [2, 3, 4] }, 91);
      await expectAgreementOn(
        tf.FusedBatchNorm,
        {
          ...x,
          mean: { shape: [3, 4], values: randomArray(12, 92) },
          variance: { shape: [3, 4], values: randomArray(12, 93).map((v) => v * v + 0.1) },
        },
        { varianceEpsilon: 1e-3 },
      );
    });
  });

  describe('fused BatchNorm(+ReLU) training kernel', () => {
    for (const relu of [false, true]) {
      it(`matches moments + batchNorm${relu ? ' + relu' : ''} on cpu, values and gradients`, async () => {
        const x = randomArray(6 * 5 * 5 * 8, 71).map((v) => 3 * v + 1.5);
        const gamma = randomArray(8, 72);
        const beta = randomArray(8, 73);
        const dy = randomArray(6 * 5 * 5 * 8, 74);
        const compute = (fused: boolean) =>
          tf.tidy(() => {
            const xs = tf.tensor4d(x, [6, 5, 5, 8]);
            const f = (xt: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
              if (fused)
                return (
                  tf.engine().runKernel(BatchNormTrain, { x: xt, gamma: g, beta: b }, {
                    epsilon: 1e-3,
                    relu,
                  } as unknown as tf.NamedAttrMap) as tf.Tensor[]
                )[0];
              const { mean, variance } = tf.moments(xt, [0, 1, 2]);
              const y = tf.batchNorm(xt, mean, variance, b as tf.Tensor1D, g as tf.Tensor1D, 1e-3);
              return relu ? tf.relu(y) : y;
            };
            const { value, grads } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
              tf.sum(tf.mul(f(a, b, c), tf.tensor4d(dy, [6, 5, 5, 8]))),
            )([xs, tf.tensor1d(gamma), tf.tensor1d(beta)]);
            return [value, ...grads].map((t) => t.dataSync() as Float32Array);
          });
        const expected = await onBackend('cpu', () => compute(false));
        const actual = await onBackend(backend, () => compute(true));
        actual.forEach((a, i) => expect(relativeError(a, expected[i])).toBeLessThan(1e-5));
        expect(maxAbsDiff(actual[1], expected[1])).toBeLessThan(1e-5);
      });
    }
  });
});
