/**
 * A hostile NATS client without the secret, on the same real nats-server as a sealed run: it reads
 * everything under the run's prefix and finds no plaintext frame past the handshake; it forges
 * frames and controls into both directions of a live session, forges a broadcast, and plays
 * recorded messages again, old ones and the newest (the counter just accepted). Every one is
 * rejected and counted where it lands, and the run ends with the weights of an undisturbed run. The
 * same attack on a coordinator's session and broadcast (`<prefix>.*`), and on a shard reducer's
 * (`<prefix>.shard.<id>.*`).
 */
import { type Msg, type MsgHdrs, type NatsConnection, connect, headers as natsHeaders } from 'nats';
import { describe, expect, it } from 'vitest';
import { chunkFrame } from '../../protocol/chunking.js';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import { chunkHeaders } from '../../protocol/nats-chunk-headers.js';
import { type Started, expectOk, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 400, 100);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '8',
  '--max-steps',
  '24',
  '--epochs',
  '4',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const SECRET = 'hostile-suite-secret-5d1c8e2f';

interface Seen {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
}

const headersOf = (h: MsgHdrs | undefined) =>
  Object.fromEntries([...(h?.keys() ?? [])].map((k) => [k, h!.get(k)]));
const isMagic = (b: Uint8Array) =>
  b.length >= 4 && b[0] === 0x47 && b[1] === 0x46 && b[2] === 0x4c && b[3] === 0x54; // "GFLT"

/** Ciphertext is flat; float32 tensors are not (their exponent bytes cluster on a few values). */
function mostCommonByteShare(bytes: Uint8Array): number {
  const counts = new Uint32Array(256);
  for (const b of bytes) counts[b]++;
  return Math.max(...counts) / bytes.length;
}

/** Marks what the attacker sent, so that the spy's analysis leaves it out (the links ignore the header). */
const FORGED = 'X-Hostile';

function publishFrame(
  nc: NatsConnection,
  subject: string,
  seq: number,
  frame: Uint8Array,
  extra: Record<string, string> = {},
) {
  for (const { info, bytes } of chunkFrame(seq, frame, 64 * 1024)) {
    const h = chunkHeaders(info);
    for (const [k, v] of Object.entries({ ...extra, [FORGED]: '1' })) h.set(k, v);
    nc.publish(subject, bytes, { headers: h });
  }
}

function publishControl(nc: NatsConnection, subject: string, fields: Record<string, string>) {
  const h = natsHeaders();
  for (const [k, v] of Object.entries({ ...fields, [FORGED]: '1' })) h.set(k, v);
  nc.publish(subject, new Uint8Array(0), { headers: h });
}

const replay = (nc: NatsConnection, m: Seen) => {
  const h = natsHeaders();
  for (const [k, v] of Object.entries({ ...m.headers, [FORGED]: '1' })) h.set(k, v);
  nc.publish(m.subject, m.data, { headers: h });
};

/** A worker's or shard's rejections, from the line it logs as it ends. */
function rejectionsOf(stderr: string): Record<string, number> {
  const line = stderr
    .split('\n')
    .reverse()
    .find((l) => l.includes('"rejections"'));
  return line ? (JSON.parse(line) as { rejections: Record<string, number> }).rejections : {};
}

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

/** A spy subscribed to everything under `prefix`; `next` replays a message the moment it is seen. */
async function spyOn(url: string, prefix: string) {
  const nc = await connect({ servers: url, name: 'hostile' });
  const seen: Seen[] = [];
  const hooks: Array<(m: Seen) => boolean> = [];
  nc.subscribe(`${prefix}.>`, {
    callback: (_err, msg: Msg) => {
      const m = { subject: msg.subject, headers: headersOf(msg.headers), data: Uint8Array.from(msg.data) };
      seen.push(m);
      if (m.headers[FORGED]) return;
      for (const hook of [...hooks]) if (hook(m)) hooks.splice(hooks.indexOf(hook), 1);
    },
  });
  await nc.flush();
  return {
    nc,
    seen,
    /** Resolves once `act` has been done to the first genuine message that `pick` wants. */
    next: (pick: (m: Seen) => boolean, act: (m: Seen) => void) =>
      new Promise<void>((resolve) =>
        hooks.push((m) => {
          if (!pick(m)) return false;
          act(m);
          resolve();
          return true;
        }),
      ),
  };
}

/**
 * Everything the attacker does to one live sealed session of the side serving under `base` (a coordinator's
 * prefix, or a shard's `<prefix>.shard.<id>`), once it has broadcast the weights three times: what each end
 * must then have rejected.
 */
