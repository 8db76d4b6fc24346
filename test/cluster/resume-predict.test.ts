/**
 * Runs that stop and continue, and what users do with a finished run: eval, predict, the pictures, the
 * export.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectOk, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 200);
// 5 steps per epoch (the last one short): 12 steps cross two epoch boundaries.
const common = [
  'train',
  '--model',
  'mnist-small',
  '--backend',
  'wasm',
  '--workers',
  '2',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '5',
  '--epochs',
  '3',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

describe('resume', () => {
  it('a run stopped after 7 steps and resumed to 12 ends with the same weights as an uninterrupted run', async () => {
    const whole = expectOk(await run([...common, '--max-steps', '12', '--out', join(dir, 'whole')]));
    const first = expectOk(await run([...common, '--max-steps', '7', '--out', join(dir, 'split')]));
    expect(first.steps).toBe(7);
    expect(first.weights_sha256).not.toBe(whole.weights_sha256);
    const resumed = expectOk(
      await run([
        'train',
        '--resume',
        join(dir, 'split'),
        '--max-steps',
        '12',
        '--workers',
        '2',
        '--backend',
        'wasm',
        '--json',
      ]),
    );
    expect(resumed.steps).toBe(12);
    expect(resumed.samples).toBe(12 * 64 - 7 * 64 - 20); // step 9 is the short last step of epoch 2
    expect(resumed.weights_sha256).toBe(whole.weights_sha256);
    // The history survives the restart: both epochs that ended are recorded once each.
    const summary = JSON.parse(readFileSync(join(dir, 'split', 'summary.json'), 'utf8'));
    expect(summary.epochs).toBe(2);
    expect(summary.epochs).toBe(whole.epochs);
  }, 180_000);

  it('refuses to resume with a different model, and says which flag to drop', async () => {
    const r = await run(['train', '--resume', join(dir, 'whole'), '--model', 'mnist-cnn', '--workers', '1']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--resume continues a run with its own config; drop --model/);
  });

  it('refuses a missing or corrupt checkpoint with a clear error', async () => {
    const r = await run(['train', '--resume', join(dir, 'nothing-here'), '--workers', '1']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nothing-here.*does not exist/);

    // A run whose only checkpoint has one flipped payload bit: refused, naming the checksum, never trained
    // on.
    const corrupt = join(dir, 'corrupt');
    mkdirSync(join(corrupt, 'checkpoints'), { recursive: true });
    const newest = readdirSync(join(dir, 'whole', 'checkpoints'))
      .filter((f) => f.endsWith('.gfck'))
      .sort()
      .at(-1)!;
    const bytes = readFileSync(join(dir, 'whole', 'checkpoints', newest));
    bytes[bytes.length - 5] ^= 0x10;
    writeFileSync(join(corrupt, 'checkpoints', newest), bytes);
    const c = await run(['train', '--resume', corrupt, '--workers', '1', '--json']);
    expect(c.status).not.toBe(0);
    expect(c.stderr).toMatch(/checksum mismatch/);
    expect(c.stderr).toMatch(/no valid checkpoint/i);
    expect(c.stderr).not.toMatch(/epoch 1/);
  });

  it('Ctrl-C finishes the step in flight, writes a checkpoint, and the run resumes from it', async () => {
    const out = join(dir, 'interrupted');
    const p = start([...common, '--epochs', '50', '--out', out]);
    await p.waitFor(/checkpoint written/); // the first epoch ended: training is well under way
    p.child.kill('SIGINT');
    const r = expectOk(await p.done);
    expect(r.stopped).toBe('interrupted');
    expect(r.steps).toBeGreaterThanOrEqual(5);
    expect(r.checkpoint).toContain(`ckpt-${String(r.steps).padStart(9, '0')}`);
    const resumed = expectOk(
      await run([
        'train',
        '--resume',
        out,
        '--max-steps',
        String(r.steps + 2),
        '--workers',
        '1',
        '--backend',
        'wasm',
        '--json',
      ]),
    );
    expect(resumed.steps).toBe(r.steps + 2);
  }, 180_000);
});

describe('a finished run', () => {
  it('leaves checkpoints, curves, a confusion matrix and a tfjs model; eval and predict use its checkpoint', async () => {
    const out = join(dir, 'whole');
    expect(readdirSync(join(out, 'checkpoints')).filter((f) => f.endsWith('.gfck')).length).toBeGreaterThan(
      0,
    );
    for (const f of ['curves.svg', 'confusion.svg', 'model/model.json', 'model/weights.bin', 'summary.json'])
      expect(existsSync(join(out, f))).toBe(true);
    expect(readFileSync(join(out, 'curves.svg'), 'utf8')).toMatch(/^<svg/);

    // Its test data lies outside the run directory and the run is unsigned: named again (--data), since a
    // checkpoint's paths outside its run are not followed (test/cli/checkpoint-trust.test.ts).
    const evaluation = expectOk(
      await run(['eval', '--checkpoint', out, '--data', data.test, '--backend', 'wasm', '--json']),
    );
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(evaluation.count).toBe(200);
    expect(evaluation.accuracy).toBeCloseTo(summary.test_accuracy, 10);
    expect(evaluation.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(200);
    expect(existsSync(evaluation.confusion_svg)).toBe(true);

    // Read by a person through a pipe (| head, > file): the table, in plain text.
    const table = await run(['eval', '--checkpoint', out, '--data', data.test, '--backend', 'wasm']);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/true \\ predicted/);
    expect(table.stdout).toContain(`accuracy ${(summary.test_accuracy * 100).toFixed(2)}%`);
    expect(table.stdout + table.stderr).not.toContain('\x1b[');

    const submission = join(dir, 'submission.csv');
    expectOk(
      await run([
        'predict',
        '--checkpoint',
        out,
        '--input',
        data.unlabelled,
        '--out',
        submission,
        '--backend',
        'wasm',
        '--json',
      ]),
    );
    const lines = readFileSync(submission, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('ImageId,Label');
    expect(lines).toHaveLength(201);
    lines.slice(1).forEach((line, i) => expect(line).toMatch(new RegExp(`^${i + 1},[0-9]$`)));
    // The predictions are the model's: as accurate on these labelled images as eval said.
    const truth = readFileSync(data.test, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',')[0]);
    const correct = lines.slice(1).filter((l, i) => l.split(',')[1] === truth[i]).length;
    expect(correct / 200).toBeCloseTo(evaluation.accuracy, 10);
  }, 120_000);

  it('predict rejects a missing or bad input file with a clear error, writing no submission', async () => {
    const r = await run(['predict', '--checkpoint', join(dir, 'whole'), '--input', join(dir, 'nope.csv')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nope\.csv.*no such file/);

    // A file that exists but is not images: a truncated Kaggle CSV row, and bytes that are no format at all.
    const truncated = join(dir, 'truncated.csv');
    writeFileSync(
      truncated,
      `${readFileSync(data.unlabelled, 'utf8').split('\n').slice(0, 3).join('\n').slice(0, -40)}\n`,
    );
    const junk = join(dir, 'junk.bin');
    writeFileSync(junk, Buffer.from('this is not an image file at all\n'));
    for (const [input, reason] of [
      [truncated, /truncated\.csv.*expected \d+ fields/],
      [junk, /junk\.bin/],
    ] as const) {
      const out = join(dir, `never-${input.length}.csv`);
      const bad = await run(['predict', '--checkpoint', join(dir, 'whole'), '--input', input, '--out', out]);
      expect(bad.status, bad.stderr).toBe(1);
      expect(bad.stderr).toMatch(reason);
      expect(bad.stderr).not.toMatch(/\n\s+at /); // one clear line, no stack trace
      expect(existsSync(out)).toBe(false);
    }
  });
});
