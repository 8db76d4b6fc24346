/**
 * A coordinator reachable beyond loopback demands a secret (or --insecure), and NATS can be told to demand
 * TLS.
 */
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../../cli/exposure.js';
import { run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';

const dir = tempDir();
const data = smallMnist(dir, 100, 50);
const config = [
  'coordinator',
  '--model',
  'mnist-small',
  '--batch-size',
  '32',
  '--micro-batch',
  '16',
  '--max-steps',
  '1',
  '--train',
  data.train,
  '--test',
  data.test,
  '--no-metrics',
  '--port',
  '0',
  '--out',
  `${dir}/out`,
];

describe('exposure', () => {
  it('knows loopback from the rest', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]'])
      expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.5', '::', 'nats-1', '128.0.0.1'])
      expect(isLoopback(h), h).toBe(false);
  });

  it('beyond loopback without a secret the coordinator refuses; --insecure starts it with a warning; a secret without TLS warns', async () => {
    const refused = await run([...config, '--host', '0.0.0.0']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(
      /--host 0\.0\.0\.0 is reachable beyond this machine and no secret is set.*--insecure/,
    );

    for (const [extra, env, warning] of [
      [['--insecure'], {}, /--insecure: --host 0\.0\.0\.0 accepts any worker/],
      [[], { GRADFLEET_SECRET: 'exposure-test-secret-31c9a' }, /without TLS: frames are sealed/],
    ] as const) {
      const c = start([...config, '--host', '0.0.0.0', ...extra], env);
      await c.waitFor(/coordinator listening on/);
      expect(c.log()).toMatch(warning);
      c.child.kill();
      await c.done;
    }
  }, 60_000);

  it('--nats-require-tls refuses a server without TLS at once (before any CONNECT carries the password), and never prints it', async () => {
    const server = await startNats('plain', []);
    const r = await run(
      [
        'worker',
        '--transport',
        'nats',
        '--nats-url',
        server.url,
        '--nats-require-tls',
        '--nats-user',
        'u',
        '--backend',
        'wasm',
        '--id',
        'w',
        '--connect-timeout',
        '30',
      ],
      { GRADFLEET_NATS_PASS: 'never-in-the-clear-77' },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/does not offer TLS, and TLS is required/);
    expect(r.stderr).not.toMatch(/retrying/);
    expect(r.stderr).not.toContain('never-in-the-clear-77');
    await server.stop();
  }, 60_000);
});
