/**
 * The worker's compute thread (worker/threaded-compute.ts, worker/compute-thread.ts): the same bits as
 * computing in the worker's own thread, on each CPU backend and both models, and a main thread left free to
 * move bytes while a micro-batch computes. It loads the thread from dist/ (the build): a worker thread runs
 * JavaScript, not the TypeScript sources vitest reads.
 */
import { createServer, connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageOf } from '../../protocol/messages.js';
import { createDataset } from '../../training/data/dataset.js';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { paramLayout } from '../../training/models/spec.js';
import { ModelRunner } from '../../training/step/model-runner.js';
import { type Compute, type ComputeRun, inThisThread } from '../../worker/compute.js';
import { ComputeThread } from '../../dist/worker/threaded-compute.js';
import { useBackend } from '../helpers/backends.js';

const samples = 64;
const images = Uint8Array.from({ length: samples * 784 }, (_, i) => (i * 31) % 256);
const data = createDataset(
  'train',
  images,
  Uint8Array.from({ length: samples }, (_, i) => i % 10),
);
const runOf = (model: string, microBatchSize = 16): ComputeRun => ({
  model: getModel(model),
  seed: 7,
  geometry: { trainCount: samples, batchSize: samples, microBatchSize },
  train: data,
  test: data,
  bucketValues: 0,
});

const assign = (step: number, first: number, count: number): MessageOf<'assign'> => ({
  type: 'assign',
  step,
  epoch: 0,
  batchStart: 0,
  batchSamples: samples,
  weightsVersion: 0,
  first,
  count,
});
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Each node's message and payload bits, read during its emit (the buffer goes back to the thread). */
async function nodesOf(c: Compute, a: MessageOf<'assign'>) {
  const out: { message: MessageOf<'contribution'>; bits: number[] }[] = [];
  await c.contributions(a, ({ message, payload }) => out.push({ message, bits: bits(payload) }));
  return out;
}

const threads: ComputeThread[] = [];
afterAll(() => Promise.all(threads.map((t) => t.close())));

async function threadOn(backend: 'wasm' | 'native'): Promise<ComputeThread> {
  const thread = await ComputeThread.start({ backend, syntheticMs: 0, threads: 1 });
  threads.push(thread);
  return thread;
}

describe.each(['wasm', 'native'] as const)('the compute thread on %s', (backend) => {
  beforeAll(() => useBackend(backend));

  it.each(['mnist-small', 'mnist-cnn'])(
    '%s: every node and every evaluation the bits of the same compute in this thread, on fresh and on recycled buffers',
    async (model) => {
      const thread = await threadOn(backend);
      expect(thread.info.name).toBe(backend);
      const run = runOf(model);
      const weights = initialWeights(run.model, 3);
      const here = inThisThread((m) => new ModelRunner(m))(run);
      const there = thread.computeFor(run);
      here.setWeights(0, weights);
      there.setWeights(0, weights);
      // Nodes [0,2) and [2,3), then [0,4) on the buffers the first two came back in.
      for (const a of [assign(0, 0, 3), assign(1, 0, 4)]) {
        const mine = await nodesOf(here, a);
        const theirs = await nodesOf(there, a);
        expect(theirs.map((n) => n.message)).toEqual(
          mine.map((n) => ({ ...n.message, computeSeconds: expect.any(Number) })),
        );
        expect(theirs.length).toBe(a.first === 0 && a.count === 3 ? 2 : 1);
        expect(theirs.map((n) => n.bits)).toEqual(mine.map((n) => n.bits));
      }
      const request: MessageOf<'evaluate'> = {
        type: 'evaluate',
        round: 1,
        weightsVersion: 0,
        chunkSize: 16,
        first: 0,
        count: 4,
      };
      const [a, b] = await Promise.all([here.evaluate(request), there.evaluate(request)]);
      expect(b.message).toEqual(a.message);
      expect(bits(b.payload)).toEqual(bits(a.payload));
      expect(thread.memoryBytes).toBeGreaterThan(0);
      here.dispose();
      there.dispose();
    },
    120_000,
  );
});

describe('while a micro-batch computes', () => {
  it('the bytes of a large frame queued before it keep arriving at a peer served by the same main thread', async () => {
    const thread = await threadOn('wasm');
    // Micro-batches of 21 samples (~200 ms of mnist-cnn on an idle core): three of them in a batch of 64.
    const run = runOf('mnist-cnn', 21);
    const c = thread.computeFor(run);
    c.setWeights(0, initialWeights(run.model, 3));
    // The peer: counts bytes as this (main) thread reads them.
    let received = 0;
    let allAt = Number.POSITIVE_INFINITY;
    const frameBytes = 4 * paramLayout(run.model).size;
    const server = createServer((s) =>
      s.on('data', (chunk) => {
        received += chunk.length;
        if (received >= frameBytes && allAt === Number.POSITIVE_INFINITY) allAt = performance.now();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    // Two leaves, [1,2) and [2,3), each its own node: the first is written to the socket as it arrives,
    // and the second micro-batch is computed meanwhile.
    const emitted: { at: number; computeMs: number }[] = [];
    await c.contributions(assign(0, 1, 2), ({ message, payload }) => {
      emitted.push({ at: performance.now(), computeMs: message.computeSeconds * 1000 });
      // A copy, as a frame is: the buffer goes back to the thread once emit returns.
      if (emitted.length === 1)
        socket.write(Buffer.from(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)));
    });
    socket.destroy();
    server.close();
    c.dispose();
    expect(emitted).toHaveLength(2);
    const [, second] = emitted;
    // The whole frame was in before the second node was even ready (a micro-batch computing on this thread
    // would have held its bytes until the micro-batch ended).
    expect(second.computeMs).toBeGreaterThan(50);
    expect(allAt).toBeLessThan(second.at);
  }, 120_000);
});
