/**
 * Cleanups that must run on every way out of the process: a normal end or a thrown error (the
 * owner's `finally` calls run()), Ctrl-C and SIGTERM (handled here: clean up, then exit as the
 * signal would), and any other exit (process.exit, an uncaught exception), where only synchronous
 * work can still happen. A namespace left behind would keep its processes and addresses alive.
 */

export interface Cleanup {
  /** The thorough way: stop processes gracefully, then remove what was made. */
  run(): Promise<void>;
  /** The last resort in the 'exit' event: kill and remove, synchronously. */
  runSync(): void;
}

const pending = new Set<Cleanup>();
let installed = false;

type StopSignal = 'SIGINT' | 'SIGTERM';
/** 128 + the signal's number, as a shell reports a process the signal ended. */
export const SIGNAL_EXIT_CODES: Record<StopSignal, number> = { SIGINT: 130, SIGTERM: 143 };
let stoppedBy: StopSignal | undefined;

/**
 * The signal that is stopping the process, if one is. Work that fails because the cleanup stopped
 * its processes should exit with the signal's code, not report the failure.
 */
export const interruptedBy = (): StopSignal | undefined => stoppedBy;

function install(): void {
  if (installed) return;
  installed = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      stoppedBy = signal;
      process.stderr.write(`${signal}: removing the simulated cluster\n`);
      void Promise.allSettled([...pending].map((c) => c.run())).finally(() =>
        process.exit(SIGNAL_EXIT_CODES[signal]),
      );
    });
  }
  process.on('exit', () => {
    for (const c of pending) {
      try {
        c.runSync();
      } catch (err) {
        process.stderr.write(`cleanup failed: ${(err as Error).message}\n`);
      }
    }
  });
}

/**
 * Registers `cleanup` until it has run; returns the way to run it from the owner's finally. It runs
 * once, whoever asks first (the owner, a signal); the synchronous form runs at exit if that run
 * has not finished (it must cope with a half-done cleanup).
 */
export function onEveryExit(cleanup: Cleanup): () => Promise<void> {
  install();
  let started: Promise<void> | undefined;
  const once: Cleanup = {
    run: () => (started ??= cleanup.run().finally(() => pending.delete(once))),
    runSync: () => {
      pending.delete(once);
      cleanup.runSync();
    },
  };
  pending.add(once);
  return once.run;
}
