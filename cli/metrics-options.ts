/** The Prometheus endpoint's flags, shared by `train`, `coordinator` and `worker`. */
import type { Command } from 'commander';
import { port } from './options.js';

/** Defaults the deploy/ files (Prometheus, compose, Kubernetes) scrape. */
export const DEFAULT_COORDINATOR_METRICS_PORT = 9470;
export const DEFAULT_WORKER_METRICS_PORT = 9471;

export interface MetricsFlags {
  metricsPort?: number;
  metricsHost: string;
  /** false with --no-metrics (offered where metrics are on by default). */
  metrics?: boolean;
}

export interface MetricsAddress {
  host: string;
  port: number;
}

export function addMetricsOptions(cmd: Command, defaultPort?: number): Command {
  cmd
    .option(
      '--metrics-port <n>',
      `serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port)${defaultPort === undefined ? '; off unless given' : ''}`,
      port,
      defaultPort,
    )
    .option('--metrics-host <addr>', 'address the metrics endpoint listens on', '127.0.0.1');
  if (defaultPort !== undefined) cmd.option('--no-metrics', 'do not serve metrics');
  return cmd;
}

export function metricsOf(flags: MetricsFlags): MetricsAddress | undefined {
  if (flags.metrics === false || flags.metricsPort === undefined) return undefined;
  return { host: flags.metricsHost, port: flags.metricsPort };
}
