/**
 * The run directory is checked before any work (cli/out-dir.ts): made if missing, proven writable with a
 * probe file, refused in one UsageError naming the fix; and making a directory never loops (Node's own
 * recursive mkdir spins at 100% CPU under /proc).
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hasCheckpoint, prepareRunDir, resumeHint } from '../../cli/out-dir.js';
import { UsageError } from '../../common/errors.js';
import { makeDir } from '../../common/make-dir.js';
import { writeFileAtomic } from '../../common/write-atomic.js';
import { saveCheckpoint } from '../../coordinator/checkpoint-store.js';
import { tempDir } from '../helpers/gradfleet.js';

const dir = tempDir('gradfleet-out-dir-');

/** Fails the test rather than hang it, where a call would never settle (the /proc spin). */
const within = <T>(ms: number, p: Promise<T>) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms),
    ),
  ]);

describe('makeDir', () => {
  it('makes missing parents and says which directory it made first; an existing one is left alone', async () => {
    expect(await makeDir(join(dir, 'a', 'b', 'c'))).toBe(join(dir, 'a'));
    expect(await makeDir(join(dir, 'a', 'b', 'c'))).toBeUndefined();
    expect(await makeDir(join(dir, 'a', 'd'))).toBe(join(dir, 'a', 'd'));
  });

  it('fails, never loops, where the kernel refuses a directory whose parent exists (/proc) or a part is a file', async () => {
    await expect(within(2000, makeDir('/proc/gradfleet-no-such-dir/x'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    writeFileSync(join(dir, 'file'), '');
    await expect(within(2000, makeDir(join(dir, 'file', 'x')))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(within(2000, makeDir(join(dir, 'file')))).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('so do the writers of the run outputs: an atomic write and a checkpoint under /proc fail at once', async () => {
    await expect(
      within(2000, writeFileAtomic('/proc/gradfleet-no-such-dir/curves.svg', '<svg/>')),
    ).rejects.toThrow(/ENOENT/);
    await expect(
      within(2000, saveCheckpoint('/proc/gradfleet-no-such-dir/checkpoints', 1, {}, {})),
    ).rejects.toThrow(/cannot write checkpoint/);
  });
});

describe('prepareRunDir', () => {
  it('makes the directory, leaves no probe file behind, and says what it made', async () => {
    const out = join(dir, 'runs', 'fresh');
    expect(await prepareRunDir(out, '--out')).toEqual({ path: out, created: join(dir, 'runs') });
    expect(readdirSync(out)).toEqual([]);
    expect(await prepareRunDir(out, '--out')).toEqual({ path: out, created: undefined });
  });

  it.each([
    [
      '/proc/gf-out2',
      /^--out \/proc\/gf-out2 is not a writable directory: no directory can be made there \(ENOENT\); pick a directory you can write to with --out DIR$/,
    ],
    [
      'README.md/x',
      /^--out README\.md\/x is not a writable directory: a part of the path is a file, not a directory \(ENOTDIR\); pick a directory you can write to with --out DIR$/,
    ],
    ['README.md', /^--out README\.md is not a writable directory: it is a file, not a directory \(EEXIST\)/],
  ])('refuses --out %s in one line naming the fix', async (out, message) => {
    const started = performance.now();
    const err = await within(2000, prepareRunDir(out, '--out')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('names the default run directory when no flag did', async () => {
    await expect(prepareRunDir('/proc/gf-default', undefined)).rejects.toThrow(
      /^the run directory \/proc\/gf-default is not a writable directory/,
    );
  });
});

describe('resume hints', () => {
  it('quote a directory only where a shell needs it', () => {
    expect(resumeHint('train', 'runs/mnist-cnn-2026-01-01T10-00-00-000Z')).toBe(
      'resume with `gradfleet train --resume runs/mnist-cnn-2026-01-01T10-00-00-000Z`',
    );
    expect(resumeHint('coordinator', "my runs/it's")).toBe(
      "resume with `gradfleet coordinator --resume 'my runs/it'\\''s'`",
    );
  });

  it('are given only for a directory with a checkpoint', async () => {
    const run = join(dir, 'with-checkpoint');
    mkdirSync(join(run, 'checkpoints'), { recursive: true });
    expect(hasCheckpoint(run)).toBe(false);
    await saveCheckpoint(join(run, 'checkpoints'), 3, {}, {});
    expect(hasCheckpoint(run)).toBe(true);
  });
});
