/**
 * Local steps (--local-steps H --replicas K) through the whole cluster: the result depends on the run config
 * alone. The same weights for any worker count, with shard reducers, after a worker is SIGKILLed mid-round
 * (the round is redone elsewhere, the sample ledger exact) and a new one joins, and across a resume with
 * another worker count.
 */
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, run, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { untilStep } from '../helpers/run-progress.js';

const dir = tempDir('gradfleet-local-steps-');
const data = smallMnist(dir, 600, 200);
// A round: 8 replicas × 4 inner steps × 8 samples = 256 samples; 600 samples make rounds of 256, 256 and 88
// (replicas of 32, 32 and 24 samples: the last one's last inner step is short). 4 epochs: 12 rounds.
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '8',
  '--local-steps',
  '4',
  '--replicas',
  '8',
  '--seed',
  '5',
  '--epochs',
  '4',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const train = (name: string, ...extra: string[]) =>
  run(['train', ...config, '--backend', 'wasm', '--out', `${dir}/${name}`, ...extra]).then(expectOk);
// Evaluations every 2 rounds as well as at each epoch's end (rounds 3, 6, 9 and 12): they change no weight.
const one = runOnce([
  'train',
  ...config,
  '--backend',
  'wasm',
  '--workers',
  '1',
  '--eval-every',
  '2',
  '--out',
  `${dir}/one`,
]);

/** A coordinator of the config's run in `out`, and wasm workers for it, slowed by `slowMs` per share. */
async function coordinator(out: string, ...extra: string[]) {
  const c = start(['coordinator', ...config, '--port', '0', '--no-metrics', '--out', out, ...extra]);
  const url = await listeningUrl(c);
  const slowWorker = (id: string, slowMs: number) =>
    start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--fault-slow-ms', String(slowMs)]);
  return { c, slowWorker };
}

