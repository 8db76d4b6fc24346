/**
 * The smaller connection findings, end to end with the real coordinator and worker processes:
 * an honest worker behind the address of a join flood (NAT) joins with its join pass and trains, even with
 * --no-reconnect; and sockets an attacker holds open before the upgrade neither exceed --max-connections
 * nor hold up the coordinator's exit.
 */
import { type Socket, createConnection } from 'node:net';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { expectOk, listeningUrl, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 200, 100);
const secretFile = `${dir}/secret`;
writeFileSync(secretFile, 'the-join-flood-test-secret-0123456789\n');
const NO_ENV_SECRET = { GRADFLEET_SECRET: '' };

const coordinator = (extra: string[]) =>
  start(
    [
      'coordinator',
      '--model',
      'mnist-small',
      '--batch-size',
      '32',
      '--micro-batch',
      '16',
      '--max-steps',
      '3',
      '--train',
      data.train,
      '--test',
      data.test,
      '--port',
      '0',
      '--json',
      '--out',
      `${dir}/run-${extra.join('').length}`,
      '--secret-file',
      secretFile,
      ...extra,
    ],
    NO_ENV_SECRET,
  );

/** Opens a ws connection to `url` every few milliseconds, from 127.0.0.1, until stopped. */
function flood(url: string) {
  const sockets: WebSocket[] = [];
  let opened = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < 4; i++) {
      const s = new WebSocket(url, { perMessageDeflate: false });
      s.on('error', () => {});
      s.on('open', () => opened++);
      sockets.push(s);
    }
    // Keep a bounded set open: the oldest are dropped as new ones come.
    while (sockets.length > 64) sockets.shift()!.terminate();
  }, 10);
  return {
    opened: () => opened,
    stop: () => {
      clearInterval(timer);
      for (const s of sockets) s.terminate();
    },
  };
}

describe('a join flood from the worker’s own address', () => {
  it('does not keep out a worker with the secret, even one that never reconnects', async () => {
    const c = coordinator(['--max-joins-per-s', '2', '--max-joins-per-source-per-s', '2']);
    const url = await listeningUrl(c);
    const f = flood(url);
    try {
      await c.waitFor(/more than 2 connections per second from 127\.0\.0\.1/);
      const w = start(
        [
          'worker',
          '--connect',
          url,
          '--backend',
          'wasm',
          '--id',
          'behind-nat',
          '--no-reconnect',
          '--data-dir',
          dir,
          '--secret-file',
          secretFile,
        ],
        NO_ENV_SECRET,
      );
      // A worker kept out would exit at once (--no-reconnect): it is awaited first.
      const worker = await w.done;
      expect(worker.status, worker.stderr).toBe(0);
      const summary = expectOk(await c.done);
      expect(summary.steps).toBe(3);
      expect(summary.workers).toBe(1);
      // The flood went on all along, and was refused.
      expect(f.opened()).toBeGreaterThan(20);
      expect(summary.rejected_frames.join_rate_limited).toBeGreaterThan(20);
    } finally {
      f.stop();
    }
  }, 120_000);
});

describe('sockets that never ask for the upgrade', () => {
  it('count against --max-connections, and the coordinator exits when done without waiting for them', async () => {
    const c = coordinator(['--max-connections', '8']);
    const url = await listeningUrl(c);
    const { hostname, port } = new URL(url);
    const held: Socket[] = [];
    for (let i = 0; i < 40; i++) {
      const s = createConnection({ host: hostname, port: Number(port) });
      s.on('error', () => {});
      held.push(s);
    }
    await c.waitFor(
      /refused a connection from ws 127\.0\.0\.1:\d+: 8 connections are open \(--max-connections 8\)/,
    );
    // The slots are taken by sockets that say nothing: a worker waits its turn, and gets in as they time out.
    const w = start(
      [
        'worker',
        '--connect',
        url,
        '--backend',
        'wasm',
        '--id',
        'patient',
        '--data-dir',
        dir,
        '--secret-file',
        secretFile,
      ],
      NO_ENV_SECRET,
    );
    await c.waitFor(/worker patient joined/);
    // New silent sockets take the free slots and stay open (never closed by this side) while the run
    // finishes: they would hold the exit for the rest of their 10 s to ask for the upgrade.
    for (let i = 0; i < 8; i++) {
      const s = createConnection({ host: hostname, port: Number(port) });
      s.on('error', () => {});
      held.push(s);
    }
    // The run's last checkpoint: then the outputs, the summary, and the exit, which no held socket delays.
    await c.waitFor(/checkpoint written: .*ckpt-000000003/);
    const finishedAt = performance.now();
    const summary = expectOk(await c.done);
    expect(performance.now() - finishedAt).toBeLessThan(4000);
    expect(summary.steps).toBe(3);
    expect(summary.rejected_frames.too_many_connections).toBeGreaterThanOrEqual(32);
    expect((await w.done).status).toBe(0);
    for (const s of held) s.destroy();
  }, 120_000);
});
