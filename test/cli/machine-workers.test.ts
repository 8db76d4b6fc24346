/**
 * Two `gradfleet worker`s on one machine, each taking every core, slow each other down (925 + 878
 * samples/s, against 2,877 with --threads 1 each): a native worker started without --threads where
 * another runs says so, with the flag that fixes it. Workers find each other through pid files in the
 * temp directory (cli/machine-workers.ts).
 */
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { registerWorker, sharedCoresWarning } from '../../cli/machine-workers.js';
import { run, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir('gradfleet-machine-workers-');

describe('the workers of a machine', () => {
  it('are the live worker processes with a pid file; stale files are removed', async () => {
    const registry = join(dir, 'registry');
    const worker = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'worker']);
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'something-else']);
    try {
      expect(registerWorker(registry)).toEqual([]);
      // A worker that runs, one that died (its pid now unused), a pid reused by another program.
      writeFileSync(join(registry, `${worker.pid}.pid`), '');
      writeFileSync(join(registry, '999999999.pid'), '');
      writeFileSync(join(registry, `${other.pid}.pid`), '');
      expect(registerWorker(registry)).toEqual([worker.pid]);
      expect(readdirSync(registry).sort()).toEqual([`${process.pid}.pid`, `${worker.pid}.pid`].sort());
    } finally {
      worker.kill();
      other.kill();
    }
  });

  it('a worker taking all cores among others is told how many threads each should take', () => {
    expect(sharedCoresWarning([], 16)).toBeUndefined();
    expect(sharedCoresWarning([4242], 16)).toBe(
      'another gradfleet worker runs on this machine (pid 4242), and this one takes all 16 cores: they slow each other down. Give each worker here --threads 8 (16 cores ÷ 2 workers)',
    );
    expect(sharedCoresWarning([1, 2], 2)).toMatch(
      /2 other gradfleet workers run .*--threads 1 \(2 cores ÷ 3 workers\)$/,
    );
  });

  it('a second plain worker warns; one given --threads does not', async () => {
    // Their own temp directory: workers of other test files running now are not this machine's census.
    const env = { TMPDIR: join(dir, 'tmp') };
    const lonely = ['worker', '--connect', 'ws://127.0.0.1:9', '--backend', 'native'];
    const first = start([...lonely, '--connect-timeout', '60'], env);
    try {
      await first.waitFor(/retrying/);
      const second = await run([...lonely, '--no-reconnect'], env);
      const cores = availableParallelism();
      const warnings = second.stderr.split('\n').filter((l) => l.includes('"level":40'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(
        `another gradfleet worker runs on this machine (pid ${first.child.pid}), and this one takes all ${cores} cores`,
      );
      expect(warnings[0]).toContain(`--threads ${Math.max(1, Math.floor(cores / 2))}`);
      const pinned = await run([...lonely, '--no-reconnect', '--threads', '1'], env);
      expect(pinned.stderr).not.toMatch(/other gradfleet worker/);
      expect(first.log()).not.toMatch(/other gradfleet worker/);
    } finally {
      first.child.kill('SIGKILL');
    }
  }, 60_000);
});