describe('--local-steps', () => {
  it('1 worker: 12 rounds of 8 replicas, the figures of a round, the outer step', async () => {
    const summary = await one();
    expect(summary.steps).toBe(12);
    expect(summary.accounting).toEqual({
      samples: 2400,
      micro_batches: 4 * (8 + 8 + 3),
      duplicate_samples: 0,
      missing_samples: 0,
      epochs_complete: 4,
    });
    // 12 rounds of 4 inner steps on 600 samples learn something: far above chance.
    expect(summary.test_accuracy).toBeGreaterThan(0.5);
    expect(summary.local_steps).toEqual({
      steps: 4,
      replicas: 8,
      inner_batch: 8,
      outer: { learningRate: 0.7, momentum: 0.9 },
    });
    // --eval-every 2 and the epochs' ends, each with the samples trained by then (rounds of 256, 256, 88).
    const evaluations: { step: number; samples: number; test_accuracy: number }[] = summary.evaluations;
    expect(evaluations.map((e) => [e.step, e.samples])).toEqual([
      [2, 512],
      [3, 600],
      [4, 856],
      [6, 1200],
      [8, 1712],
      [9, 1800],
      [10, 2056],
      [12, 2400],
    ]);
    expect(evaluations.at(-1)!.test_accuracy).toBe(summary.test_accuracy);
  }, 120_000);

  it.each([
    [2, 0],
    [4, 0],
    [2, 2],
  ])(
    'N = %i workers, S = %i shard reducers: the weights of 1 worker',
    async (workers, shards) => {
      const summary = await train(
        `n${workers}s${shards}`,
        '--workers',
        String(workers),
        ...(shards > 0 ? ['--shards', String(shards)] : []),
      );
      expect(summary.workers).toBe(workers);
      expect(summary.weights_sha256).toBe((await one()).weights_sha256);
      expect(summary.accounting).toEqual((await one()).accounting);
    },
    120_000,
  );

  it('N = 2 with --bucket-mb 0.05: each node’s deltas leave in buckets during its last inner step, the weights of whole nodes', async () => {
    const r = await run(
      [
        'train',
        ...config,
        '--backend',
        'wasm',
        '--workers',
        '2',
        '--bucket-mb',
        '0.05',
        '--out',
        `${dir}/buckets`,
      ],
      { GRADFLEET_LOG_LEVEL: 'debug' },
    );
    const summary = expectOk(r);
    expect(summary.weights_sha256).toBe((await one()).weights_sha256);
    const steps = r.stderr
      .split('\n')
      .filter((l) => l.includes('"step done"'))
      .map((l) => JSON.parse(l));
    expect(steps).toHaveLength(12);
    for (const step of steps)
      for (const node of step.buckets) {
        // mnist-small's 60,874 values in buckets of 12,500: the last layers' go while the last inner step's
        // backward still runs through the first ones (ms after the node's compute began, the worker's clock).
        expect(node.values.length).toBeGreaterThan(1);
        expect(node.values.reduce((a: number, b: number) => a + b, 0)).toBe(60_874);
        expect(node.sent_ms.at(-1)).toBeGreaterThan(node.sent_ms[0] + 1);
      }
  }, 120_000);

  it('a worker SIGKILLed mid-round and a new one joining: the round is redone, the same weights and ledger', async () => {
    const out = `${dir}/killed`;
    const { c, slowWorker } = await coordinator(out, '--min-workers', '1', '--checkpoint-every', '1');
    // Slowed, so that each holds its replicas for a while: the kill lands inside a round.
    const worker = (id: string) => slowWorker(id, 150);
    const doomed = worker('doomed');
    const steady = worker('steady');
    await untilStep(out, 3);
    await c.waitFor(/worker steady joined/);
    doomed.child.kill('SIGKILL');
    await c.waitFor(/worker doomed left/);
    const late = worker('late');
    await c.waitFor(/worker late joined/);
    const summary = expectOk(await c.done);
    expect(summary.weights_sha256).toBe((await one()).weights_sha256);
    expect(summary.accounting).toEqual((await one()).accounting);
    expect(summary.workers).toBe(3);
    for (const w of [steady, late]) expect((await w.done).status).toBe(0);
    expect(Number(/worker done after (\d+) steps/.exec((await late.done).stderr)?.[1])).toBeGreaterThan(0);
  }, 180_000);

  it('--step-deadline counts per inner step: workers slower than it per round, within H × it, keep their replicas', async () => {
    const { c, slowWorker } = await coordinator(
      `${dir}/deadline`,
      '--min-workers',
      '2',
      '--step-deadline',
      '1',
    );
    // 1.5 s of extra work per share: over 1 s, well within the round's 4 × 1 s.
    for (const id of ['slow-1', 'slow-2']) slowWorker(id, 1500);
    const finished = await c.done;
    const summary = expectOk(finished);
    expect(finished.stderr).not.toMatch(/missed the/);
    expect(summary.weights_sha256).toBe((await one()).weights_sha256);
  }, 180_000);

  it('checkpointed at round 5 with 2 workers, resumed with 1: the weights of an uninterrupted run', async () => {
    await train('resumed', '--workers', '2', '--max-steps', '5');
    const summary = expectOk(
      await run([
        'train',
        '--resume',
        `${dir}/resumed`,
        '--max-steps',
        '12',
        '--workers',
        '1',
        '--backend',
        'wasm',
        '--json',
      ]),
    );
    expect(summary.steps).toBe(12);
    expect(summary.weights_sha256).toBe((await one()).weights_sha256);
  }, 120_000);

  it.each([
    [['--local-steps', '4'], /--local-steps and --replicas go together/],
    [['--local-steps', '4', '--replicas', '2', '--micro-batch', '4'], /--micro-batch does not apply/],
    [['--local-steps', '4', '--replicas', '2', '--max-grad-norm', '1'], /--max-grad-norm does not apply/],
    [['--outer-lr', '0.5'], /--outer-lr needs --local-steps/],
  ])('refuses %j with a usage error', async (flags, message) => {
    const r = await run([
      'train',
      '--model',
      'mnist-small',
      '--max-steps',
      '1',
      ...flags,
      '--out',
      `${dir}/bad`,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
  });
});
