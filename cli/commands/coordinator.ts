/** `gradfleet coordinator`: the coordinator alone; workers on any machine connect to it. */
import { Command } from 'commander';
import { createLogger } from '../../common/logger.js';
import { launchRun } from '../../coordinator/launch.js';
import {
  DEFAULT_COORDINATOR_METRICS_PORT,
  type MetricsFlags,
  addMetricsOptions,
  metricsOf,
} from '../metrics-options.js';
import { type RunFlags, addRunOptions, progressHooks, report, runDirOf, runStartOf } from '../run-options.js';
import { stopOnSigint } from '../signals.js';
import {
  type TlsListenFlags,
  type TransportFlags,
  addTlsListenOptions,
  addTransportOptions,
  listenerFor,
} from '../transport-options.js';
import { type ClusterFlags, addClusterOptions, clusterPolicyOf, lazyReferee } from '../cluster-options.js';
import { checkExposure } from '../exposure.js';
import { UsageError } from '../../common/errors.js';

export const DEFAULT_COORDINATOR_PORT = 7070;

export function coordinatorCommand(): Command {
  const cmd = addRunOptions(
    new Command('coordinator').description(
      'run the coordinator; start workers with `gradfleet worker --connect ws://HOST:PORT` (or both with --transport nats)',
    ),
    DEFAULT_COORDINATOR_PORT,
  );
  return addTlsListenOptions(
    addClusterOptions(addTransportOptions(addMetricsOptions(cmd, DEFAULT_COORDINATOR_METRICS_PORT))),
  )
    .option('--insecure', 'listen beyond loopback without a secret (anyone who reaches it may join)')
    .action(
      async (
        flags: RunFlags &
          MetricsFlags &
          TransportFlags &
          TlsListenFlags &
          ClusterFlags & { insecure?: boolean },
        cmd: Command,
      ) => {
        const log = createLogger('coordinator');
        if (flags.minWorkers > flags.maxWorkers)
          throw new UsageError(
            `--min-workers ${flags.minWorkers} is above --max-workers ${flags.maxWorkers}: the run could never start`,
          );
        const policy = clusterPolicyOf(flags);
        checkExposure(
          {
            transport: flags.transport,
            host: flags.host,
            natsServers: flags.natsUrl.split(','),
            secret: policy.secret !== undefined,
            insecure: flags.insecure === true,
            tls:
              flags.transport === 'ws'
                ? flags.tlsCert !== undefined
                : flags.natsUrl.split(',').every((u) => u.trim().startsWith('tls://')) ||
                  flags.natsRequireTls === true,
          },
          log,
        );
        const start = runStartOf(cmd, flags);
        // Made and proven writable before anything listens (cli/out-dir.ts).
        const out = await runDirOf(flags);
        const run = await launchRun({
          policy,
          start,
          outDir: out.path,
          curvesEvery: flags.curvesEvery,
          evalEvery: flags.evalEvery,
          listen: listenerFor(flags, flags.host, flags.port, log),
          transport: flags.transport,
          maxFrameBytes: flags.maxFrameMb * 1024 * 1024,
          minWorkers: flags.minWorkers,
          log,
          hooks: progressHooks(log),
          metrics: metricsOf(flags),
          shards: flags.shards,
          referee: lazyReferee(log),
        });
        stopOnSigint(run.coordinator, log, { resume: { command: 'coordinator', dir: out.path } });
        report(await run.finish(), flags.json, log, 'coordinator');
      },
    );
}
