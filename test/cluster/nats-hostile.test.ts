/**
 * A hostile NATS client without the secret, on the same real nats-server as a sealed run: it reads
 * everything under the run's prefix and finds no plaintext frame past the handshake; it forges
 * frames and controls into both directions of a live session, forges a broadcast, and plays
 * recorded messages again. Every one is rejected and counted where it lands, and the run ends with
 * the weights of an undisturbed run.
 */
import { type Msg, type MsgHdrs, type NatsConnection, connect, headers as natsHeaders } from 'nats';
import { describe, expect, it } from 'vitest';
import { chunkFrame } from '../../protocol/chunking.js';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import { chunkHeaders } from '../../protocol/nats-chunk-headers.js';
import { expectOk, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
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

/** The worker's rejections, from the line it logs as it ends. */
function workerRejections(stderr: string): Record<string, number> {
  const line = stderr
    .split('\n')
    .reverse()
    .find((l) => l.includes('"rejections"'));
  return line ? (JSON.parse(line) as { rejections: Record<string, number> }).rejections : {};
}

describe('a hostile NATS client without the secret', () => {
  it('reads only ciphertext, and every forged, moved or replayed message is rejected and counted; the weights are undisturbed', async () => {
    const server = await startNats('hostile', []);
    const spy = await connect({ servers: server.url, name: 'hostile' });
    const seen: Seen[] = [];
    spy.subscribe('hostile.>', {
      callback: (_err, m: Msg) =>
        seen.push({ subject: m.subject, headers: headersOf(m.headers), data: Uint8Array.from(m.data) }),
    });
    await spy.flush();

    const nats = ['--transport', 'nats', '--nats-url', server.url, '--nats-subject', 'hostile'];
    const env = { GRADFLEET_SECRET: SECRET };
    const c = start(
      ['coordinator', ...config, ...nats, '--min-workers', '1', '--no-metrics', '--out', `${dir}/attacked`],
      env,
    );
    await c.waitFor(/coordinator listening on/);
    const w = start(['worker', ...nats, '--backend', 'wasm', '--id', 'victim', '--fault-slow-ms', '60'], env);

    // Wait until the session is busy: a few sealed broadcasts of the weights have gone by.
    const broadcasts = () => seen.filter((m) => m.subject === 'hostile.weights' && !m.headers[FORGED]);
    await until(
      'three broadcasts',
      async () => (new Set(broadcasts().map((m) => m.headers['Gf-Seq'])).size >= 3 ? true : undefined),
      60_000,
    );
    const join = seen.find((m) => m.subject === 'hostile.join')!;
    const session = (JSON.parse(new TextDecoder().decode(join.data)) as { session: string }).session;
    const up = `hostile.s.${session}.up`;
    const down = `hostile.s.${session}.down`;
    const recorded = (subject: string) =>
      seen.filter((m) => m.subject === subject && m.headers['Gf-Sealed'] === '1' && !m.headers[FORGED]);

    // Toward the coordinator: a contribution as the worker would send it, the link's controls, a fake seal,
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
    publishFrame(spy, up, 9, contribution);
    for (const control of ['ack', 'resume', 'close', 'ping'])
      publishControl(spy, up, { 'Gf-Ctl': control, 'Gf-Ack': '1000000', 'Gf-Reason': 'forged' });
    const fakeSeal = natsHeaders();
    fakeSeal.set('Gf-Sealed', '1');
    fakeSeal.set(FORGED, '1');
    spy.publish(
      up,
      Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 255),
      { headers: fakeSeal },
    );
    const oldUp = recorded(up).slice(2, 7);
    oldUp.forEach((m) => replay(spy, m));

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
    const weights = encodeFrame(
      { type: 'weights', version: 5, payloadValues: 4 },
      Float32Array.of(0, 0, 0, 0),
    );
    [assign, shutdown, weights].forEach((frame, i) => publishFrame(spy, down, 20 + i, frame));
    for (const control of ['close', 'ack', 'resume'])
      publishControl(spy, down, { 'Gf-Ctl': control, 'Gf-Ack': '0', 'Gf-Reason': 'forged' });
    const oldDown = recorded(down).slice(2, 7);
    oldDown.forEach((m) => replay(spy, m));

    // The broadcast: forged weights under the real publisher's id, and one whole old broadcast again.
    const publisher = broadcasts()[0].headers['Gf-Bid'];
    publishFrame(
      spy,
      'hostile.weights',
      1_000_000,
      encodeFrame({ type: 'weights', version: 1, payloadValues: 4 }, Float32Array.of(9, 9, 9, 9)),
      { 'Gf-Bid': publisher },
    );
    const firstSeq = broadcasts()[0].headers['Gf-Seq'];
    broadcasts()
      .filter((m) => m.headers['Gf-Seq'] === firstSeq)
      .forEach((m) => replay(spy, m));
    await spy.flush();

    const summary = expectOk(await c.done);
    const worker = await w.done;
    expect(worker.status).toBe(0);
    expect(summary.steps).toBe(24);
    expect(summary.rejected_frames).toEqual({ bad_seal: 6, replayed: oldUp.length });
    expect(workerRejections(worker.stderr)).toEqual({ bad_seal: 7, replayed: oldDown.length + 1 });

    // What the spy read: past the three handshake frames, nothing it could decode, and nothing that looks
    // like floats.
    const genuine = seen.filter((m) => !m.headers[FORGED]);
    const plainFrames = genuine.filter((m) => isMagic(m.data));
    expect(plainFrames.map((m) => decodeFrame(m.data).message.type).sort()).toEqual([
      'auth',
      'challenge',
      'hello',
    ]);
    const big = genuine.filter((m) => m.data.byteLength > 16 * 1024);
    expect(big.length).toBeGreaterThan(10);
    expect(big.reduce((n, m) => n + m.data.byteLength, 0)).toBeGreaterThan(1e6);
    for (const m of big) expect(mostCommonByteShare(m.data), m.subject).toBeLessThan(0.02);
    expect(
      genuine.filter(
        (m) =>
          m.subject !== 'hostile.join' &&
          m.subject !== 'hostile.weights' &&
          !m.headers['Gf-Sealed'] &&
          !isMagic(m.data) &&
          m.data.byteLength > 0,
      ),
    ).toEqual([]);

    const undisturbed = expectOk(
      await run(['train', ...config, '--workers', '1', '--backend', 'wasm', '--out', `${dir}/undisturbed`]),
    );
    expect(summary.weights_sha256).toBe(undisturbed.weights_sha256);
    await spy.close();
  }, 180_000);
});
