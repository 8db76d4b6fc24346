/** `gradfleet coordinator`: the coordinator alone; workers on any machine connect to it. */
import { Command } from 'commander';
import { createLogger } from '../../common/logger.js';
import { launchRun } from '../../coordinator/launch.js';
import { listenWs } from '../../protocol/ws-transport.js';
import { DEFAULT_COORDINATOR_METRICS_PORT, type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { positiveInt } from '../options.js';
import { type RunFlags, addRunOptions, outDirOf, progressHooks, report, resumeOf, runConfigOf } from '../run-options.js';
import { stopOnSigint } from '../signals.js';

export const DEFAULT_COORDINATOR_PORT = 7070;

export function coordinatorCommand(): Command {
  const cmd = addRunOptions(new Command('coordinator').description('run the coordinator; start workers with `gradfleet worker --connect ws://HOST:PORT`'), DEFAULT_COORDINATOR_PORT)
    .option('--min-workers <n>', 'workers to wait for before the first step', positiveInt, 1);
  return addMetricsOptions(cmd, DEFAULT_COORDINATOR_METRICS_PORT)
    .action(async (flags: RunFlags & MetricsFlags & { minWorkers: number }, cmd: Command) => {
      const log = createLogger('coordinator');
      const run = await launchRun({
        config: runConfigOf(flags), resume: resumeOf(cmd, flags), outDir: outDirOf(flags),
        listen: (maxFrameBytes) => listenWs(flags.host, flags.port, { maxFrameBytes }), maxFrameBytes: flags.maxFrameMb * 1024 * 1024, minWorkers: flags.minWorkers, log, hooks: progressHooks(log),
        metrics: metricsOf(flags),
      });
      stopOnSigint(run.coordinator, log);
      report(await run.finish(), flags.json, log);
    });
}
