/** `gradfleet worker`: computes gradients for a coordinator, and comes back when it restarts. */
import { adapterLabel } from '../../training/backends/adapters.js';
import { availableParallelism, hostname } from 'node:os';
import { Command, Option } from 'commander';
import { type Logger, createLogger } from '../../common/logger.js';
import { serveMetrics } from '../../common/metrics-server.js';
import { backoff, connectWithRetry } from '../connect-retry.js';
import { LinkStopper } from '../signals.js';
import { registerWorker, sharedCoresWarning } from '../machine-workers.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import type { FaultPlan } from '../../worker/fault-injection.js';
import { LIE_MODES, type LieMode } from '../../worker/lie-modes.js';
import { type ComputeInterceptor, runWorker } from '../../worker/worker.js';
import { memoryBudget } from '../../worker/memory-bounds.js';
import { type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { type ComputeFlags, addComputeOptions, computeOf } from '../compute-options.js';
import { collect, nonNegativeInt, nonNegativeNumber, positiveInt } from '../options.js';
import { type SecretFlags, addSecretOptions, secretOf } from '../secret-options.js';
import {
  type TransportFlags,
  addTlsConnectOptions,
  addTransportOptions,
  connectorFor,
  shardReacherFor,
} from '../transport-options.js';

interface WorkerFlags extends MetricsFlags, TransportFlags, SecretFlags, ComputeFlags {
  connect?: string;
  tlsCa?: string;
  id: string;
  connectTimeout: number;
  reconnect: boolean;
  faultNanAtStep?: number;
  faultExitAtStep?: number;
  faultSlowMs?: number;
  faultReportComputeS?: number;
  faultScaleAtStep?: number;
  faultLie?: LieMode;
  faultLieFromStep?: number;
  dataDir: string[];
  maxMemoryMb?: number;
}

/**
 * The hidden --fault-* flags, as an interceptor; the module that injects faults loads only when one is given.
 */
async function faultsOf(flags: WorkerFlags, log: Logger): Promise<ComputeInterceptor | undefined> {
  const plan: FaultPlan = {
    nanAtStep: flags.faultNanAtStep,
    exitAtStep: flags.faultExitAtStep,
    slowMs: flags.faultSlowMs,
    reportComputeSeconds: flags.faultReportComputeS,
    scaleAtStep: flags.faultScaleAtStep,
    lie: flags.faultLie,
    lieFromStep: flags.faultLieFromStep,
  };
  if (Object.values(plan).every((v) => v === undefined)) return undefined;
  const { faultInjector } = await import('../../worker/fault-injection.js');
  return faultInjector(plan, log);
}

export function workerCommand(): Command {
  const cmd = new Command('worker')
    .description(
      'connect to a coordinator and compute the micro-batches it assigns; reconnect if it goes away',
    )
    .option(
      '--connect <url>',
      'coordinator address, e.g. ws://10.0.0.5:7070 or wss://… (with --transport ws)',
    )
    .option(
      '--id <name>',
      'worker name shown in logs and metrics (unique per coordinator)',
      `${hostname()}-${process.pid}`,
    )
    .option('--connect-timeout <s>', 'keep retrying a connection this long before giving up', positiveInt, 60)
    .option(
      '--no-reconnect',
      'exit when the coordinator goes away instead of waiting for it to come back (and at once when the first connection fails, unless --connect-timeout is given)',
    )
    .option(
      '--data-dir <dir>',
      "a folder the coordinator's data files may be loaded from (repeatable); by default only mnist:* is loaded and other data is streamed",
      collect,
      [],
    )
    .option(
      '--max-memory-mb <n>',
      "refuse a run whose welcome asks more of this worker's memory (data sets, weights, a micro-batch's activations) than this (default: 3/4 of the machine's or container's memory)",
      positiveInt,
    )
    .addOption(
      new Option('--fault-nan-at-step <n>', "testing: send NaN in this step's first contribution")
        .argParser(nonNegativeInt)
        .hideHelp(),
    )
    .addOption(
      new Option('--fault-exit-at-step <n>', 'testing: exit abruptly when assigned this step')
        .argParser(nonNegativeInt)
        .hideHelp(),
    )
    .addOption(
      new Option(
        '--fault-slow-ms <n>',
        'testing: burn this many ms of CPU before each assignment (a slower machine)',
      )
        .argParser(nonNegativeInt)
        .hideHelp(),
    )
    .addOption(
      new Option(
        '--fault-report-compute-s <s>',
        'testing: report this compute time for every node, whatever it took',
      )
        .argParser(nonNegativeNumber)
        .hideHelp(),
    )
    .addOption(
      new Option(
        '--fault-scale-at-step <n>',
        "testing: scale this step's first contribution by 1000 (finite, but an outlier)",
      )
        .argParser(nonNegativeInt)
        .hideHelp(),
    )
    .addOption(
      new Option('--fault-lie <mode>', 'testing: lie as a hostile worker would (worker/fault-injection.ts)')
        .choices(LIE_MODES)
        .hideHelp(),
    )
    .addOption(
      new Option('--fault-lie-from-step <n>', 'testing: start lying at this step (default 0)')
        .argParser(nonNegativeInt)
        .hideHelp(),
    );
  return addTlsConnectOptions(
    addSecretOptions(
      addTransportOptions(addMetricsOptions(addComputeOptions(cmd))),
      'to prove to the coordinator',
    ),
  ).action(async (flags: WorkerFlags, cmd: Command) => {
    const log = createLogger(`worker ${flags.id}`);
    const secret = secretOf(flags);
    const target = connectorFor(flags, flags.id, log, secret);
    const memory = memoryBudget(flags.maxMemoryMb);
    const connectShard = shardReacherFor(flags, flags.id, log, secret);
    // Its backend is said once the coordinator has let it in (once, not at every reconnection): a worker that
    // cannot join (wrong port, wrong secret) has only that to say.
    const compute = await computeOf(
      flags,
      log.isLevelEnabled('debug') ? log : log.child({}, { level: 'warn' }),
    );
    let announced = log.isLevelEnabled('debug');
    // Every worker here is counted; one that takes every core (native, no --threads) says so when it shares
    // the machine.
    const others = registerWorker();
    const crowded =
      compute.name === 'native' && flags.threads === undefined
        ? sharedCoresWarning(others, availableParallelism())
        : undefined;
    if (crowded) log.warn({ other_workers: others }, crowded);
    const metricsAt = metricsOf(flags);
    const metrics =
      metricsAt &&
      new WorkerMetrics(
        {
          worker: flags.id,
          backend: compute.name,
          adapter: compute.adapter ? adapterLabel(compute.adapter) : 'none',
        },
        compute.memoryBytes,
      );
    const endpoint =
      metricsAt && metrics ? await serveMetrics(metrics.registry, { ...metricsAt, log }) : undefined;
    const interceptor = await faultsOf(flags, log);
    const stopper = new LinkStopper('worker');
    // --no-reconnect waits for nobody: a coordinator not there at the start is an error at once, unless
    // --connect-timeout says how long to wait for it. (Without it, this is the only connection.)
    const connectTimeout =
      flags.reconnect || cmd.getOptionValueSource('connectTimeout') === 'cli' ? flags.connectTimeout : 0;
    try {
      let steps = 0;
      // Sessions that end soon after they start (cluster full, our old session not yet timed out) back off.
      let shortSessions = 0;
      for (;;) {
        const link = stopper.hold(
          await connectWithRetry(target, connectTimeout, log, () => stopper.stopping),
        );
        if (!link) return log.info({ steps }, `worker stopped after ${steps} steps`);
        const began = Date.now();
        const outcome = await runWorker({
          link,
          workerId: flags.id,
          backend: compute.name,
          adapter: compute.adapter,
          computeFor: compute.computeFor,
          announce: () => {
            if (announced) return;
            announced = true;
            compute.announce(log);
          },
          log,
          secret,
          interceptor,
          observer: metrics,
          dataDirs: flags.dataDir,
          connectShard,
          memory,
        });
        steps += outcome.steps;
        // Refused (authentication failed either way): the session has logged why, once, as an error.
        if (outcome.end === 'refused') {
          process.exitCode = 2;
          return;
        }
        if (outcome.end === 'shutdown' || stopper.stopping || !flags.reconnect) {
          if (outcome.end === 'lost' && !stopper.stopping) process.exitCode = 1;
          return log.info({ ...outcome, steps }, `worker done after ${steps} steps: ${outcome.reason}`);
        }
        shortSessions = Date.now() - began < 5000 ? shortSessions + 1 : 0;
        const wait = shortSessions > 0 ? backoff(shortSessions) : 0;
        log.warn(
          { reason: outcome.reason, steps, retry_in_ms: Math.round(wait) },
          `${outcome.reason}; reconnecting to ${target.where}`,
        );
        await new Promise((r) => setTimeout(r, wait));
        if (stopper.stopping) return log.info({ steps }, `worker stopped after ${steps} steps`);
      }
    } finally {
      await endpoint?.close();
      await compute.close();
    }
  });
}
