/**
 * What `eval`, `predict` and `--resume` do with a checkpoint, as users run them: a run with a secret signs
 * its checkpoints; the run's secret verifies them, another secret or an altered file is refused in one
 * line, an unsigned one loads with a warning, and a checkpoint's paths outside its run directory are not
 * opened unless it verifies (a FIFO proves it: opening one would hang).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointKey, decodeCheckpoint, encodeCheckpoint } from '../../coordinator/checkpoint-file.js';
import { SharedSecret } from '../../protocol/auth.js';
import { type Finished, expectOk, run, runOnce, smallMnist, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 128, 64);
const SECRET = 'checkpoint-trust-secret-0123456789';
const OTHER = 'some-other-secret-9876543210abcdef';
const secretFile = join(dir, 'secret');
const otherFile = join(dir, 'other-secret');
writeFileSync(secretFile, `${SECRET}\n`);
writeFileSync(otherFile, `${OTHER}\n`);
/** No secret from the environment the tests run in. */
const NO_ENV_SECRET = { GRADFLEET_SECRET: '' };

const train = (out: string, ...extra: string[]) =>
  [
    'train',
    '--model',
    'mnist-small',
    '--backend',
    'wasm',
    '--workers',
    '1',
    '--batch-size',
    '64',
    '--micro-batch',
    '32',
    '--epochs',
    '1',
    '--max-steps',
    '2',
    '--train',
    data.train,
    '--test',
    data.test,
    '--out',
    out,
    '--json',
    ...extra,
  ] as string[];

const signedRun = runOnce(train(join(dir, 'signed'), '--secret-file', secretFile));
const unsignedRun = runOnce(train(join(dir, 'unsigned')));

const evaluate = (checkpoint: string, ...extra: string[]) =>
  run(['eval', '--checkpoint', checkpoint, '--backend', 'wasm', '--json', ...extra], NO_ENV_SECRET);

/** Failed with one line (no stack trace) that matches `pattern`. */
function refused(r: Finished, pattern: RegExp): void {
  expect(r.status, r.stderr).not.toBe(0);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

const newest = (runDir: string) => {
  const names = readdirSync(join(runDir, 'checkpoints')).filter((f) => f.endsWith('.gfck'));
  return join(runDir, 'checkpoints', names.sort().at(-1)!);
};

describe('a signed run', () => {
  it('eval verifies it with the run secret and follows its test data; without the secret it warns and needs --data', async () => {
    const out = (await signedRun()).out;
    const header = readFileSync(newest(out)).subarray(12, 4096).toString('latin1');
    expect(header).toMatch(/"signature":\{"key":"[0-9a-f]{16}","hmac":"[0-9a-f]{64}"\}/);

    const verified = await evaluate(out, '--secret-file', secretFile);
    expect(expectOk(verified).count).toBe(64);
    expect(verified.stderr).toMatch(/signature verified/);

    const noSecret = await evaluate(out);
    refused(
      noSecret,
      /outside its run directory .*its signature was not checked \(no secret was given\): its paths are not followed: name the test data with --data FILE, or give the run's secret/,
    );
    expect(noSecret.stderr).toMatch(/is signed, but no secret was given to verify it/);
    const withData = await evaluate(out, '--data', data.test);
    expect(expectOk(withData).count).toBe(64);
    expect(withData.stderr).toMatch(/is signed, but no secret was given to verify it/);
  }, 120_000);

  it('eval and predict refuse it under another secret, and refuse a copy altered after signing', async () => {
    const out = (await signedRun()).out;
    refused(await evaluate(out, '--secret-file', otherFile), /signed with another secret than the one given/);
    const predictOther = await run(
      [
        'predict',
        '--checkpoint',
        out,
        '--input',
        data.unlabelled,
        '--out',
        join(dir, 'never.csv'),
        '--backend',
        'wasm',
      ],
      { GRADFLEET_SECRET: OTHER },
    );
    refused(predictOther, /signed with another secret than the one given/);

    // Negated weights, a fresh SHA-256 and the original signature: the issue's re-encoded checkpoint.
    const original = readFileSync(newest(out));
    const { meta, tensors } = decodeCheckpoint(original);
    const forged = encodeCheckpoint(
      meta,
      { ...tensors, weights: tensors.weights.map((w) => -w) },
      CheckpointKey.fromSecret(new SharedSecret(OTHER)),
    );
    const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
    const signature = (b: Uint8Array) => /"signature":\{[^}]*\}/.exec(text(b))![0];
    const tampered = Buffer.from(text(forged).replace(signature(forged), signature(original)), 'latin1');
    const copy = join(dir, 'tampered', 'checkpoints');
    mkdirSync(copy, { recursive: true });
    writeFileSync(join(copy, 'ckpt-000000002.gfck'), tampered);
    refused(
      await evaluate(join(dir, 'tampered'), '--secret-file', secretFile, '--data', data.test),
      /altered after it was signed: its signature does not match its content/,
    );
  }, 120_000);

  it('--resume verifies it, and refuses it under another secret or without one when its data lies outside', async () => {
    const out = (await signedRun()).out;
    const resume = (...extra: string[]) =>
      run(
        [
          'train',
          '--resume',
          out,
          '--workers',
          '1',
          '--backend',
          'wasm',
          '--epochs',
          '2',
          '--max-steps',
          '3',
          '--json',
          ...extra,
        ],
        NO_ENV_SECRET,
      );
    refused(await resume('--secret-file', otherFile), /signed with another secret than the one given/);
    refused(
      await resume(),
      /cannot resume .*its signature was not checked .*Name the run's train data with --train FILE \(its fingerprint is checked\), or give the run's secret/,
    );
    const resumed = await resume('--secret-file', secretFile);
    expect(expectOk(resumed).steps).toBe(3);
    expect(resumed.stderr).toMatch(/signature verified/);
  }, 120_000);
});

