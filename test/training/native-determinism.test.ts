/**
 * The native backend gives the same bits every time, and for any oneDNN thread count: the
 * cluster's bit-identity across worker counts needs each micro-batch's gradient to be the same
 * whichever worker (with however many threads) computes it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { initialWeights } from '../../training/models/init.js';
import { getModel } from '../../training/models/zoo.js';
import { computeContribution } from '../../training/step/model-runner.js';
import { randomArray, useBackend } from '../helpers/backends.js';

async function gradientSha(modelName: string, batch: number, threads: number): Promise<string> {
  await useBackend('native', { threads });
  const model = getModel(modelName);
  const images = randomArray(batch * 784, 17);
  const labels = Uint8Array.from({ length: batch }, (_, i) => (i * 3) % 10);
  const c = await computeContribution(model, initialWeights(model, 5), { images, labels, count: batch }, 99);
  return createHash('sha256').update(c.values).digest('hex');
}

// Batch 40: more than two of the filter gradient's 16-image chunks, the last one short.
describe.each([
  ['mnist-small', 40],
  ['mnist-cnn', 40],
])('%s on native (batch %i)', (modelName, batch) => {
  it('the same gradient bits twice, and with 1, 2 and 3 oneDNN threads', async () => {
    const shas = [];
    for (const threads of [1, 1, 2, 3]) shas.push(await gradientSha(modelName, batch, threads));
    expect(new Set(shas)).toEqual(new Set([shas[0]]));
  }, 60_000);
});
