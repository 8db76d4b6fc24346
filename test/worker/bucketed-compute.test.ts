/**
 * --bucket-mb on real compute: a worker's nodes sent in buckets as backward reaches each layer carry, put
 * together, the bits of the same nodes sent whole, on each CPU backend and both models; the buckets come last
 * layers first, more than one per node, so backward handed them out layer by layer. On webgpu (Mesa's
 * software adapter here) a gradient is not read in the middle of backward: the node's values are final at
 * its end and go as one bucket, with the same bits as sent whole.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { MessageOf } from '../../protocol/messages.js';
import { createDataset } from '../../training/data/dataset.js';
import { initialWeights } from '../../training/models/init.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { type ComputeRun, type ComputedOutput, inThisThread } from '../../worker/compute.js';
import { useBackend } from '../helpers/backends.js';

const samples = 64;
const data = createDataset(
  'train',
  Uint8Array.from({ length: samples * 784 }, (_, i) => (i * 37) % 256),
  Uint8Array.from({ length: samples }, (_, i) => (i * 3) % 10),
);
const runOf = (model: string, bucketValues: number): ComputeRun => ({
  model: getModel(model),
  seed: 11,
  geometry: { trainCount: samples, batchSize: samples, microBatchSize: 16 },
  train: data,
  test: data,
  bucketValues,
});
// Micro-batches [0, 3) of a 4-micro-batch step: nodes [0, 2) (two micro-batches) and [2, 3).
const assign: MessageOf<'assign'> = {
  type: 'assign',
  step: 4,
  epoch: 0,
  batchStart: 0,
  batchSamples: samples,
  weightsVersion: 0,
  first: 0,
  count: 3,
};

interface Sent {
  message: MessageOf<'contribution'>;
  values: Float32Array;
  buckets: [number, number][];
}

/** Each node as its receiver would have it: whole, or put together from its buckets. */
async function nodesOf(model: string, bucketValues: number): Promise<Sent[]> {
  const run = runOf(model, bucketValues);
  const compute = inThisThread((m) => new ModelRunner(m))(run);
  compute.setWeights(0, initialWeights(run.model, 5));
  const size = paramLayout(run.model).size;
  const nodes: Sent[] = [];
  let open: Sent | undefined;
  await compute.contributions(assign, ({ message, payload }: ComputedOutput) => {
    if (message.type === 'bucket') {
      open ??= { message: undefined!, values: new Float32Array(size), buckets: [] };
      open.values.set(payload, message.offset);
      open.buckets.push([message.offset, message.offset + payload.length]);
      return;
    }
    if (message.buckets === undefined) return nodes.push({ message, values: payload.slice(), buckets: [] });
    expect(open?.buckets).toHaveLength(message.buckets);
    nodes.push({ ...open!, message });
    open = undefined;
  });
  compute.dispose();
  return nodes;
}

const bitsOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe.each(['wasm', 'native'] as const)('--bucket-mb on %s', (backend) => {
  beforeAll(() => useBackend(backend));

  it.each([
    ['mnist-small', 4_000],
    ['mnist-cnn', 100_000],
  ] as const)('%s: nodes in buckets of %i values hold the whole nodes’ bits', async (model, bucketValues) => {
    const whole = await nodesOf(model, 0);
    const bucketed = await nodesOf(model, bucketValues);
    expect(bucketed).toHaveLength(2);
    for (const [i, node] of bucketed.entries()) {
      const timeless = ({ computeSeconds: _, bucketsSent: __, ...m }: MessageOf<'contribution'>) => m;
      expect(timeless(node.message)).toEqual({
        ...timeless(whole[i].message),
        payloadValues: 0,
        buckets: node.buckets.length,
      });
      expect(bitsOf(node.values).equals(bitsOf(whole[i].values))).toBe(true);
      expect(node.message.bucketsSent?.map((b) => b.values)).toEqual(node.buckets.map(([a, b]) => b - a));
      // Last layers first, each bucket ending where the next one starts, covering the layout once.
      expect(node.buckets.length).toBeGreaterThan(1);
      for (let k = 1; k < node.buckets.length; k++) expect(node.buckets[k][1]).toBe(node.buckets[k - 1][0]);
      expect(node.buckets[0][1]).toBe(node.values.length);
      expect(node.buckets.at(-1)![0]).toBe(0);
    }
  });
});

describe('--bucket-mb on webgpu', () => {
  beforeAll(() => useBackend('webgpu'));

  it('mnist-small: each node in one bucket, with the whole nodes’ bits', async () => {
    const whole = await nodesOf('mnist-small', 0);
    const bucketed = await nodesOf('mnist-small', 4_000);
    expect(bucketed).toHaveLength(2);
    for (const [i, node] of bucketed.entries()) {
      expect(node.buckets).toEqual([[0, node.values.length]]);
      expect(bitsOf(node.values).equals(bitsOf(whole[i].values))).toBe(true);
    }
  }, 120_000);
});