describe('an unsigned run', () => {
  it('loads with a warning that it is unsigned when a secret is given; resumed with one, its data is named again', async () => {
    const out = (await unsignedRun()).out;
    expect(readFileSync(newest(out)).subarray(12, 4096).toString('latin1')).toMatch(/"signature":null/);
    const warned = await evaluate(out, '--secret-file', secretFile, '--data', data.test);
    expect(expectOk(warned).count).toBe(64);
    // A warning (pino's level 40), naming what is missing.
    expect(warned.stderr).toMatch(
      /"level":40[^\n]*is unsigned \(written without a secret, or before checkpoints were signed\)/,
    );
    // No secret at all: nothing to warn about beyond saying so.
    const plain = await evaluate(out, '--data', data.test);
    expect(plain.stderr).toMatch(/"level":30[^\n]*is unsigned/);
    expect(plain.stderr).not.toMatch(/"level":40[^\n]*unsigned/);

    const resume = (...extra: string[]) =>
      run(
        [
          'train',
          '--resume',
          out,
          '--workers',
          '1',
          '--backend',
          'wasm',
          '--epochs',
          '2',
          '--max-steps',
          '3',
          '--json',
          ...extra,
        ],
        NO_ENV_SECRET,
      );
    refused(
      await resume('--secret-file', secretFile),
      /cannot resume .*it is unsigned: its paths are not followed\. Name the run's train data with --train FILE/,
    );
    refused(
      await resume('--secret-file', secretFile, '--train', data.test, '--test', data.test),
      /the train data .* differs from the run's/,
    );
    const named = await resume('--secret-file', secretFile, '--train', data.train, '--test', data.test);
    expect(expectOk(named).steps).toBe(3);
  }, 180_000);
});

describe('a checkpoint that names files it should not', () => {
  it('eval does not open them (a FIFO would hang it) and never prints their contents', async () => {
    const out = (await unsignedRun()).out;
    const { meta, tensors } = decodeCheckpoint(readFileSync(newest(out)));
    const fifo = join(dir, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    for (const spec of [fifo, '/etc/passwd']) {
      const crafted = join(dir, `crafted-${spec.length}`);
      mkdirSync(join(crafted, 'checkpoints'), { recursive: true });
      const altered = JSON.parse(JSON.stringify(meta));
      altered.config.test.spec = spec;
      writeFileSync(join(crafted, 'checkpoints', 'ckpt-000000002.gfck'), encodeCheckpoint(altered, tensors));
      const started = performance.now();
      const r = await evaluate(crafted);
      expect(performance.now() - started).toBeLessThan(15_000);
      refused(
        r,
        /the checkpoint names .* outside its run directory .* it is unsigned: its paths are not followed: name the test data with --data FILE/,
      );
      expect(r.stderr).not.toMatch(/root:/);
    }
    // A file that is no checkpoint at all: named so, its bytes not shown.
    const passwd = await evaluate('/etc/passwd');
    refused(passwd, /bad magic: not a gradfleet checkpoint/);
    expect(passwd.stderr).not.toMatch(/root|0x/);
  }, 120_000);
});
