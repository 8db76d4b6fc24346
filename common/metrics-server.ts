/**
 * Serves a prom-client registry over HTTP for Prometheus. It shares the process's event loop with
 * training, whose waits are all asynchronous, so a scrape is answered while a step is in flight.
 */
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface MetricsEndpoint {
  /** e.g. http://127.0.0.1:9470/metrics */
  readonly url: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  log: Logger;
}

export async function serveMetrics(
  registry: Registry,
  { host, port, log }: MetricsServerOptions,
): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('gradfleet serves /metrics and /healthz\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: Error) => {
        log.error({ err }, 'collecting metrics failed');
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`collecting metrics failed: ${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `metrics port ${host}:${port} is already in use (pick another with --metrics-port)`
            : `cannot serve metrics on ${host}:${port}: ${err.message}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${bound}/metrics`;
  log.info({ metrics: url }, `metrics at ${url}`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
