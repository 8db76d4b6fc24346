/** WorkerCompute recycles its leaf buffers after each emitted node: later nodes are unaffected. */
import { describe, expect, it } from 'vitest';
import type { MessageOf } from '../../protocol/messages.js';
import { SyntheticRunner } from '../../training/backends/synthetic.js';
import { createDataset } from '../../training/data/dataset.js';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { WorkerCompute } from '../../worker/compute.js';

const model = getModel('mnist-small');
const images = Uint8Array.from({ length: 64 * 784 }, (_, i) => (i * 31) % 256);
const train = createDataset(
  'train',
  images,
  Uint8Array.from({ length: 64 }, (_, i) => i % 10),
);
const geometry = { trainCount: 64, batchSize: 64, microBatchSize: 8 };

function compute(): WorkerCompute {
  const c = new WorkerCompute(model, 7, geometry, train, train, (m) => new SyntheticRunner(m, 0));
  c.setWeights(0, initialWeights(model, 1));
  return c;
}

const assign = (step: number, first: number, count: number): MessageOf<'assign'> => ({
  type: 'assign',
  step,
  epoch: 0,
  batchStart: 0,
  batchSamples: 64,
  weightsVersion: 0,
  first,
  count,
});

/** The nodes of an assignment: copies of their payloads, and the buffers they were emitted in. */
async function nodes(
  c: WorkerCompute,
  a: MessageOf<'assign'>,
): Promise<{ copies: Float32Array[]; buffers: ArrayBufferLike[] }> {
  const copies: Float32Array[] = [];
  const buffers: ArrayBufferLike[] = [];
  await c.contributions(a, ({ payload }) => {
    copies.push(payload.slice());
    buffers.push(payload.buffer);
  });
  return { copies, buffers };
}

describe('WorkerCompute', () => {
  it('fills recycled buffers completely: a later step is the same bits as on a fresh worker', async () => {
    const used = compute();
    const first = await nodes(used, assign(0, 0, 3)); // nodes [0,2) and [2,3): three leaf buffers
    expect(first.copies).toHaveLength(2);
    const again = await nodes(used, assign(1, 0, 8));
    const fresh = await nodes(compute(), assign(1, 0, 8));
    expect(again.copies).toHaveLength(1);
    expect(again.buffers.some((b) => first.buffers.includes(b))).toBe(true); // recycled, not allocated
    expect(new Uint32Array(again.copies[0].buffer)).toEqual(new Uint32Array(fresh.copies[0].buffer));
    // The first step's nodes were not touched by the second after their emit.
    const firstFresh = await nodes(compute(), assign(0, 0, 3));
    firstFresh.copies.forEach((p, i) =>
      expect(new Uint32Array(p.buffer)).toEqual(new Uint32Array(first.copies[i].buffer)),
    );
  });
});
