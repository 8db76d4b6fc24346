/** `gradfleet worker`: computes gradients for a coordinator. */
import { hostname } from 'node:os';
import { Command, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { connectWs } from '../../protocol/ws-transport.js';
import { BACKEND_CHOICES, type BackendChoice, selectBackend } from '../../training/backends/select.js';
import * as tf from '@tensorflow/tfjs-core';
import { serveMetrics } from '../../common/metrics-server.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import { type FaultPlan, runWorker } from '../../worker/worker.js';
import { type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { nonNegativeInt, oneOf, positiveInt } from '../options.js';

interface WorkerFlags extends MetricsFlags { connect: string; backend: BackendChoice; id: string; connectTimeout: number; faultNanAtStep?: number; faultExitAtStep?: number }

async function connectWithRetry(url: string, timeoutS: number, log: ReturnType<typeof createLogger>) {
  const deadline = Date.now() + timeoutS * 1000;
  for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
    try {
      return await connectWs(url);
    } catch (err) {
      if (Date.now() + delay > deadline) throw err;
      log.info({ url, retry_in_ms: delay }, `${(err as Error).message}; retrying`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export function workerCommand(): Command {
  const cmd = new Command('worker')
    .description('connect to a coordinator and compute the micro-batches it assigns')
    .requiredOption('--connect <url>', 'coordinator address, e.g. ws://10.0.0.5:7070')
    .option('--backend <name>', `compute backend (${BACKEND_CHOICES.join(', ')})`, oneOf(BACKEND_CHOICES), 'auto')
    .option('--id <name>', 'worker name shown in logs and metrics (unique per coordinator)', `${hostname()}-${process.pid}`)
    .option('--connect-timeout <s>', 'keep retrying the connection this long', positiveInt, 30)
    .addOption(new Option('--fault-nan-at-step <n>', 'testing: send NaN in this step\'s first contribution').argParser(nonNegativeInt).hideHelp())
    .addOption(new Option('--fault-exit-at-step <n>', 'testing: exit abruptly when assigned this step').argParser(nonNegativeInt).hideHelp());
  return addMetricsOptions(cmd)
    .action(async (flags: WorkerFlags) => {
      const log = createLogger(`worker ${flags.id}`);
      const backend = await selectBackend(flags.backend, log);
      const metricsAt = metricsOf(flags);
      const metrics = metricsAt && new WorkerMetrics({ worker: flags.id, backend: backend.name }, () => tf.memory().numBytes);
      const endpoint = metricsAt && metrics ? await serveMetrics(metrics.registry, { ...metricsAt, log }) : undefined;
      try {
        const link = await connectWithRetry(flags.connect, flags.connectTimeout, log);
        const faults: FaultPlan = { nanAtStep: flags.faultNanAtStep, exitAtStep: flags.faultExitAtStep };
        process.once('SIGINT', () => link.close('worker interrupted'));
        process.once('SIGTERM', () => link.close('worker terminated'));
        const outcome = await runWorker({ link, workerId: flags.id, backend: backend.name, log, faults, observer: metrics });
        log.info({ ...outcome }, `worker done after ${outcome.steps} steps: ${outcome.reason}`);
      } finally {
        await endpoint?.close();
      }
    });
}
