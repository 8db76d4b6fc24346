/**
 * WorkerCompute recycles its leaf buffers after each emitted node. On the real path (ModelRunner on
 * wasm: readFlat is readConcatenated(parts, into), which writes into a recycled buffer) a later node
 * must overwrite every value of the buffer it reuses: the test poisons each emitted buffer once its
 * emit returns, and the buffers' bytes are read again after they were reused.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { MessageOf } from '../../protocol/messages.js';
import { createDataset } from '../../training/data/dataset.js';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { paramLayout } from '../../training/models/spec.js';
import { type MicroBatchRunner, ModelRunner } from '../../training/step/model-runner.js';
import { WorkerCompute } from '../../worker/compute.js';
import { useBackend } from '../helpers/backends.js';

const model = getModel('mnist-small');
const images = Uint8Array.from({ length: 64 * 784 }, (_, i) => (i * 31) % 256);
const train = createDataset(
  'train',
  images,
  Uint8Array.from({ length: 64 }, (_, i) => i % 10),
);
const geometry = { trainCount: 64, batchSize: 64, microBatchSize: 8 };

beforeAll(() => useBackend('wasm'));

function compute(): WorkerCompute {
  const c = new WorkerCompute(
    { model, seed: 7, geometry, train, test: train, bucketValues: 0 },
    (m) => new ModelRunner(m),
  );
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

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

interface Emitted {
  /** The payload's bits as emitted. */
  bits: number[];
  /** The payload itself: the compute's buffer, which it may write again once emit returns. */
  payload: Float32Array;
}

/**
 * The nodes of an assignment. Each payload is read during its emit, as the worker encodes it, then
 * filled with NaN (the buffer is the compute's again: whatever it reuses it for must overwrite all of it).
 */
async function nodes(c: WorkerCompute, a: MessageOf<'assign'>, poison = true): Promise<Emitted[]> {
  const out: Emitted[] = [];
  await c.contributions(a, ({ payload }) => {
    out.push({ bits: bits(payload), payload });
    if (poison) payload.fill(Number.NaN);
  });
  return out;
}

describe('WorkerCompute on wasm (readConcatenated into recycled buffers)', () => {
  it('reuses emitted buffers for later micro-batches and overwrites them whole: every node the same bits as on a fresh worker', async () => {
    const used = compute();
    // Nodes [0,2) and [2,3), both poisoned once emitted.
    const first = await nodes(used, assign(0, 0, 3));
    expect(first).toHaveLength(2);
    expect(first[0].bits).not.toEqual(first[1].bits); // real gradients, not a constant
    const poisoned = first.map((n) => n.payload);
    expect(poisoned.every((p) => p.every(Number.isNaN))).toBe(true);

    // One node of 8 leaves: its first two leaves are computed into the two poisoned buffers (recycled
    // on the real path, not allocated), and the root sums into one of them.
    const again = await nodes(used, assign(1, 0, 8));
    expect(again).toHaveLength(1);
    expect(poisoned.map((p) => p.buffer)).toContain(again[0].payload.buffer);
    const fresh = await nodes(compute(), assign(1, 0, 8), false);
    expect(again[0].bits).toEqual(fresh[0].bits);
    // Read after its reuse: the other poisoned buffer now holds a leaf, every value of it written.
    const reusedAsLeaf = poisoned.filter((p) => p.buffer !== again[0].payload.buffer);
    expect(reusedAsLeaf).toHaveLength(1);
    expect(reusedAsLeaf[0].some(Number.isNaN)).toBe(false);

    // Step 0 again on recycled buffers: the bits it first gave, and a fresh worker's.
    const repeat = await nodes(used, assign(0, 0, 3));
    const firstFresh = await nodes(compute(), assign(0, 0, 3), false);
    expect(repeat.map((n) => n.bits)).toEqual(first.map((n) => n.bits));
    expect(firstFresh.map((n) => n.bits)).toEqual(first.map((n) => n.bits));
    used.dispose();
  });

  it('yields to the event loop between micro-batches, so timers (the heartbeat) run during a long share', async () => {
    // A runner that computes synchronously for 20 ms a micro-batch, as a CPU backend does.
    const layout = paramLayout(model);
    const busy: MicroBatchRunner = {
      layout,
      setWeights: () => {},
      contribution: (batch, _seed, into) => {
        const until = performance.now() + 20;
        while (performance.now() < until);
        return { values: into ?? new Float32Array(layout.size), loss: 0, correct: 0, count: batch.count };
      },
      logits: (_images, count) => new Float32Array(count * model.classes),
      dispose: () => {},
    };
    const c = new WorkerCompute(
      { model, seed: 7, geometry, train, test: train, bucketValues: 0 },
      () => busy,
    );
    c.setWeights(0, initialWeights(model, 1));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      await c.contributions(assign(0, 0, 8), () => {});
    } finally {
      clearInterval(timer);
    }
    // Due at every gap between two micro-batches (each took 20 ms ≥ the 5 ms period): 7 at least.
    expect(ticks).toBeGreaterThanOrEqual(7);
  });
});
