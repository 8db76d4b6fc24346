/**
 * The worker processes of `gradfleet train`, supervised: one `gradfleet worker` child per slot, in
 * its own process group so that Ctrl-C reaches only the coordinator, which then stops them. A child
 * that exits unexpectedly (a crash, an OOM kill, a driver fault) is replaced after a backoff, up to
 * `restarts` times per slot; the replacement joins the run like any elastic worker, under a new
 * name (`local-2-r1`) so that it never collides with the session its predecessor left behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Logger, writeLogLine } from '../common/logger.js';
import type { LocalWorkersReport } from '../coordinator/launch.js';

const mainScript = fileURLToPath(new URL('./main.js', import.meta.url));

/** Lines of a child's stderr kept to explain its death. */
const TAIL_LINES = 12;

export interface LocalWorkerOptions {
  count: number;
  /**
   * What the children run: `gradfleet worker` (default) or `gradfleet shard`; names are `local-N` or
   * `shard-N`.
   */
  role?: 'worker' | 'shard';
  log: Logger;
  /** Flags for slot i (from 0): its compute, how to join, its metrics port. */
  argsFor: (i: number) => string[];
  /** Extra environment (secrets that must not show in `ps`). */
  env?: Record<string, string>;
  /** Replacements allowed per slot over the run. */
  restarts: number;
  /** Delay before the n-th restart of a slot (n from 1). */
  backoffMs?: (n: number) => number;
  /** Told of every replacement started, by slot name. */
  onRestart?: (slot: string) => void;
}

/** A slot that kept crashing past its restarts; the summary's shape (coordinator/launch.ts). */
type GaveUp = LocalWorkersReport['gave_up'][number];

interface Slot {
  name: string;
  index: number;
  restarts: number;
  child?: ChildProcess;
  pendingRestart?: NodeJS.Timeout;
  /** No process now and none to come: it gave up, or finished on its own. */
  done: boolean;
  tail: string[];
}

/** Dawn's warnings, as `webgpu` prints them (`Warning: maxDynamic… artificially reduced…`). */
const DAWN_NOISE = /^Warning: /;
const debugging = /^(debug|trace)$/.test(process.env.GRADFLEET_LOG_LEVEL ?? '');

const defaultBackoffMs = (n: number) => Math.min(8000, 500 * 2 ** (n - 1));

const describeExit = (code: number | null, signal: NodeJS.Signals | null) =>
  signal ? `signal ${signal}` : `code ${code}`;

export class LocalWorkers {
  private readonly slots: Slot[];
  /** How logs name a slot's process: "local worker local-1", "local shard reducer shard-1". */
  private readonly noun: string;
  private stopping = false;
  private readonly gaveUp: GaveUp[] = [];
  private resolveAllGone!: () => void;
  /** Resolves when no slot has a worker left or coming (every one gave up or exited on its own). */
  readonly allGone = new Promise<void>((resolve) => (this.resolveAllGone = resolve));

  constructor(private readonly settings: LocalWorkerOptions) {
    const prefix = settings.role === 'shard' ? 'shard' : 'local';
    this.noun = settings.role === 'shard' ? 'local shard reducer' : 'local worker';
    this.slots = Array.from({ length: settings.count }, (_, index) => ({
      name: `${prefix}-${index + 1}`,
      index,
      restarts: 0,
      done: false,
      tail: [],
    }));
    for (const slot of this.slots) this.spawn(slot);
    // Children live in their own process groups: if this process ends without stop(), take them along.
    process.once('exit', () => this.signalAll('SIGTERM'));
  }

  report(): LocalWorkersReport {
    const byWorker = Object.fromEntries(this.slots.map((s) => [s.name, s.restarts]));
    return {
      restarts: this.slots.reduce((n, s) => n + s.restarts, 0),
      restarts_by_worker: byWorker,
      gave_up: [...this.gaveUp],
    };
  }

  /** From now on exits are the run ending, not crashes: nothing is restarted or reported. */
  expectExits(): void {
    this.stopping = true;
    for (const slot of this.slots) clearTimeout(slot.pendingRestart);
  }