async function attack(spy: Awaited<ReturnType<typeof spyOn>>, base: string) {
  const { nc, seen } = spy;
  const weightsSubject = `${base}.weights`;
  const broadcasts = () => seen.filter((m) => m.subject === weightsSubject && !m.headers[FORGED]);
  await until(
    'three broadcasts',
    async () => (new Set(broadcasts().map((m) => m.headers['Gf-Seq'])).size >= 3 ? true : undefined),
    60_000,
  );
  const join = seen.find((m) => m.subject === `${base}.join`)!;
  const session = (JSON.parse(new TextDecoder().decode(join.data)) as { session: string }).session;
  const up = `${base}.s.${session}.up`;
  const down = `${base}.s.${session}.down`;
  const recorded = (subject: string) =>
    seen.filter((m) => m.subject === subject && m.headers['Gf-Sealed'] === '1' && !m.headers[FORGED]);
  const sealedOn = (subject: string) => (m: Seen) => m.subject === subject && m.headers['Gf-Sealed'] === '1';

  // The newest message each way, and the newest broadcast, played again the moment they go by: the
  // counter each end has just accepted (a check of `>=` in place of `>` would let them through).
  const newest = Promise.all([
    spy.next(sealedOn(up), (m) => replay(nc, m)),
    spy.next(sealedOn(down), (m) => replay(nc, m)),
    spy.next(
      (m) =>
        m.subject === weightsSubject && Number(m.headers['Gf-Part']) === Number(m.headers['Gf-Parts']) - 1,
      (last) =>
        broadcasts()
          .filter((m) => m.headers['Gf-Seq'] === last.headers['Gf-Seq'])
          .forEach((m) => replay(nc, m)),
    ),
  ]);

  // Toward the serving side: a contribution as the worker would send it, the link's controls, a fake seal,
  // old messages.
  const contribution = encodeFrame(
    {
      type: 'contribution',
      step: 3,
      level: 0,
      index: 0,
      lossSum: 1,
      correct: 1,
      samples: 16,
      computeSeconds: 0.01,
      payloadValues: 4,
    },
    Float32Array.of(1e30, 1e30, 1e30, 1e30),
  );
  publishFrame(nc, up, 9, contribution);
  for (const control of ['ack', 'resume', 'close', 'ping'])
    publishControl(nc, up, { 'Gf-Ctl': control, 'Gf-Ack': '1000000', 'Gf-Reason': 'forged' });
  const fakeSeal = natsHeaders();
  fakeSeal.set('Gf-Sealed', '1');
  fakeSeal.set(FORGED, '1');
  nc.publish(
    up,
    Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255),
    { headers: fakeSeal },
  );
  const oldUp = recorded(up).slice(2, 7);
  oldUp.forEach((m) => replay(nc, m));

  // Toward the worker: orders it should never obey, controls, and old messages.
  const assign = encodeFrame({
    type: 'assign',
    step: 99,
    epoch: 0,
    batchStart: 0,
    batchSamples: 64,
    weightsVersion: 0,
    first: 0,
    count: 4,
  });
  const shutdown = encodeFrame({ type: 'shutdown', reason: 'forged' });
  const weights = encodeFrame({ type: 'weights', version: 5, payloadValues: 4 }, Float32Array.of(0, 0, 0, 0));
  [assign, shutdown, weights].forEach((frame, i) => publishFrame(nc, down, 20 + i, frame));
  for (const control of ['close', 'ack', 'resume'])
    publishControl(nc, down, { 'Gf-Ctl': control, 'Gf-Ack': '0', 'Gf-Reason': 'forged' });
  const oldDown = recorded(down).slice(2, 7);
  oldDown.forEach((m) => replay(nc, m));

  // The broadcast: forged weights under the real publisher's id, and one whole old broadcast again.
  const publisher = broadcasts()[0].headers['Gf-Bid'];
  publishFrame(
    nc,
    weightsSubject,
    1_000_000,
    encodeFrame({ type: 'weights', version: 1, payloadValues: 4 }, Float32Array.of(9, 9, 9, 9)),
    { 'Gf-Bid': publisher },
  );
  const firstSeq = broadcasts()[0].headers['Gf-Seq'];
  broadcasts()
    .filter((m) => m.headers['Gf-Seq'] === firstSeq)
    .forEach((m) => replay(nc, m));
  await newest;
  await nc.flush();
  return {
    /** What the serving side (coordinator or shard) rejects: the forgeries, the old and the newest message. */
    server: { bad_seal: 6, replayed: oldUp.length + 1 },
    /**
     * What the worker rejects: the forged frames, controls and broadcast; the old and the newest message, the
     * first and the newest broadcast.
     */
    worker: { bad_seal: 7, replayed: oldDown.length + 1 + 2 },
  };
}

