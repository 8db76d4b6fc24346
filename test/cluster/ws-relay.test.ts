/**
 * A man in the middle of a plain ws:// session with a secret: a relay that forwards every frame
 * both ways, reads them, and plays its own tricks (a frame replayed, a frame altered, a frame
 * forged). Past the handshake it reads only ciphertext, every trick is rejected and counted, and the
 * run ends with the weights of an undisturbed one.
 */
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
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
  '6',
  '--max-steps',
  '12',
  '--epochs',
  '4',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const env = { GRADFLEET_SECRET: 'relay-test-secret-0b7e4d19a2' };
const isMagic = (b: Uint8Array) => b[0] === 0x47 && b[1] === 0x46 && b[2] === 0x4c && b[3] === 0x54; // "GFLT"

describe('a relay in the middle of plain ws://', () => {
  it('sees only ciphertext past the handshake; its replay, alteration and forgery are rejected and counted', async () => {
    const c = start(
      [
        'coordinator',
        ...config,
        '--port',
        '0',
        '--min-workers',
        '1',
        '--no-metrics',
        '--out',
        `${dir}/relayed`,
      ],
      env,
    );
    const target = await listeningUrl(c);
    const relay = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise((resolve) => relay.once('listening', resolve));
    const up: Buffer[] = [];
    const down: Buffer[] = [];
    let tricks = 0;
    relay.on('connection', (fromWorker) => {
      const toCoordinator = new WebSocket(target, { perMessageDeflate: false });
      const pending: Buffer[] = [];
      toCoordinator.once('open', () => pending.splice(0).forEach((b) => toCoordinator.send(b)));
      fromWorker.on('message', (b: Buffer) => {
        up.push(b);
        if (toCoordinator.readyState === WebSocket.OPEN) toCoordinator.send(b);
        else pending.push(b);
      });
      toCoordinator.on('message', (b: Buffer) => {
        down.push(b);
        fromWorker.send(b);
        // Mid-run, once: replay an old frame of the worker's, alter one, and forge a shutdown for the worker.
        if (down.length === 12 && tricks === 0) {
          tricks = 3;
          toCoordinator.send(up[5]);
          const altered = Buffer.from(up.at(-1)!);
          altered[altered.length - 20] ^= 1;
          toCoordinator.send(altered);
          fromWorker.send(encodeFrame({ type: 'shutdown', reason: 'forged by the relay' }));
        }
      });
      fromWorker.on('close', () => toCoordinator.close());
      toCoordinator.on('close', () => fromWorker.close());
    });
    const port = (relay.address() as { port: number }).port;
    const w = start(
      ['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--id', 'relayed'],
      env,
    );
    const summary = expectOk(await c.done);
    const worker = await w.done;
    relay.close();

    expect(tricks).toBe(3);
    expect(worker.status).toBe(0);
    expect(summary.steps).toBe(12);
    expect(summary.rejected_frames).toEqual({ replayed: 1, bad_seal: 1 });
    const line = worker.stderr
      .split('\n')
      .reverse()
      .find((l) => l.includes('"rejections"'))!;
    expect(JSON.parse(line).rejections).toEqual({ bad_seal: 1 });
    // In the clear: hello and auth up, challenge down; nothing after.
    expect(up.filter((b) => isMagic(b)).map((b) => decodeFrame(new Uint8Array(b)).message.type)).toEqual([
      'hello',
      'auth',
    ]);
    expect(down.filter((b) => isMagic(b)).map((b) => decodeFrame(new Uint8Array(b)).message.type)).toEqual([
      'challenge',
    ]);
    expect(up.length + down.length).toBeGreaterThan(30);

    const undisturbed = expectOk(
      await run(['train', ...config, '--workers', '1', '--backend', 'wasm', '--out', `${dir}/undisturbed`]),
    );
    expect(summary.weights_sha256).toBe(undisturbed.weights_sha256);
  }, 120_000);
});
