/** A real Prometheus server for a test: started on a free loopback port, queried over its HTTP API. */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { requireBinary } from './binaries.js';
import { freePort, untilServing } from './wait.js';

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PrometheusServer {
  url: string;
  child: ChildProcess;
  /** An instant query; throws with Prometheus's error message when the expression is invalid. */
  query(expr: string): Promise<Series[]>;
  api<T = any>(path: string): Promise<T>;
  stop(): Promise<void>;
}

export async function startPrometheus(dir: string, config: object): Promise<PrometheusServer> {
  const bin = requireBinary('prometheus');
  const port = await freePort();
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, stringify(config));
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d) => (log = (log + d).slice(-5000)));
  const url = `http://127.0.0.1:${port}`;
  const api = async (path: string) => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: any; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };
  await untilServing(
    child,
    'prometheus',
    () => log,
    async () => (await fetch(`${url}/-/ready`)).ok,
    20_000,
  );
  return {
    url,
    child,
    api,
    query: async (expr) => (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result as Series[],
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A scrape's samples by series, spelled as the exposition format writes them: `name{label="v"}` → value. */
export function metricValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}
