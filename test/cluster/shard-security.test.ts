/**
 * A shard reducer holds workers to what the coordinator does, as real processes over real sockets:
 * a worker without the secret, or with a wrong one, is refused and counted by the shard and never
 * contributes; a relay between a worker and its shard finds every replayed, altered or forged frame
 * rejected and counted at the end it reaches; the shard's admission limits turn connections away;
 * and a shard beyond loopback without a secret refuses to start. (Over NATS: nats-hostile.test.ts.)
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import {
  type Started,
  expectOk,
  listeningUrl,
  run,
  runOnce,
  smallMnist,
  start,
  tempDir,
} from '../helpers/gradfleet.js';
import { freePort } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 200, 100);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '4',
  '--max-steps',
  '6',
  '--epochs',
  '2',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const SECRET = 'shard-security-secret-9e04b7c1';
const secretFile = `${dir}/secret`;
writeFileSync(secretFile, `${SECRET}\n`);
const env = { GRADFLEET_SECRET: SECRET };
const isMagic = (b: Uint8Array) => b[0] === 0x47 && b[1] === 0x46 && b[2] === 0x4c && b[3] === 0x54; // "GFLT"

/** The same run, undisturbed and unsharded: what every run here must end with. */
const undisturbed = runOnce([
  'train',
  ...config,
  '--workers',
  '1',
  '--backend',
  'wasm',
  '--out',
  `${dir}/undisturbed`,
]);

/** A coordinator of one shard reducer and one worker; `secret`: it asks for the secret file. */
async function coordinator(name: string, secret: boolean) {
  const c = start([
    'coordinator',
    ...config,
    '--port',
    '0',
    '--shards',
    '1',
    '--min-workers',
    '1',
    '--no-metrics',
    '--out',
    `${dir}/${name}`,
    ...(secret ? ['--secret-file', secretFile] : []),
  ]);
  return { ...c, url: await listeningUrl(c) };
}

/** A shard reducer joined to `url`, once it serves workers: its address as workers are told it. */
async function shard(url: string, id: string, extra: string[] = [], shardEnv: Record<string, string> = {}) {
  const s = start(['shard', '--connect', url, '--id', id, ...extra], shardEnv);
  const line = await s.waitFor(/joined run .*serving workers at/);
  return { ...s, serves: /serving workers at (wss?:\/\/[\d.:]+)/.exec(line)![1] };
}

const worker = (url: string, id: string, extra: string[] = [], workerEnv: Record<string, string> = {}) =>
  start(
    ['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--connect-timeout', '5', ...extra],
    workerEnv,
  );

