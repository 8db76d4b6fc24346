/**
 * What resetting the inner Adam every round costs in accuracy (docs/local-steps.md): the same rounds of local
 * steps in one process, the replicas' inner moments reset every round (what gradfleet does) or carried over
 * from the replica's previous round (what DiLoCo's workers do, and what would tie a replica to one worker).
 *
 *   npx tsx scripts/inner-state.ts [--model mnist-small] [--steps 16] [--replicas 8] [--batch 16] [--epochs 3]
 *
 * Prints one Markdown row per epoch and variant: test accuracy and loss after it.
 */
import { parseArgs } from 'node:util';
import { createLogger } from '../common/logger.js';
import { selectBackend } from '../training/backends/select.js';
import { gatherLabels, loadMnist, normalizeInto } from '../training/data/index.js';
import { initialWeights } from '../training/models/init.js';
import { paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';
import { type AdamState, DEFAULT_ADAM, createAdamState } from '../training/optimizer/adam.js';
import { applyUpdate } from '../training/optimizer/apply-update.js';
import { DEFAULT_OUTER } from '../training/optimizer/outer.js';
import { dropoutSeed, epochOrder } from '../training/parallel/step-plan.js';
import { evaluate } from '../training/step/evaluate.js';
import { replicaContribution } from '../training/step/local-steps.js';
import { ModelRunner } from '../training/step/model-runner.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'mnist-small' },
    steps: { type: 'string', default: '16' },
    replicas: { type: 'string', default: '8' },
    batch: { type: 'string', default: '16' },
    epochs: { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
  },
});
const [H, K, b, epochs, seed] = [values.steps, values.replicas, values.batch, values.epochs, values.seed].map(
  Number,
);
await selectBackend('auto', createLogger('inner-state'));
const model = getModel(values.model!);
const layout = paramLayout(model);
const train = loadMnist('train');
const test = loadMnist('test');
const replicaSamples = H * b;
const roundSamples = K * replicaSamples;
const images = new Float32Array(replicaSamples * train.pixelsPerImage);
const labels = new Uint8Array(replicaSamples);

console.log(`| inner Adam | epoch | test accuracy | test loss |\n|---|---|---|---|`);
for (const carry of [false, true]) {
  const runner = new ModelRunner(model);
  const weights = initialWeights(model, seed);
  const outer = createAdamState(layout.size);
  const moments: AdamState[] = Array.from({ length: K }, () => createAdamState(layout.size));
  let round = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = epochOrder(seed, epoch, train.count);
    for (let at = 0; at < train.count; at += roundSamples, round++) {
      runner.setWeights(weights);
      // Σ samples × delta over the round's replicas, then ÷ samples: the cluster's tree gives the same mean
      // (its sums in another order: these bits are not the cluster's).
      const sum = new Float64Array(layout.size);
      let samples = 0;
      for (let r = 0; r < K && at + r * replicaSamples < train.count; r++) {
        const idx = order.subarray(
          at + r * replicaSamples,
          Math.min(train.count, at + (r + 1) * replicaSamples),
        );
        const c = await replicaContribution(
          runner,
          weights,
          {
            images: normalizeInto(train, idx, images),
            labels: gatherLabels(train.labels!, idx, labels).subarray(0, idx.length),
            count: idx.length,
          },
          dropoutSeed(seed, round, r),
          { adam: DEFAULT_ADAM, batchSize: b, moments: carry ? moments[r] : undefined },
        );
        for (let i = 0; i < sum.length; i++) sum[i] += c.values[i] * c.count;
        samples += c.count;
      }
      const mean = Float32Array.from(sum, (v) => v / samples);
      applyUpdate(layout, weights, mean, outer, { kind: 'nesterov', ...DEFAULT_OUTER }, { inPlace: true });
    }
    runner.setWeights(weights);
    const e = await evaluate(runner, test);
    console.log(
      `| ${carry ? 'carried across rounds' : 'reset every round'} | ${epoch + 1} | ${(100 * e.accuracy).toFixed(2)}% | ${e.loss.toFixed(4)} |`,
    );
  }
  runner.dispose();
}
