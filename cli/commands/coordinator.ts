/** `gradfleet coordinator`: the coordinator alone; workers on any machine connect to it. */
import { Command } from 'commander';
import { createLogger } from '../../common/logger.js';
import { launchRun } from '../../coordinator/launch.js';
import { DEFAULT_COORDINATOR_METRICS_PORT, type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { type RunFlags, addRunOptions, outDirOf, progressHooks, report, resumeOf, runConfigOf } from '../run-options.js';
import { stopOnSigint } from '../signals.js';
import { type TlsListenFlags, type TransportFlags, addTlsListenOptions, addTransportOptions, listenerFor } from '../transport-options.js';
import { type ClusterFlags, addClusterOptions, clusterPolicyOf } from '../cluster-options.js';

export const DEFAULT_COORDINATOR_PORT = 7070;

export function coordinatorCommand(): Command {
  const cmd = addRunOptions(new Command('coordinator').description('run the coordinator; start workers with `gradfleet worker --connect ws://HOST:PORT` (or both with --transport nats)'), DEFAULT_COORDINATOR_PORT);
  return addTlsListenOptions(addClusterOptions(addTransportOptions(addMetricsOptions(cmd, DEFAULT_COORDINATOR_METRICS_PORT))))
    .action(async (flags: RunFlags & MetricsFlags & TransportFlags & TlsListenFlags & ClusterFlags, cmd: Command) => {
      const log = createLogger('coordinator');
      if (flags.minWorkers > flags.maxWorkers) throw new Error(`--min-workers ${flags.minWorkers} is above --max-workers ${flags.maxWorkers}: the run could never start`);
      const run = await launchRun({
        policy: clusterPolicyOf(flags),
        config: runConfigOf(flags), resume: resumeOf(cmd, flags), outDir: outDirOf(flags), curvesEvery: flags.curvesEvery,
        listen: listenerFor(flags, flags.host, flags.port, log), transport: flags.transport, maxFrameBytes: flags.maxFrameMb * 1024 * 1024, minWorkers: flags.minWorkers, log, hooks: progressHooks(log),
        metrics: metricsOf(flags),
      });
      stopOnSigint(run.coordinator, log);
      report(await run.finish(), flags.json, log);
    });
}