/** What the spy read under `prefix`: past the three handshake frames of each session nothing it could decode, nothing like floats. */
function expectOnlyCiphertext(seen: Seen[], prefix: string, sessions: number) {
  const genuine = seen.filter((m) => !m.headers[FORGED] && m.subject.startsWith(`${prefix}.`));
  const plainFrames = genuine.filter((m) => isMagic(m.data));
  expect(plainFrames.map((m) => decodeFrame(m.data).message.type).sort()).toEqual(
    ['auth', 'challenge', 'hello'].flatMap((t) => Array<string>(sessions).fill(t)),
  );
  const big = genuine.filter((m) => m.data.byteLength > 16 * 1024);
  expect(big.length).toBeGreaterThan(10);
  expect(big.reduce((n, m) => n + m.data.byteLength, 0)).toBeGreaterThan(1e6);
  for (const m of big) expect(mostCommonByteShare(m.data), m.subject).toBeLessThan(0.02);
  expect(
    genuine.filter(
      (m) =>
        !m.subject.endsWith('.join') &&
        !m.subject.endsWith('.weights') &&
        !m.headers['Gf-Sealed'] &&
        !isMagic(m.data) &&
        m.data.byteLength > 0,
    ),
  ).toEqual([]);
}

const ended = async (p: Started) => {
  const r = await p.done;
  expect(r.status, r.stderr.slice(-2000)).toBe(0);
  return rejectionsOf(r.stderr);
};

describe('a hostile NATS client without the secret', () => {
  it("on a coordinator's session and broadcast: reads only ciphertext, and every forged, moved or replayed message is rejected and counted; the weights are undisturbed", async () => {
    const server = await startNats('hostile', []);
    const spy = await spyOn(server.url, 'hostile');
    const nats = ['--transport', 'nats', '--nats-url', server.url, '--nats-subject', 'hostile'];
    const env = { GRADFLEET_SECRET: SECRET };
    const c = start(
      ['coordinator', ...config, ...nats, '--min-workers', '1', '--no-metrics', '--out', `${dir}/attacked`],
      env,
    );
    await c.waitFor(/coordinator listening on/);
    const w = start(['worker', ...nats, '--backend', 'wasm', '--id', 'victim', '--fault-slow-ms', '60'], env);
    const expected = await attack(spy, 'hostile');

    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(24);
    expect(summary.rejected_frames).toEqual(expected.server);
    expect(await ended(w)).toEqual(expected.worker);
    expectOnlyCiphertext(spy.seen, 'hostile', 1);
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    await spy.nc.close();
  }, 120_000);

  it("on a shard reducer's session and broadcast (<prefix>.shard.<id>.*): the same, rejected and counted by the shard and the worker", async () => {
    const server = await startNats('shard-hostile', []);
    const spy = await spyOn(server.url, 'shost');
    const nats = ['--transport', 'nats', '--nats-url', server.url, '--nats-subject', 'shost'];
    const env = { GRADFLEET_SECRET: SECRET };
    const c = start(
      [
        'coordinator',
        ...config,
        ...nats,
        '--shards',
        '1',
        '--min-workers',
        '1',
        '--no-metrics',
        '--out',
        `${dir}/shard-attacked`,
      ],
      env,
    );
    await c.waitFor(/coordinator listening on/);
    const s = start(['shard', ...nats, '--id', 's1'], env);
    const w = start(['worker', ...nats, '--backend', 'wasm', '--id', 'victim', '--fault-slow-ms', '60'], env);
    const expected = await attack(spy, 'shost.shard.s1');

    const summary = expectOk(await c.done);
    expect(summary).toMatchObject({ shards: 1, workers: 1, steps: 24 });
    // Nothing reached the coordinator's sessions: every rejection is the shard's or the worker's.
    expect(summary.rejected_frames).toEqual({});
    expect(await ended(s)).toEqual(expected.server);
    expect(await ended(w)).toEqual(expected.worker);
    // The worker's session with the shard: hello, challenge and auth in the clear, then only ciphertext.
    expectOnlyCiphertext(spy.seen, 'shost.shard', 1);
    expect(summary.weights_sha256).toBe((await undisturbed()).weights_sha256);
    await spy.nc.close();
  }, 120_000);
});