  /**
   * Ends every worker: they have been told to shut down (or the run is over), so each gets
   * `graceMs` to exit on its own, then SIGTERM, then SIGKILL. Exits from here on are expected.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.expectExits();
    if (await this.exitedWithin(graceMs)) return;
    this.signalAll('SIGTERM');
    if (await this.exitedWithin(5000)) return;
    this.signalAll('SIGKILL');
    await this.exitedWithin(5000);
  }

  /**
   * Ends every process now (SIGKILL, to its whole process group): for a run that quits without waiting,
   * whose workers may be stuck in a step that never finishes.
   */
  kill(): void {
    this.expectExits();
    for (const s of this.slots) {
      const pid = s.child?.pid;
      if (pid === undefined || s.child?.exitCode !== null || s.child?.signalCode !== null) continue;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        s.child?.kill('SIGKILL');
      }
    }
  }

  private spawn(slot: Slot): void {
    const id = slot.restarts === 0 ? slot.name : `${slot.name}-r${slot.restarts}`;
    const { settings } = this;
    const child = spawn(
      process.execPath,
      [mainScript, settings.role ?? 'worker', '--id', id, ...settings.argsFor(slot.index)],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
        env: {
          ...process.env,
          ...settings.env,
          GRADFLEET_LOG_LEVEL: process.env.GRADFLEET_WORKER_LOG_LEVEL ?? 'warn',
        },
      },
    );
    slot.child = child;
    slot.tail = [];
    // Relayed through this process's log output, so on a terminal they print above the bar, readable.
    createInterface({ input: child.stderr!, crlfDelay: Infinity }).on('line', (line) => {
      slot.tail.push(line);
      if (slot.tail.length > TAIL_LINES) slot.tail.shift();
      // Dawn's own warnings (webgpu writes them straight to stderr) only when debugging; a crash's tail keeps
      // them.
      if (DAWN_NOISE.test(line) && !debugging) return;
      writeLogLine(line);
    });
    child.on('error', (err) =>
      settings.log.error(
        { worker: id, err: err.message },
        `${this.noun} ${id} could not start: ${err.message}`,
      ),
    );
    child.once('exit', (code, signal) => {
      slot.child = undefined;
      if (this.stopping) {
        settings.log.debug(
          { worker: id, code, signal },
          `${this.noun} ${id} exited (${describeExit(code, signal)})`,
        );
        return;
      }
      if (code === 0) {
        settings.log.info({ worker: id }, `${this.noun} ${id} finished`);
        return this.retire(slot);
      }
      this.restartOrGiveUp(slot, id, describeExit(code, signal));
    });
    settings.log.info({ worker: id, pid: child.pid }, `${this.noun} ${id} started (pid ${child.pid})`);
  }

  private restartOrGiveUp(slot: Slot, id: string, exit: string): void {
    const { settings } = this;
    if (slot.restarts >= settings.restarts) {
      const gaveUp: GaveUp = { worker: slot.name, exit, stderr_tail: [...slot.tail] };
      this.gaveUp.push(gaveUp);
      settings.log.error(
        gaveUp,
        `${this.noun} ${id} exited (${exit}) and has used its ${settings.restarts} restart(s): the run goes on without it.` +
          (slot.tail.length > 0 ? ` Its last stderr lines:\n${slot.tail.join('\n')}` : ''),
      );
      return this.retire(slot);
    }
    slot.restarts++;
    const delay = (settings.backoffMs ?? defaultBackoffMs)(slot.restarts);
    settings.log.warn(
      { worker: id, exit, restart: slot.restarts, of: settings.restarts, in_ms: delay },
      `${this.noun} ${id} exited (${exit}); restarting it as ${slot.name}-r${slot.restarts} in ${(delay / 1000).toFixed(1)} s (restart ${slot.restarts} of ${settings.restarts})`,
    );
    slot.pendingRestart = setTimeout(() => {
      if (this.stopping) return;
      this.spawn(slot);
      settings.onRestart?.(slot.name);
    }, delay);
  }

  private retire(slot: Slot): void {
    slot.done = true;
    if (this.slots.every((s) => s.done)) this.resolveAllGone();
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const s of this.slots)
      if (s.child && s.child.exitCode === null && s.child.signalCode === null) s.child.kill(signal);
  }

  private async exitedWithin(ms: number): Promise<boolean> {
    const alive = this.slots.flatMap((s) => (s.child ? [s.child] : []));
    if (alive.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const exited = Promise.all(
      alive.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve()))),
    ).then(() => true);
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    return Promise.race([exited, timedOut]).finally(() => clearTimeout(timer));
  }
}
