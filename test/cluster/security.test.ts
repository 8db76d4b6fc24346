/**
 * Nobody without the secret joins, nothing an unauthenticated peer says is processed, the secret
 * never shows, and wss:// works with a CA made here (and fails clearly without it).
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import { makeCertificates } from '../helpers/certificates.js';
import { expectOk, listeningUrl, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

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
  '3',
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
const SECRET = 'correct-horse-battery-staple-7f3a9c';
const secretFile = `${dir}/secret`;
writeFileSync(secretFile, `${SECRET}\n`);

async function coordinator(name: string, extra: string[] = []) {
  const p = start([
    'coordinator',
    ...config,
    '--port',
    '0',
    '--no-metrics',
    '--out',
    `${dir}/${name}`,
    ...extra,
  ]);
  return { ...p, url: await listeningUrl(p) };
}
const worker = (url: string, id: string, extra: string[] = [], env: Record<string, string> = {}) =>
  start(
    ['worker', '--connect', url, '--backend', 'wasm', '--id', id, '--connect-timeout', '5', ...extra],
    env,
  );

describe('authentication', () => {
  it('workers with the secret train; one without it and one with a wrong one are refused and counted; the secret never shows', async () => {
    const c = await coordinator('auth', ['--secret-file', secretFile, '--min-workers', '1']);
    const stranger = worker(c.url, 'stranger');
    const impostor = worker(c.url, 'impostor', [], { GRADFLEET_SECRET: 'not-the-secret-at-all-0000' });
    const [noSecret, wrongSecret] = [await stranger.done, await impostor.done];
    expect(noSecret.status).toBe(2);
    expect(noSecret.stderr).toMatch(/requires a shared secret/);
    expect(wrongSecret.status).toBe(2);
    expect(wrongSecret.stderr).toMatch(
      /the coordinator's secret differs from ours: give both the same GRADFLEET_SECRET/,
    );

    const honest = worker(c.url, 'honest', [], { GRADFLEET_SECRET: SECRET });
    const summary = expectOk(await c.done);
    expect((await honest.done).status).toBe(0);
    expect(summary.workers).toBe(1);
    expect(summary.steps).toBe(6);
    // The stranger cannot answer the challenge; the impostor finds the coordinator's proof wrong and leaves.
    // Both count.
    expect(summary.rejected_frames).toEqual({ auth_failed: 2 });
    expect(c.log()).not.toContain(SECRET);
    expect((await honest.done).stderr).not.toContain(SECRET);
  }, 120_000);

  it('a worker whose proof is wrong is refused as auth_failed, and messages before authenticating are never processed', async () => {
    const c = await coordinator('forged', ['--secret-file', secretFile, '--min-workers', '1']);
    const client = new WebSocket(c.url, { perMessageDeflate: false });
    await new Promise((resolve) => client.once('open', resolve));
    const received: string[] = [];
    client.on('message', (bytes: Buffer) => {
      const { message } = decodeFrame(new Uint8Array(bytes));
      received.push(message.type === 'error' ? `error:${message.code}` : message.type);
      if (message.type === 'challenge')
        client.send(encodeFrame({ type: 'auth', proof: new Uint8Array(32).fill(7) }));
    });
    const closed = new Promise((resolve) => client.once('close', resolve));
    client.send(
      encodeFrame({ type: 'hello', workerId: 'forger', backend: 'none', nonce: new Uint8Array(32).fill(1) }),
    );
    await closed;
    expect(received).toEqual(['challenge', 'error:auth_failed']);

    // Straight to work without a hello: refused and cut off, no welcome, no data.
    const rude = new WebSocket(c.url, { perMessageDeflate: false });
    await new Promise((resolve) => rude.once('open', resolve));
    const rudeGot: string[] = [];
    rude.on('message', (bytes: Buffer) => rudeGot.push(decodeFrame(new Uint8Array(bytes)).message.type));
    const rudeClosed = new Promise((resolve) => rude.once('close', resolve));
    rude.send(encodeFrame({ type: 'ready', missing: ['train'] }));
    await rudeClosed;
    expect(rudeGot).toEqual(['error']);

    worker(c.url, 'honest', ['--secret-file', secretFile]);
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toEqual({ auth_failed: 1, unauthenticated: 1 });
  }, 120_000);

  it('a worker with a secret refuses a coordinator that has none (it could be anyone)', async () => {
    const c = await coordinator('open', ['--min-workers', '1']);
    const careful = await worker(c.url, 'careful', ['--secret-file', secretFile]).done;
    expect(careful.status).toBe(2);
    expect(careful.stderr).toMatch(/did not authenticate/);
    c.child.kill();
  }, 60_000);
});

describe('limits', () => {
  it('connections past --max-joins-per-s are refused and counted while the run goes on', async () => {
    const c = await coordinator('flood', ['--min-workers', '1', '--max-joins-per-s', '3']);
    const opening = performance.now();
    const sockets = await Promise.all(
      Array.from(
        { length: 12 },
        () =>
          new Promise<WebSocket>((resolve) => {
            const s = new WebSocket(c.url, { perMessageDeflate: false });
            s.once('open', () => resolve(s));
            s.once('error', () => resolve(s));
          }),
      ),
    );
    // A burst of 3, plus 3 a second for as long as the 12 took to open (a loaded machine spreads them out).
    const allowed = 3 + Math.ceil((3 * (performance.now() - opening)) / 1000);
    await new Promise((r) => setTimeout(r, 300));
    const stillOpen = sockets.filter((s) => s.readyState === WebSocket.OPEN).length;
    expect(stillOpen).toBeLessThanOrEqual(allowed);
    expect(allowed, 'the flood was too slow to test the limit').toBeLessThan(12);
    sockets.forEach((s) => s.terminate());
    await new Promise((r) => setTimeout(r, 1500)); // let the bucket refill for the real worker
    worker(c.url, 'honest');
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames.join_rate_limited).toBeGreaterThanOrEqual(12 - allowed);
    expect(summary.steps).toBe(6);
  }, 120_000);

  it('a connection that never says hello is closed after the first-hello time, not the whole handshake time', async () => {
    const c = await coordinator('silent', ['--min-workers', '1']);
    const silent = new WebSocket(c.url, { perMessageDeflate: false });
    await new Promise((resolve) => silent.once('open', resolve));
    const opened = performance.now();
    const reason = await new Promise<string>((resolve) =>
      silent.once('close', (_code, why: Buffer) => resolve(why.toString())),
    );
    expect(reason).toBe('no hello in time');
    // well before the 15 s handshake limit, even on a loaded machine
    expect(performance.now() - opened).toBeLessThan(14_000);
    worker(c.url, 'honest');
    expectOk(await c.done);
  }, 60_000);

  it('a worker asking for the data set again in one session gets it once: the repeat is refused and counted', async () => {
    const c = await coordinator('restream', ['--min-workers', '1']);
    const client = new WebSocket(c.url, { perMessageDeflate: false });
    await new Promise((resolve) => client.once('open', resolve));
    const got: string[] = [];
    let wake = () => {};
    client.on('message', (bytes: Buffer) => {
      const { message } = decodeFrame(new Uint8Array(bytes));
      got.push(
        message.type === 'error'
          ? `error:${message.code}`
          : message.type === 'dataChunk'
            ? `dataChunk:${message.split}`
            : message.type,
      );
      if (message.type === 'welcome')
        for (let i = 0; i < 3; i++) client.send(encodeFrame({ type: 'ready', missing: ['test'] }));
      wake();
    });
    client.send(
      encodeFrame({ type: 'hello', workerId: 'greedy', backend: 'none', nonce: new Uint8Array(32).fill(2) }),
    );
    while (got.filter((g) => g === 'error:unexpected_message').length < 2)
      await new Promise<void>((resolve) => (wake = resolve));
    client.close();
    // 100 test samples are one chunk: streamed once, the two repeats refused.
    expect(got.filter((g) => g.startsWith('dataChunk'))).toEqual(['dataChunk:test']);
    worker(c.url, 'honest');
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toEqual({ unexpected_message: 2 });
  }, 120_000);

  it('bad cluster flags are refused with a message naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ['--heartbeat', '5', '--heartbeat-timeout', '2'],
        /--heartbeat-timeout .* must be longer than --heartbeat/,
      ],
      [['--min-workers', '3', '--max-workers', '2'], /--min-workers 3 is above --max-workers 2/],
      [['--step-deadline', '0'], /--step-deadline.*positive number/],
      [['--secret', 'short'], /at least 16 bytes/],
      [['--secret-file', `${dir}/missing`], /--secret-file .*missing: no such file/],
      [['--tls-cert', `${dir}/secret`], /needs both --tls-cert and --tls-key/],
    ];
    for (const [flags, message] of cases) {
      const r = await run([
        'coordinator',
        ...config,
        '--port',
        '0',
        '--no-metrics',
        '--out',
        `${dir}/bad`,
        ...flags,
      ]);
      expect(r.status, flags.join(' ')).not.toBe(0);
      expect(r.stderr, flags.join(' ')).toMatch(message);
    }
  }, 60_000);
});

describe('TLS', () => {
  it('wss:// with a self-signed CA: a worker given --tls-ca trains; one without it fails at once naming the certificate problem', async () => {
    const tls = makeCertificates(dir);
    const c = await coordinator('tls', [
      '--tls-cert',
      tls.cert,
      '--tls-key',
      tls.key,
      '--min-workers',
      '1',
      '--secret-file',
      secretFile,
    ]);
    expect(c.url).toMatch(/^wss:\/\//);
    const untrusting = await worker(c.url, 'untrusting', ['--secret-file', secretFile]).done;
    expect(untrusting.status).not.toBe(0);
    expect(untrusting.stderr).toMatch(/certificate/i);
    expect(untrusting.stderr).toMatch(/--tls-ca/);
    expect(untrusting.stderr).not.toMatch(/retrying/);

    const trusting = worker(c.url, 'trusting', ['--tls-ca', tls.ca, '--secret-file', secretFile]);
    const summary = expectOk(await c.done);
    expect((await trusting.done).status).toBe(0);
    expect(summary.steps).toBe(6);
    const plain = expectOk(
      await run(['train', ...config, '--workers', '1', '--backend', 'wasm', '--out', `${dir}/plain`]),
    );
    expect(summary.weights_sha256).toBe(plain.weights_sha256);
  }, 120_000);
});
