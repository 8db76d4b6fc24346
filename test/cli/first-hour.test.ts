/**
 * A newcomer's first hour: each mistake a new user makes gives exactly one line on stderr, and it says what
 * to do (no INFO line of a process starting up comes before it), exits non-zero within 5 s, and leaves
 * no process behind: an --out that cannot be written, a wrong secret (on both sides), a worker pointed at
 * the wrong port with --no-reconnect, a port already taken, `eval --test`.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Finished, listeningUrl, run, start, tempDir } from '../helpers/gradfleet.js';
import { freePort } from '../helpers/wait.js';

const dir = tempDir('gradfleet-first-hour-');
const SECRET = 'the-coordinators-secret-0123456789';

/** The processes whose environment carries `mark`: the one started and everything it started. */
function processesMarked(mark: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').includes(`GRADFLEET_FIRST_HOUR=${mark}`))
        pids.push(Number(name));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

/**
 * Runs a mistaken command as a user would (with an environment mark its children inherit): what it printed,
 * how long it took, and which of its processes are left a moment after it exited.
 */
async function mistake(args: string[], env: Record<string, string> = {}) {
  const mark = randomUUID();
  const started = performance.now();
  // A temp directory of its own: workers that other test files run now are not on this newcomer's machine
  // (a native worker warns when it shares the cores with another: cli/machine-workers.ts).
  const r = await run(args, { TMPDIR: join(dir, 'tmp'), ...env, GRADFLEET_FIRST_HOUR: mark });
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { ...r, seconds, left: processesMarked(mark) };
}

/** Stderr's lines that are not a process's ordinary INFO (or quieter) log lines: warnings, errors, other text. */
function problems(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l !== '')
    .filter((l) => {
      try {
        return (JSON.parse(l) as { level: number }).level >= 40;
      } catch {
        return true;
      }
    });
}

/** The one problem line's message (a log line's msg, or the CLI's `gradfleet: error: …`). */
function theProblem(r: Finished & { seconds: number; left: number[] }): string {
  expect(r.status, r.stderr).not.toBe(0);
  expect(r.seconds, `took ${r.seconds.toFixed(1)} s`).toBeLessThan(5);
  expect(r.left, 'processes left behind').toEqual([]);
  const lines = problems(r.stderr);
  expect(lines, r.stderr).toHaveLength(1);
  // Nothing else either: no start-up line before the one that matters.
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  const [line] = lines;
  return line.startsWith('{') ? (JSON.parse(line) as { msg: string }).msg : line;
}

let busy: Server | undefined;
afterAll(() => busy?.close());

describe('the first hour', () => {
  it('an --out that cannot be written fails before anything starts, in one line naming --out', async () => {
    writeFileSync(join(dir, 'notes.txt'), 'not a directory\n');
    for (const out of ['/proc/gf-out2', join(dir, 'notes.txt', 'run')]) {
      const r = await mistake(['train', '--out', out]);
      expect(theProblem(r)).toMatch(
        new RegExp(
          `^gradfleet: error: --out ${out.replace(/[.]/g, '\\.')} is not a writable directory: .*; pick a directory you can write to with --out DIR$`,
        ),
      );
    }
  });

  it('a wrong secret: the worker says the secrets differ and to give both the same one; the coordinator warns, naming it', async () => {
    const coordinator = start(
      ['coordinator', '--port', '0', '--no-metrics', '--model', 'mnist-small', '--out', join(dir, 'secret')],
      { GRADFLEET_SECRET: SECRET },
    );
    try {
      const url = await listeningUrl(coordinator);
      const r = await mistake(['worker', '--connect', url, '--id', 'newcomer', '--no-reconnect'], {
        GRADFLEET_SECRET: 'a-different-secret-0123456789',
      });
      expect(theProblem(r)).toBe(
        "the coordinator's secret differs from ours: give both the same GRADFLEET_SECRET (or --secret-file)",
      );
      const warning = await coordinator.waitFor(/failed to authenticate/);
      expect(JSON.parse(warning)).toMatchObject({ level: 40, worker: 'newcomer' });
      expect(JSON.parse(warning).msg).toMatch(
        /^worker newcomer \(.+\) failed to authenticate: its secret differs from ours, or it has none; give both the same GRADFLEET_SECRET/,
      );
      expect(problems(coordinator.log())).toEqual([warning]);
    } finally {
      coordinator.child.kill('SIGKILL');
    }
  });

  it('a worker sent to a port where nothing listens, with --no-reconnect, fails at once and says what to check', async () => {
    const port = await freePort();
    const r = await mistake(['worker', '--connect', `ws://127.0.0.1:${port}`, '--no-reconnect']);
    expect(theProblem(r)).toBe(
      `gradfleet: error: cannot connect to ws://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (nothing listens there: is the coordinator running, and does --connect name the port it logged as "coordinator listening on"?)`,
    );
  });

  it('a port already taken names --port', async () => {
    const port = await freePort();
    busy = createServer();
    await new Promise<void>((resolve) => busy!.listen(port, '127.0.0.1', resolve));
    const out = join(dir, 'busy');
    const r = await mistake(['train', '--port', String(port), '--out', out]);
    expect(theProblem(r)).toBe(
      `gradfleet: error: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port} (port ${port} is already in use, by another coordinator or train?: pick another with --port, 0 for any free one)`,
    );
    // The run directory made for it is gone again: it never held a checkpoint.
    expect(existsSync(out)).toBe(false);
  });

  it('eval --test is refused with the flag eval takes', async () => {
    const r = await mistake(['eval', '--checkpoint', join(dir, 'secret'), '--test', 'test.csv']);
    expect(theProblem(r)).toBe(
      'gradfleet: error: eval takes its labelled data as --data, not --test: gradfleet eval --data test.csv …',
    );
  });
});
