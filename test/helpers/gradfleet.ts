/** The built gradfleet binary as users run it (npm test builds dist/ before vitest starts). */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { loadMnist, subset, writeKaggleCsv } from '../../training/data/index.js';

export const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface Finished {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The --json object: the last stdout line, parsed (undefined if it is not JSON). */
  json: Record<string, any> | undefined;
}

export interface Started {
  child: ChildProcess;
  done: Promise<Finished>;
  /** The first complete stderr line matching `pattern`; rejects with the log's tail after `timeoutMs` (150 s). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Its stderr so far. */
  log(): string;
}

/**
 * Every process a test file started; any still running when the file ends is killed, so none outlives a
 * failed test.
 */
const live = new Set<ChildProcess>();
afterAll(() => {
  for (const child of live) child.kill('SIGKILL');
});

/** The lines written so far, less one still being written (a JSON line cut mid-way would not parse). */
const completeLines = (text: string) => text.split('\n').slice(0, -1);

/** Below the 180 s most cluster tests allow themselves, so that a stuck wait fails with its log. */
const WAIT_FOR_MS = 150_000;

export function start(args: string[], env: Record<string, string> = {}): Started {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let stdout = '';
  let stderr = '';
  const watchers: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => {
    stderr += d;
    for (const w of [...watchers]) {
      const line = completeLines(stderr).find((l) => w.pattern.test(l));
      if (line) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const done = new Promise<Finished>((resolve) =>
    child.on('close', (status) => {
      let json: Record<string, any> | undefined;
      try {
        json = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
      } catch {
        json = undefined;
      }
      resolve({ status, stdout, stderr, json });
    }),
  );
  return {
    child,
    done,
    log: () => stderr,
    waitFor: (pattern, timeoutMs = WAIT_FOR_MS) =>
      new Promise((resolve, reject) => {
        const line = completeLines(stderr).find((l) => pattern.test(l));
        if (line) return resolve(line);
        // A wait that never ends says where it stuck, with the log, before the test's own timeout hides it.
        const timer = setTimeout(
          () =>
            reject(new Error(`no ${pattern} logged within ${timeoutMs / 1000} s:\n${stderr.slice(-3000)}`)),
          timeoutMs,
        );
        timer.unref();
        watchers.push({
          pattern,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        child.on('close', () => {
          clearTimeout(timer);
          reject(new Error(`process exited before logging ${pattern}:\n${stderr.slice(-3000)}`));
        });
      }),
  };
}

export const run = (args: string[], env?: Record<string, string>): Promise<Finished> => start(args, env).done;

/** Where a started coordinator listens (ws:// or wss://), read from its log. */
export async function listeningUrl(coordinator: Started): Promise<string> {
  return /wss?:\/\/[0-9.]+:\d+/.exec(await coordinator.waitFor(/coordinator listening on/))![0];
}

/** A run made at most once per test file, when a test first needs it (a reference to compare with). */
export function runOnce(args: string[]): () => Promise<Record<string, any>> {
  let result: Promise<Record<string, any>> | undefined;
  return () => (result ??= run(args).then(expectOk));
}

/** Fails the test with the process's stderr when it did not exit cleanly. */
export function expectOk(r: Finished): Record<string, any> {
  if (r.status !== 0 || !r.json) throw new Error(`gradfleet exited ${r.status}:\n${r.stderr.slice(-4000)}`);
  return r.json;
}

/** A temp dir removed after the file's tests (call at collection time, not inside an `it`). */
export function tempDir(prefix = 'gradfleet-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Small real-MNIST data sets as Kaggle CSVs, so a test can run whole epochs in seconds: the first
 * `train` training images and the first `test` test images (labelled), plus the test images
 * without labels as Kaggle's test.csv.
 */
export function smallMnist(
  dir: string,
  train: number,
  test: number,
): { train: string; test: string; unlabelled: string } {
  const paths = {
    train: join(dir, 'train.csv'),
    test: join(dir, 'test-labelled.csv'),
    unlabelled: join(dir, 'test.csv'),
  };
  const first = (n: number) => Array.from({ length: n }, (_, i) => i);
  writeKaggleCsv(paths.train, subset(loadMnist('train'), first(train), 'train'));
  const testSet = subset(loadMnist('test'), first(test), 'test');
  writeKaggleCsv(paths.test, testSet);
  writeKaggleCsv(paths.unlabelled, { ...testSet, labels: null });
  return paths;
}
