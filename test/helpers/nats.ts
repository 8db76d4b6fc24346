/**
 * Real nats-server processes for tests: single servers and a 3-node cluster from deploy/nats/cluster.conf.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { requireBinary } from './binaries.js';
import { freePort, until, untilServing } from './wait.js';

export interface NatsServer {
  name: string;
  port: number;
  url: string;
  monitorPort: number;
  child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<NatsServer>();
afterAll(async () => {
  await Promise.all([...running].map((s) => s.stop('SIGKILL')));
});

/**
 * Starts nats-server with `args` (plus `config`, written to a file, when given) and waits until it accepts
 * clients.
 */
export async function startNats(
  name: string,
  args: string[],
  env: Record<string, string> = {},
  config?: { dir: string; text: string },
): Promise<NatsServer> {
  const bin = requireBinary('nats-server');
  if (config) {
    const file = join(config.dir, `${name}.conf`);
    writeFileSync(file, config.text);
    args = ['-c', file, ...args];
  }
  const port = await freePort();
  const monitorPort = await freePort();
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
  const server: NatsServer = {
    name,
    port,
    monitorPort,
    child,
    url: `nats://127.0.0.1:${port}`,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        running.delete(server);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
  running.add(server);
  await untilServing(
    child,
    `nats-server ${name}`,
    () => log,
    async () => (await fetch(`http://127.0.0.1:${monitorPort}/healthz`)).ok,
    15_000,
  );
  return server;
}

/** The passwords the shipped configs read from the environment (deploy/nats/cluster.conf's authorization). */
export const NATS_ROLE_PASSWORDS = {
  GRADFLEET_NATS_COORDINATOR_PASS: 'coordinator-test-pass-81f2',
  GRADFLEET_NATS_WORKER_PASS: 'worker-test-pass-0c7d',
  GRADFLEET_NATS_SHARD_PASS: 'shard-test-pass-5e19',
};
const ROLE_PASSWORD = {
  coordinator: NATS_ROLE_PASSWORDS.GRADFLEET_NATS_COORDINATOR_PASS,
  worker: NATS_ROLE_PASSWORDS.GRADFLEET_NATS_WORKER_PASS,
  shard: NATS_ROLE_PASSWORDS.GRADFLEET_NATS_SHARD_PASS,
};

/**
 * How a gradfleet process logs in to the shipped config as `role`: its flag and the environment holding its
 * password.
 */
export function natsRole(role: keyof typeof ROLE_PASSWORD): { args: string[]; env: Record<string, string> } {
  return { args: ['--nats-user', role], env: { GRADFLEET_NATS_PASS: ROLE_PASSWORD[role] } };
}

/**
 * The shipped cluster config, with its ports moved to free loopback ports: three real nodes routed together.
 */
export async function startCluster(dir: string): Promise<NatsServer[]> {
  const shipped = readFileSync(
    fileURLToPath(new URL('../../deploy/nats/cluster.conf', import.meta.url)),
    'utf8',
  );
  const routePorts = await Promise.all([1, 2, 3].map(() => freePort()));
  const nodes: NatsServer[] = [];
  for (const [i, routePort] of routePorts.entries()) {
    let conf = shipped
      .replace(/listen: 0\.0\.0\.0:4222\n/, '')
      .replace(/http: 0\.0\.0\.0:8222\n/, '')
      .replace('listen: 0.0.0.0:6222', `listen: 127.0.0.1:${routePort}`);
    routePorts.forEach((p, j) => (conf = conf.replace(`nats-${j + 1}:6222`, `127.0.0.1:${p}`)));
    nodes.push(
      await startNats(
        `nats-${i + 1}`,
        [],
        { NATS_NAME: `nats-${i + 1}`, ...NATS_ROLE_PASSWORDS },
        { dir, text: conf },
      ),
    );
  }
  await until(
    'the cluster routes',
    async () => {
      const counts = await Promise.all(
        nodes.map(
          async (n) =>
            (
              (await (await fetch(`http://127.0.0.1:${n.monitorPort}/routez`)).json()) as {
                num_routes: number;
              }
            ).num_routes,
        ),
      );
      return counts.every((c) => c >= 2);
    },
    20_000,
  );
  return nodes;
}
