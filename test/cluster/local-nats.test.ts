/**
 * A local NATS in one command: README's line starts nats-server with deploy/nats/local.conf (one node on
 * 127.0.0.1, cluster.conf's users and permissions) and a `gradfleet train` through it. Here that line is
 * read from the README and run as it is written (the server on a free port, and a short run on small
 * data added), with the real nats-server.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { requireBinary } from '../helpers/binaries.js';
import { expectOk, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

const repo = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const localConf = repo('deploy/nats/local.conf');
const dir = tempDir('gradfleet-local-nats-');

/** README's command: the environment it sets and the gradfleet arguments, as written. */
function readmeCommand(): { env: Record<string, string>; args: string[] } {
  const line = readFileSync(repo('README.md'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nats-server -c deploy/nats/local.conf & '));
  expect(line, 'README has the local NATS command').toBeDefined();
  const words = line!
    .replace(/\s+#.*$/, '')
    .split(/\s+/)
    .slice(4);
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0])) {
    const [name, value] = words.shift()!.split('=');
    env[name] = value;
  }
  expect(words.slice(0, 3)).toEqual(['npx', 'gradfleet', 'train']);
  return { env, args: words.slice(3) };
}

/** Each user's permissions block, by user, with spacing normalised. */
function permissions(conf: string): Record<string, string> {
  const users = [...conf.matchAll(/\{ user: (\w+), password: \S+, permissions: \{([^}]*)\} \}/g)];
  return Object.fromEntries(users.map((m) => [m[1], m[2].replace(/\s+/g, ' ').trim()]));
}

describe('deploy/nats/local.conf', () => {
  it('is a valid config on 127.0.0.1 with the users and permissions of cluster.conf', () => {
    execFileSync(requireBinary('nats-server'), ['-t', '-c', localConf], { stdio: 'pipe' });
    const local = readFileSync(localConf, 'utf8');
    expect(local).toMatch(/^listen: 127\.0\.0\.1:4222$/m);
    expect(local).not.toMatch(/0\.0\.0\.0|cluster \{/);
    const roles = permissions(local);
    expect(Object.keys(roles)).toEqual(['coordinator', 'worker', 'shard']);
    expect(roles).toEqual(permissions(readFileSync(repo('deploy/nats/cluster.conf'), 'utf8')));
  });

  it("README's command trains through it, the workers logged in as the worker user", async () => {
    const { env, args } = readmeCommand();
    expect(args).toEqual(expect.arrayContaining(['--transport', 'nats', '--nats-user', 'coordinator']));
    const server = await startNats('local', ['-c', localConf]);
    const at = args.indexOf('--nats-url');
    const command = at < 0 ? [...args, '--nats-url', server.url] : args.toSpliced(at + 1, 1, server.url);
    const data = smallMnist(dir, 256, 64);
    const train = start(
      [
        'train',
        ...command,
        '--model',
        'mnist-small',
        '--train',
        data.train,
        '--test',
        data.test,
        '--backend',
        'wasm',
        '--max-steps',
        '2',
        '--out',
        `${dir}/run`,
        '--json',
      ],
      env,
    );
    // While it runs, the server sees the coordinator and the workers each as their own user.
    const users = new Set<string>();
    await until(
      'the coordinator and a worker on the server',
      async () => {
        const connz = (await (
          await fetch(`http://127.0.0.1:${server.monitorPort}/connz?auth=true`)
        ).json()) as {
          connections?: { authorized_user?: string }[];
        };
        for (const c of connz.connections ?? []) if (c.authorized_user) users.add(c.authorized_user);
        return (users.has('coordinator') && users.has('worker')) || train.child.exitCode !== null;
      },
      60_000,
    );
    const summary = expectOk(await train.done);
    expect([...users].sort()).toEqual(['coordinator', 'worker']);
    expect(summary).toMatchObject({ transport: 'nats', steps: 2, stopped: 'finished' });
    expect(summary.workers).toBeGreaterThanOrEqual(1);
    await server.stop();
  }, 120_000);

  it('a worker user without its password is refused at once, naming where the password goes', async () => {
    const r = await run([
      'train',
      '--transport',
      'nats',
      '--worker-nats-user',
      'worker',
      '--out',
      `${dir}/never`,
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      'gradfleet: error: --worker-nats-user worker needs its password: GRADFLEET_WORKER_NATS_PASS (or --worker-nats-pass)\n',
    );
  });
});
