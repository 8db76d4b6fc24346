/**
 * `gradfleet train`: the embedded cluster. A coordinator in this process and N supervised local
 * worker processes talking to it over WebSockets on 127.0.0.1 (or through NATS).
 */
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../../common/errors.js';
import { createLogger } from '../../common/logger.js';
import { type RunSummary, launchRun } from '../../coordinator/launch.js';
import { LocalWorkers } from '../local-workers.js';
import { type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { type ComputeFlags, addComputeOptions, workerComputeArgs } from '../compute-options.js';
import { planLocalWorkers, seenAdapters, usesWebGpu } from '../local-gpus.js';
import { nonNegativeInt, port, positiveInt } from '../options.js';
import { type RunFlags, addRunOptions, progressHooks, report, runDirOf, runStartOf } from '../run-options.js';
import { stopOnSigint } from '../signals.js';
import {
  type TransportFlags,
  addTransportOptions,
  listenerFor,
  workerTransportArgs,
} from '../transport-options.js';
import { type ClusterFlags, addClusterOptions, clusterPolicyOf, lazyReferee } from '../cluster-options.js';
import { workerSecretArgs } from '../secret-options.js';

interface TrainFlags extends RunFlags, MetricsFlags, TransportFlags, ClusterFlags, ComputeFlags {
  /** Undefined: one per GPU, or per core (cli/local-gpus.ts). */
  workers?: number;
  workerMetricsPort?: number;
  workerRestarts: number;
  /** NATS users (and passwords) of the local workers and shard reducers; undefined: the coordinator's. */
  workerNatsUser?: string;
  workerNatsPass?: string;
  shardNatsUser?: string;
  shardNatsPass?: string;
}

/**
 * How local processes of a role log in to NATS: as the coordinator does, or (--worker-nats-user,
 * --shard-nats-user) as their own user, where the server gives each role its own permissions
 * (deploy/nats/local.conf, cluster.conf).
 */
function natsLoginOf(
  flags: TrainFlags,
  role: 'worker' | 'shard',
): Pick<TransportFlags, 'natsUser' | 'natsPass' | 'natsToken'> | undefined {
  const [user, pass] =
    role === 'worker'
      ? [flags.workerNatsUser, flags.workerNatsPass]
      : [flags.shardNatsUser, flags.shardNatsPass];
  if (user === undefined) return undefined;
  if (flags.transport !== 'nats') throw new UsageError(`--${role}-nats-user is for --transport nats`);
  if (pass === undefined)
    throw new UsageError(
      `--${role}-nats-user ${user} needs its password: GRADFLEET_${role.toUpperCase()}_NATS_PASS (or --${role}-nats-pass)`,
    );
  return { natsUser: user, natsPass: pass, natsToken: undefined };
}

/**
 * Local workers may load the run's own data files (the folders of --train and --test) rather than
 * have them streamed; a worker allows no other files (worker/data-policy.ts).
 */
function localDataArgs(flags: RunFlags): string[] {
  const dirs = new Set(
    [flags.train, flags.test]
      .filter((spec) => !spec.startsWith('mnist:'))
      .map((spec) => dirname(resolve(spec))),
  );
  return [...dirs].flatMap((dir) => ['--data-dir', dir]);
}

/** How long the first step waits for every local worker before starting with those that are ready. */
const START_GRACE_MS = 120_000;

export function trainCommand(): Command {
  const cmd = addRunOptions(
    new Command('train').description(
      'train with a coordinator and N local workers (over WebSockets, or NATS), then evaluate on the test set',
    ),
    0,
  )
    .option(
      '--workers <n>',
      'local worker processes (default: one per GPU where --backend auto or webgpu finds hardware adapters, else one per core)',
      positiveInt,
    )
    .option(
      '--worker-restarts <n>',
      'restarts per local worker after an unexpected exit (then the run goes on without it)',
      nonNegativeInt,
      3,
    )
    .option(
      '--worker-metrics-port <n>',
      'local worker i (from 0) serves its metrics on port N+i (0: each any free port)',
      port,
    )
    .option(
      '--worker-nats-user <name>',
      "with --transport nats: the NATS user the local workers log in as (default: the coordinator's --nats-user)",
    )
    .addOption(
      new Option('--worker-nats-pass <password>', "--worker-nats-user's password").env(
        'GRADFLEET_WORKER_NATS_PASS',
      ),
    )
    .option(
      '--shard-nats-user <name>',
      "with --transport nats: the NATS user the local shard reducers log in as (default: the coordinator's --nats-user)",
    )
    .addOption(
      new Option('--shard-nats-pass <password>', "--shard-nats-user's password").env(
        'GRADFLEET_SHARD_NATS_PASS',
      ),
    );
  return addClusterOptions(
    addTransportOptions(addMetricsOptions(addComputeOptions(cmd, "workers' "))),
  ).action(async (flags: TrainFlags, cmd: Command) => {
    const log = createLogger('coordinator');
    // Flags first, then the run directory (made, and proven writable): a mistake in either fails at once.
    const start = runStartOf(cmd, flags);
    const [workerLogin, shardLogin] = [natsLoginOf(flags, 'worker'), natsLoginOf(flags, 'shard')];
    const out = await runDirOf(flags);
    // Adapters are listed only where a worker could compute on one, and only when --gpu does not already say
    // which.
    const adapters = flags.gpu === undefined && usesWebGpu(flags.backend) ? await seenAdapters() : undefined;
    const plan = planLocalWorkers({
      backend: flags.backend,
      cores: availableParallelism(),
      adapters,
      workers: flags.workers,
      gpu: flags.gpu,
    });
    const count = plan.workers;
    const run = await launchRun({
      // Its own local workers always fit, whatever the caps say (a 200-core machine starts 200).
      policy: clusterPolicyOf({
        ...flags,
        maxWorkers: Math.max(flags.maxWorkers, count),
        maxConnections: Math.max(flags.maxConnections, count + 16),
        maxJoinsPerS: Math.max(flags.maxJoinsPerS, count),
        maxJoinsPerSourcePerS: Math.max(flags.maxJoinsPerSourcePerS, count),
      }),
      start,
      outDir: out.path,
      curvesEvery: flags.curvesEvery,
      evalEvery: flags.evalEvery,
      listen: listenerFor(flags, flags.host, flags.port, log),
      transport: flags.transport,
      maxFrameBytes: flags.maxFrameMb * 1024 * 1024,
      // The run starts with all its workers, then goes on with those it has while one is being replaced.
      minWorkers: flags.minWorkers,
      startWorkers: { count, graceMs: START_GRACE_MS },
      log,
      hooks: progressHooks(log),
      metrics: metricsOf(flags),
      shards: flags.shards,
      referee: lazyReferee(log),
    });
    // Said once it listens: a run that cannot start has only its error to say.
    log.info({ workers: plan.workers, gpus: plan.gpus }, `local workers: ${plan.reason}`);
    if (plan.warning) log.warn(plan.warning);
    const base = flags.workerMetricsPort;
    const metricsArgs = (i: number) =>
      base === undefined
        ? []
        : ['--metrics-port', String(base === 0 ? 0 : base + i), '--metrics-host', flags.metricsHost];
    const join = workerTransportArgs({ ...flags, ...workerLogin }, run.url);
    const shardJoin = workerTransportArgs({ ...flags, ...shardLogin }, run.url);
    const secret = workerSecretArgs(flags);
    // Each worker's oneDNN would take every core: N of them on one machine share the cores instead.
    // The plan says which GPU each worker takes (a restarted worker keeps its slot's).
    const compute = workerComputeArgs({
      ...flags,
      gpu: undefined,
      threads: flags.threads ?? Math.max(1, Math.floor(availableParallelism() / count)),
    });
    const gpuArgs = (i: number) => (plan.gpus[i] === undefined ? [] : ['--gpu', String(plan.gpus[i])]);
    // Shard reducers are supervised like workers: one that dies is replaced, and the run rolls back to its
    // newest checkpoint.
    const shards =
      flags.shards === undefined
        ? undefined
        : new LocalWorkers({
            count: flags.shards,
            role: 'shard',
            log,
            restarts: flags.workerRestarts,
            argsFor: () => [...shardJoin.args, ...secret.args],
            env: { ...shardJoin.env, ...secret.env },
          });
    let workers: LocalWorkers | undefined;
    // Ctrl-C or SIGTERM: the coordinator finishes the step in flight, checkpoints and stops, and the run
    // below ends as any other; a second one, or 10 s without stopping, exits at once, local processes killed
    // (cli/signals.ts).
    stopOnSigint(run.coordinator, log, {
      // A restart still pending would start a worker into a run that is stopping: one that joins too late to be
      // told to shut down, held until the forced exit.
      onStopRequested: () => {
        workers?.expectExits();
        shards?.expectExits();
      },
      beforeForcedExit: () => {
        workers?.kill();
        shards?.kill();
      },
      resume: { command: 'train', dir: out.path },
    });
    // The run to its end: outputs written, peers told to shut down, listeners closed.
    const finishing = run.finish({
      extras: () => ({
        local_workers: workers?.report() ?? { restarts: 0, restarts_by_worker: {}, gave_up: [] },
      }),
      beforeShutdown: () => {
        workers?.expectExits();
        shards?.expectExits();
      },
    });
    // Resolves, whatever the outcome, once the run has ended (the outcome is read from `finishing`).
    let ended = false;
    const markEnded = () => {
      ended = true;
    };
    const runEnded = finishing.then(markEnded, markEnded);
    let summary: RunSummary;
    try {
      // Workers join once every slice is served: started earlier, each would be turned away (and retry)
      // while the shards load.
      if (shards) {
        const first = await firstOf({
          serving: run.coordinator.serving(),
          ended: runEnded,
          gone: shards.allGone,
        });
        if (first === 'gone')
          throw new Error(
            `all ${flags.shards} local shard reducers are gone before they served the run (see their errors above)`,
          );
      }
      // None for a run that ended while the shards loaded (Ctrl-C, or a failure).
      if (!ended)
        workers = new LocalWorkers({
          count,
          log,
          restarts: flags.workerRestarts,
          argsFor: (i) => [
            ...compute,
            ...gpuArgs(i),
            ...join.args,
            ...secret.args,
            ...metricsArgs(i),
            ...localDataArgs(flags),
          ],
          env: { ...join.env, ...secret.env },
          onRestart: (slot) => run.metrics?.localWorkerRestarted(slot),
        });
      // The run ends, unless every local worker is gone first (each crashed past its restarts).
      if (workers) {
        const first = await firstOf({ ended: runEnded, gone: workers.allGone });
        if (first === 'gone' && !ended)
          throw new Error(
            `all ${count} local workers are gone before the run finished (see their errors above)`,
          );
      }
      summary = await finishing;
    } finally {
      // However the run ended: each local process gets its grace to exit, then a signal.
      await Promise.all([workers?.stop(), shards?.stop()]);
    }
    report(summary, flags.json, log, 'train');
  });
}

/** The name of whichever of `waits` resolves first (none of them may reject). */
function firstOf<Name extends string>(waits: Record<Name, Promise<unknown>>): Promise<Name> {
  return Promise.race(
    (Object.entries(waits) as Array<[Name, Promise<unknown>]>).map(([name, wait]) => wait.then(() => name)),
  );
}