/** `p`, or a failure naming `what` if it takes longer than `ms` (a log line that never comes fails fast). */
const within = <T>(ms: number, what: string, p: Promise<T>) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no ${what} within ${ms / 1000} s`)), ms).unref(),
    ),
  ]);

/** What a process counted as rejected, from the line it logs as it ends (a shard's or a worker's). */
async function rejections(p: Started): Promise<Record<string, number>> {
  const { stderr, status } = await p.done;
  expect(status, stderr.slice(-2000)).toBe(0);
  const line = stderr
    .split('\n')
    .reverse()
    .find((l) => l.includes('"rejections"'));
  expect(line, 'the process logs its rejections as it ends').toBeDefined();
  return (JSON.parse(line!) as { rejections: Record<string, number> }).rejections;
}

/** Opens `n` WebSockets to `url` at once and leaves them silent; resolves once each is open or refused. */
const silentSockets = (url: string, n: number) =>
  Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<WebSocket>((resolve) => {
          const s = new WebSocket(url, { perMessageDeflate: false });
          s.once('open', () => resolve(s));
          s.once('error', () => resolve(s));
          s.once('close', () => resolve(s));
        }),
    ),
  );

describe('a shard reducer and the workers that reach it', () => {
  it('refuses and counts a worker without the secret and one with a wrong one; neither contributes', async () => {
    const c = await coordinator('auth', true);
    const s = await shard(c.url, 'guarded', ['--secret-file', secretFile]);
    // Straight at the shard's address, as anyone who can reach it could.
    const stranger = worker(s.serves, 'stranger');
    const impostor = worker(s.serves, 'impostor', [], { GRADFLEET_SECRET: 'not-the-secret-at-all-1111' });
    const [noSecret, wrongSecret] = await within(
      20_000,
      'end of the stranger and the impostor',
      Promise.all([stranger.done, impostor.done]),
    );
    expect(noSecret.status).toBe(2);
    expect(noSecret.stderr).toMatch(/requires a shared secret/);
    expect(wrongSecret.status).toBe(2);
    expect(wrongSecret.stderr).toMatch(/secret differs from ours/);

    const honest = worker(c.url, 'honest', ['--secret-file', secretFile]);
    const summary = expectOk(await c.done);
    expect(await rejections(s)).toEqual({ auth_failed: 2 });
    for (const id of ['stranger', 'impostor']) {
      expect(s.log()).toMatch(new RegExp(`worker ${id} \\(ws [^)]*\\) failed to authenticate`));
      expect(s.log()).not.toMatch(new RegExp(`worker ${id} joined`));
    }
    expect(s.log()).toMatch(/worker honest joined/);
    expect(await rejections(honest)).toEqual({});
    // The coordinator never heard of them, and the run is the one they were not part of.
    expect(summary.rejected_frames).toEqual({});
    expect(summary).toMatchObject({ shards: 1, workers: 1, steps: 6 });
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    expect(s.log()).not.toContain(SECRET);
  }, 60_000);

  it('a relay between a worker and its shard over plain ws://: its replays (the newest frame too), alteration and forgery are rejected and counted', async () => {
    const c = await coordinator('relayed', true);
    // The shard tells workers the relay's address; the relay passes everything on to the shard.
    const relay = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise((resolve) => relay.once('listening', resolve));
    const relayPort = (relay.address() as { port: number }).port;
    const shardPort = await freePort();
    const up: Buffer[] = [];
    const down: Buffer[] = [];
    let tricks = 0;
    relay.on('connection', (fromWorker) => {
      const toShard = new WebSocket(`ws://127.0.0.1:${shardPort}`, { perMessageDeflate: false });
      const pending: Buffer[] = [];
      toShard.once('open', () => pending.splice(0).forEach((b) => toShard.send(b)));
      fromWorker.on('message', (b: Buffer) => {
        up.push(b);
        if (toShard.readyState !== WebSocket.OPEN) return void pending.push(b);
        toShard.send(b);
        // Mid-run, once (up: hello, auth, ready, then one node slice a step): step 1's slice again, step 3's
        // (the newest, whose counter the shard has just accepted) again, step 3's altered, and a frame forged
        // for the worker.
        if (up.length === 6 && tricks === 0) {
          tricks = 4;
          toShard.send(up[3]);
          toShard.send(b);
          const altered = Buffer.from(b);
          altered[altered.length - 20] ^= 1;
          toShard.send(altered);
          fromWorker.send(encodeFrame({ type: 'shutdown', reason: 'forged by the relay' }));
        }
      });
      toShard.on('message', (b: Buffer) => {
        down.push(b);
        fromWorker.send(b);
      });
      fromWorker.on('close', () => toShard.close());
      toShard.on('close', () => fromWorker.close());
    });
    const s = await shard(
      c.url,
      'relayed',
      ['--port', String(shardPort), '--advertise', `ws://127.0.0.1:${relayPort}`],
      env,
    );
    expect(s.serves).toBe(`ws://127.0.0.1:${relayPort}`);
    const w = worker(c.url, 'relayed', [], env);
    const summary = expectOk(await c.done);
    relay.close();

    expect(tricks).toBe(4);
    expect(await rejections(s)).toEqual({ replayed: 2, bad_seal: 1 });
    expect(await rejections(w)).toEqual({ bad_seal: 1 });
    expect(summary.rejected_frames).toEqual({});
    // In the clear: hello and auth up, challenge down; nothing after.
    expect(up.filter((b) => isMagic(b)).map((b) => decodeFrame(new Uint8Array(b)).message.type)).toEqual([
      'hello',
      'auth',
    ]);
    expect(down.filter((b) => isMagic(b)).map((b) => decodeFrame(new Uint8Array(b)).message.type)).toEqual([
      'challenge',
    ]);
    expect(summary).toMatchObject({ shards: 1, workers: 1, steps: 6 });
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 60_000);

  it('past its --max-joins-per-s and --max-connections the shard refuses connections and counts them; the run goes on', async () => {
    const c = await coordinator('limits', false);
    const s = await shard(c.url, 'limited', ['--max-connections', '4', '--max-joins-per-s', '2']);
    // Six at once: two join (a burst of 2), the rest come faster than 2 a second.
    const flood = await silentSockets(s.serves, 6);
    await within(
      10_000,
      'refusal past --max-joins-per-s',
      s.waitFor(/refused a connection .*more than 2 connections per second \(--max-joins-per-s\)/),
    );
    await new Promise((r) => setTimeout(r, 1100)); // two more tokens
    // The two silent ones are open (closed only 5 s after opening): two more fit, then no more.
    const more = await silentSockets(s.serves, 4);
    await within(
      10_000,
      'refusal past --max-connections',
      s.waitFor(/refused a connection .*4 connections are open \(--max-connections 4\)/),
    );
    const closed = [...flood, ...more].map(
      (socket) =>
        new Promise((resolve) =>
          socket.readyState === WebSocket.CLOSED ? resolve(0) : socket.once('close', resolve),
        ),
    );
    [...flood, ...more].forEach((socket) => socket.terminate());
    await Promise.all(closed);
    await new Promise((r) => setTimeout(r, 600)); // the shard sees them close; a token for the worker
    const w = worker(c.url, 'honest');
    const summary = expectOk(await c.done);
    expect((await w.done).status).toBe(0);
    const counted = await rejections(s);
    expect(counted.join_rate_limited).toBeGreaterThanOrEqual(1);
    expect(counted.too_many_connections).toBeGreaterThanOrEqual(1);
    expect(Object.keys(counted).sort()).toEqual(['join_rate_limited', 'too_many_connections']);
    expect(summary).toMatchObject({ shards: 1, workers: 1, steps: 6 });
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
  }, 60_000);
});

