/** `gradfleet worker`: computes gradients for a coordinator. */
import { hostname } from 'node:os';
import { Command, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { isAuthFailure } from '../../protocol/nats-transport.js';
import type { Link } from '../../protocol/transport.js';
import { BACKEND_CHOICES, type BackendChoice, selectBackend } from '../../training/backends/select.js';
import * as tf from '@tensorflow/tfjs-core';
import { serveMetrics } from '../../common/metrics-server.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import { type FaultPlan, runWorker } from '../../worker/worker.js';
import { type MetricsFlags, addMetricsOptions, metricsOf } from '../metrics-options.js';
import { nonNegativeInt, oneOf, positiveInt } from '../options.js';
import { type TransportFlags, addTransportOptions, connectorFor } from '../transport-options.js';

interface WorkerFlags extends MetricsFlags, TransportFlags { connect?: string; backend: BackendChoice; id: string; connectTimeout: number; faultNanAtStep?: number; faultExitAtStep?: number }

async function connectWithRetry(target: { where: string; connect: () => Promise<Link> }, timeoutS: number, log: ReturnType<typeof createLogger>) {
  const deadline = Date.now() + timeoutS * 1000;
  for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
    try {
      return await target.connect();
    } catch (err) {
      // Wrong credentials do not get better by waiting.
      if (Date.now() + delay > deadline || isAuthFailure(err)) throw err;
      log.info({ coordinator: target.where, retry_in_ms: delay }, `${(err as Error).message}; retrying`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export function workerCommand(): Command {
  const cmd = new Command('worker')
    .description('connect to a coordinator and compute the micro-batches it assigns')
    .option('--connect <url>', 'coordinator address, e.g. ws://10.0.0.5:7070 (with --transport ws)')
    .option('--backend <name>', `compute backend (${BACKEND_CHOICES.join(', ')})`, oneOf(BACKEND_CHOICES), 'auto')
    .option('--id <name>', 'worker name shown in logs and metrics (unique per coordinator)', `${hostname()}-${process.pid}`)
    .option('--connect-timeout <s>', 'keep retrying the connection this long', positiveInt, 30)
    .addOption(new Option('--fault-nan-at-step <n>', 'testing: send NaN in this step\'s first contribution').argParser(nonNegativeInt).hideHelp())
    .addOption(new Option('--fault-exit-at-step <n>', 'testing: exit abruptly when assigned this step').argParser(nonNegativeInt).hideHelp());
  return addTransportOptions(addMetricsOptions(cmd))
    .action(async (flags: WorkerFlags) => {
      const log = createLogger(`worker ${flags.id}`);
      const backend = await selectBackend(flags.backend, log);
      const metricsAt = metricsOf(flags);
      const metrics = metricsAt && new WorkerMetrics({ worker: flags.id, backend: backend.name }, () => tf.memory().numBytes);
      const endpoint = metricsAt && metrics ? await serveMetrics(metrics.registry, { ...metricsAt, log }) : undefined;
      try {
        const link = await connectWithRetry(connectorFor(flags, flags.id, log), flags.connectTimeout, log);
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
