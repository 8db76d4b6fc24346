/**
 * How `gradfleet train` supervises its local workers, step by step: a slot that keeps dying is
 * restarted after 0.5, 1 and 2 s under the names local-N-r1, -r2, -r3, then given up on; a worker
 * that exits 0 by itself has finished and is not replaced (and when every one has, the run says so);
 * and Ctrl-C while a restart is pending stops the run without starting it, leaving no process behind.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Started, expectOk, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { untilStep } from '../helpers/run-progress.js';

const dir = tempDir();
const data = smallMnist(dir, 640, 100);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '11',
  '--train',
  data.train,
  '--test',
  data.test,
  '--backend',
  'wasm',
  '--checkpoint-every',
  '1',
  '--json',
];
/** Long enough that no test below sees it end by itself before it is done with it (10 steps an epoch). */
const long = ['--epochs', '100'];

/** A train whose processes (its local workers included) carry `mark` in their environment. */
function train(out: string, mark: string, extra: string[]): Started {
  return start(['train', ...config, ...extra, '--out', out], { GRADFLEET_SUPERVISION_TEST: mark });
}

/** The processes whose environment carries `mark`. */
function marked(mark: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      try {
        return readFileSync(`/proc/${n}/environ`, 'latin1').includes(`GRADFLEET_SUPERVISION_TEST=${mark}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

interface LogLine {
  time: number;
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** The coordinator's own JSON log lines (the workers' relayed lines carry their own names). */
const logLines = (p: Started): LogLine[] =>
  p
    .log()
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    })
    .filter((l) => l.name === 'coordinator');

const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The pid of local worker process `id` once the supervisor has started it. */
async function started(p: Started, id: string): Promise<number> {
  const line = await p.waitFor(new RegExp(`"msg":"local worker ${literal(id)} started \\(pid \\d+\\)"`));
  return JSON.parse(line).pid;
}

/** SIGKILLs local worker process `id` as soon as it is started, and returns the supervisor's answer to its exit. */
async function killAtStart(p: Started, id: string): Promise<LogLine> {
  process.kill(await started(p, id), 'SIGKILL');
  return JSON.parse(
    await p.waitFor(new RegExp(`"msg":"local worker ${literal(id)} exited \\(signal SIGKILL\\)`)),
  );
}

const undisturbed = runOnce([
  'train',
  ...config,
  '--max-steps',
  '12',
  '--epochs',
  '2',
  '--workers',
  '1',
  '--out',
  `${dir}/undisturbed`,
]);

describe('supervision, step by step', () => {
  it('a slot that keeps dying: restarted after 0.5, 1, 2 s as local-2-r1, -r2, -r3, then given up on after 3; the run goes on', async () => {
    const mark = randomUUID();
    const out = `${dir}/backoff`;
    const p = train(out, mark, [...long, '--workers', '2']);
    // Once the run is under way (before it, the coordinator would wait for both workers to join).
    await untilStep(out, 1);
    const ids = ['local-2', 'local-2-r1', 'local-2-r2', 'local-2-r3'];
    const answers: LogLine[] = [];
    for (const id of ids) answers.push(await killAtStart(p, id));
    const stepAtGiveUp = (await untilStep(out, 0)) as number;

    // The first three exits are answered with a restart, each after twice the delay of the one before.
    for (const [n, answer] of answers.slice(0, 3).entries()) {
      expect(answer.level).toBe(40);
      expect(answer).toMatchObject({ worker: ids[n], restart: n + 1, of: 3, in_ms: 500 * 2 ** n });
      expect(answer.msg).toBe(
        `local worker ${ids[n]} exited (signal SIGKILL); restarting it as ${ids[n + 1]} in ${(0.5 * 2 ** n).toFixed(1)} s (restart ${n + 1} of 3)`,
      );
    }
    // Each replacement started no sooner than its delay after its predecessor's exit was logged (less 5 ms: the
    // log's clock is the wall clock, the timer's a monotonic one).
    const lines = logLines(p);
    for (const [n, id] of ids.slice(1).entries()) {
      const startedAt = lines.find((l) => l.msg.startsWith(`local worker ${id} started`));
      expect(startedAt, `${id} started`).toBeDefined();
      expect(startedAt!.time - answers[n].time).toBeGreaterThanOrEqual(500 * 2 ** n - 5);
    }
    // The fourth exit is the last: no fourth restart.
    const gaveUp = answers[3];
    expect(gaveUp.level).toBe(50);
    expect(gaveUp.msg).toMatch(
      /^local worker local-2-r3 exited \(signal SIGKILL\) and has used its 3 restart\(s\): the run goes on without it/,
    );
    expect(gaveUp).toMatchObject({ worker: 'local-2', exit: 'signal SIGKILL' });

    // The run goes on with local-1 alone: more steps are checkpointed after the give-up.
    await untilStep(out, stepAtGiveUp + 2);
    p.child.kill('SIGINT');
    const summary = expectOk(await p.done);
    expect(summary.stopped).toBe('interrupted');
    expect(summary.local_workers).toEqual({
      restarts: 3,
      restarts_by_worker: { 'local-1': 0, 'local-2': 3 },
      gave_up: [expect.objectContaining({ worker: 'local-2', exit: 'signal SIGKILL' })],
    });
    expect(p.log()).not.toMatch(/local-2-r4/);
    expect(marked(mark), 'processes left behind').toEqual([]);
  }, 60_000);

  it('a local worker that exits 0 mid-run has finished: it is not replaced, and the run ends with the weights of an undisturbed one', async () => {
    const out = `${dir}/exit0`;
    const p = train(out, randomUUID(), ['--max-steps', '12', '--epochs', '2', '--workers', '2']);
    await untilStep(out, 3);
    const pid = await started(p, 'local-2');
    // A worker stopped by SIGTERM leaves its session cleanly and exits 0.
    process.kill(pid, 'SIGTERM');
    const finished = JSON.parse(await p.waitFor(/"msg":"local worker local-2 finished"/));
    expect(finished.level).toBe(30);
    const summary = expectOk(await p.done);
    expect(p.log()).not.toMatch(/restarting it as local-2-r1|local-2-r1 started/);
    expect(summary.stopped).toBe('finished');
    expect(summary.steps).toBe(12);
    expect(summary.local_workers).toEqual({
      restarts: 0,
      restarts_by_worker: { 'local-1': 0, 'local-2': 0 },
      gave_up: [],
    });
    const reference = await undisturbed();
    expect(summary.accounting).toEqual(reference.accounting);
    expect(summary.weights_sha256).toBe(reference.weights_sha256);
  }, 60_000);

  it('when every local worker has exited 0 before the end, the run fails and says so', async () => {
    const mark = randomUUID();
    const out = `${dir}/all-exit0`;
    const p = train(out, mark, [...long, '--workers', '2']);
    await untilStep(out, 1);
    for (const id of ['local-1', 'local-2']) process.kill(await started(p, id), 'SIGTERM');
    const r = await p.done;
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/local worker local-1 finished/);
    expect(r.stderr).toMatch(/local worker local-2 finished/);
    expect(r.stderr).toMatch(/all 2 local workers are gone before the run finished/);
    expect(r.stderr).not.toMatch(/restarting it as/);
    expect(marked(mark), 'processes left behind').toEqual([]);
  }, 60_000);

  it('Ctrl-C while a restart is pending: the run stops, the replacement never starts, no process is left', async () => {
    const mark = randomUUID();
    const out = `${dir}/pending`;
    const p = train(out, mark, [...long, '--workers', '2']);
    await untilStep(out, 1);
    // Two quick deaths: the third restart is 2 s away, time enough to interrupt it on a loaded machine.
    await killAtStart(p, 'local-2');
    await killAtStart(p, 'local-2-r1');
    const pending = await killAtStart(p, 'local-2-r2');
    expect(pending).toMatchObject({ restart: 3, in_ms: 2000 });
    // local-1 frozen, the step in flight cannot finish: the stop outlasts the pending restart's delay, so only
    // cancelling it keeps local-2-r3 from starting. Thawed after that delay, it finishes the step and the run
    // stops.
    const survivor = await started(p, 'local-1');
    process.kill(survivor, 'SIGSTOP');
    try {
      p.child.kill('SIGINT');
      await p.waitFor(/interrupted: finishing the current step/);
      await new Promise((r) => setTimeout(r, Math.max(0, pending.time + 3000 - Date.now())));
    } finally {
      process.kill(survivor, 'SIGCONT');
    }
    const summary = expectOk(await p.done);
    expect(summary.stopped).toBe('interrupted');
    const interruptedAt = logLines(p).find((l) =>
      l.msg.startsWith('interrupted: finishing the current step'),
    );
    expect(interruptedAt, 'the interrupt was seen').toBeDefined();
    // It was seen while the restart was still pending.
    expect(interruptedAt!.time).toBeLessThan(pending.time + 2000);
    expect(p.log()).not.toMatch(/local-2-r3 started/);
    expect(marked(mark), 'processes left behind').toEqual([]);
  }, 60_000);
});