describe('shard exposure', () => {
  const nowhere = ['--connect', 'ws://127.0.0.1:1', '--connect-timeout', '5'];

  it('beyond loopback without a secret a shard refuses to start (ws and NATS); --insecure starts it with a warning; a secret without TLS warns', async () => {
    const beyond = ['shard', ...nowhere, '--host', '0.0.0.0', '--advertise', 'ws://10.0.0.5:7071'];
    const refused = await run(beyond);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(
      /--host 0\.0\.0\.0 is reachable beyond this machine and no secret is set.*--insecure/,
    );
    expect(refused.stderr).not.toMatch(/retrying/);
    const natsRefused = await run([
      'shard',
      '--transport',
      'nats',
      '--nats-url',
      'nats://10.0.0.5:4222',
      '--connect-timeout',
      '5',
    ]);
    expect(natsRefused.status).not.toBe(0);
    expect(natsRefused.stderr).toMatch(/NATS at 10\.0\.0\.5 is reachable beyond this machine and no secret/);

    for (const [extra, shardEnv, warning] of [
      [['--insecure'], {}, /--insecure: --host 0\.0\.0\.0 accepts any worker/],
      [[], env, /--host 0\.0\.0\.0 without TLS: frames are sealed/],
    ] as const) {
      const p = start([...beyond, ...extra], shardEnv);
      await within(10_000, `${warning}`, p.waitFor(warning));
      p.child.kill();
      await p.done;
    }
  }, 60_000);
});
