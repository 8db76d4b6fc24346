/**
 * Bad input and lost work never change the result: rejected frames are counted by reason, their
 * micro-batches recomputed elsewhere, and the run ends with the same bits as an undisturbed one.
 */
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import type { Message, MessageOf } from '../../protocol/messages.js';
import { decompose, nodeRange } from '../../training/parallel/reduction-tree.js';
import { expectOk, listeningUrl, runOnce, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 200);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '11',
  '--max-steps',
  '8',
  '--epochs',
  '2',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];

const undisturbed = runOnce([
  'train',
  ...config,
  '--workers',
  '2',
  '--backend',
  'wasm',
  '--out',
  `${dir}/undisturbed`,
]);
const undisturbedSha = async () => (await undisturbed()).weights_sha256;

/** A coordinator on a free port, and its address once it listens. */
async function coordinator(name: string, extra: string[] = []) {
  const p = start([
    'coordinator',
    ...config,
    '--port',
    '0',
    '--metrics-port',
    '0',
    '--out',
    `${dir}/${name}`,
    ...extra,
  ]);
  return { ...p, url: await listeningUrl(p) };
}

const worker = (url: string, id: string, ...extra: string[]) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--id', id, ...extra]);

describe('faults', () => {
  it('a NaN gradient is rejected as non_finite and recomputed; the weights are unchanged', async () => {
    const c = await coordinator('nan', ['--min-workers', '2']);
    worker(c.url, 'poisoner', '--fault-nan-at-step', '3');
    worker(c.url, 'honest');
    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toEqual({ non_finite: 1 });
    expect(c.child.exitCode).toBe(0);
    expect(summary.weights_sha256).toBe(await undisturbedSha());
  }, 120_000);

  it('a worker that dies mid-run loses no work: the survivor finishes the step, the run pauses below --min-workers until a new worker joins, and the weights are unchanged', async () => {
    const c = await coordinator('lost', ['--min-workers', '2']);
    const doomed = worker(c.url, 'doomed', '--fault-exit-at-step', '4');
    worker(c.url, 'survivor');
    await c.waitFor(/paused at step/);
    worker(c.url, 'relief');
    await c.waitFor(/resumed with 2 workers/);
    const summary = expectOk(await c.done);
    expect((await doomed.done).status).toBe(3);
    expect(summary.stopped).toBe('finished');
    expect(summary.steps).toBe(8);
    expect(summary.workers).toBe(3);
    expect(summary.weights_sha256).toBe(await undisturbedSha());
  }, 120_000);

  it('malformed, oversized, wrong-version, wrong-shape and non-finite frames are rejected and counted while training goes on', async () => {
    const c = await coordinator('rogue', ['--min-workers', '2', '--max-frame-mb', '1']);
    const open = async () => {
      const ws = new WebSocket(c.url, { perMessageDeflate: false });
      await new Promise((resolve) => ws.once('open', resolve));
      return ws;
    };
    // A connection that never says hello: its garbage is counted, and its first message that decodes closes
    // it unheard.
    const stranger = await open();
    const closed = new Promise((resolve) => stranger.once('close', resolve));

    const valid = encodeFrame({ type: 'heartbeat', sentAt: 1 });
    const withByte = (at: number, value: number) => {
      const b = valid.slice();
      b[at] = value;
      return b;
    };
    stranger.send(withByte(0, 0x58)); // bad magic
    stranger.send(withByte(4, 99)); // a protocol version from the future
    stranger.send(withByte(12, 0xc1)); // 0xc1 is never valid msgpack
    stranger.send(Buffer.from('not a frame')); // text-sized garbage
    stranger.send(
      encodeFrame({
        type: 'assign',
        step: 0,
        epoch: 0,
        batchStart: 0,
        batchSamples: 64,
        weightsVersion: 0,
        first: 0,
        count: 1,
      }),
    ); // before hello
    await closed;

    // Before admission a peer may send 16 KiB in all: a big message is cut off while it arrives, not buffered
    // whole.
    const flooder = await open();
    const flooderClosed = new Promise((resolve) => flooder.once('close', resolve));
    flooder.send(new Uint8Array(1.5 * 1024 * 1024));
    await flooderClosed;

    const socket = await open();
    const send = (message: Message, payload?: Float32Array) => socket.send(encodeFrame(message, payload));

    // Then join like a worker and answer assignments badly: a wrong-shape gradient, then a NaN one, then
    // vanish.
    let welcome: MessageOf<'welcome'> | undefined;
    let answered = 0;
    socket.on('message', (bytes: Buffer) => {
      const { message } = decodeFrame(new Uint8Array(bytes));
      if (message.type === 'welcome') welcome = message;
      // Work comes only to a worker that confirmed it holds the step's weights.
      if (message.type === 'weights') send({ type: 'holding', version: message.version });
      if (message.type !== 'assign' || !welcome) return;
      const microBatches = Math.ceil(message.batchSamples / welcome.microBatchSize);
      const node = decompose(message.first, message.first + message.count, microBatches)[0];
      const { first, end } = nodeRange(node, microBatches);
      const samples =
        Math.min(message.batchSamples, end * welcome.microBatchSize) - first * welcome.microBatchSize;
      const reply = (values: Float32Array) =>
        send(
          {
            type: 'contribution',
            step: message.step,
            level: node.level,
            index: node.index,
            lossSum: 1,
            correct: 0,
            samples,
            computeSeconds: 0.01,
            payloadValues: values.length,
          },
          values,
        );
      answered++;
      if (answered === 1) reply(new Float32Array(welcome.layoutSize - 1));
      else if (answered === 2) reply(new Float32Array(welcome.layoutSize).fill(Number.NaN));
      else {
        socket.terminate();
        // The run pauses below --min-workers 2 until someone takes the rogue's place.
        worker(c.url, 'relief');
      }
    });
    send({ type: 'hello', workerId: 'rogue', backend: 'none', nonce: new Uint8Array(32) });
    send({ type: 'ready', missing: [] });
    worker(c.url, 'honest');

    const summary = expectOk(await c.done);
    expect(summary.rejected_frames).toMatchObject({
      bad_magic: 1,
      unknown_version: 1,
      malformed_header: 1,
      preauth_too_large: 1,
      unauthenticated: 1,
      wrong_payload_size: 1,
      non_finite: 1,
    });
    expect(summary.rejected_frames.too_short ?? 0).toBeGreaterThanOrEqual(1);
    expect(summary.steps).toBe(8);
    expect(summary.weights_sha256).toBe(await undisturbedSha());
  }, 120_000);
});
