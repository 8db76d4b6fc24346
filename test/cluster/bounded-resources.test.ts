/**
 * A coordinator's limits before admission, end to end: many half-sent handshakes cannot add up past
 * the shared byte budget, one address cannot join faster than its own bucket, and training goes on.
 */
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { expectOk, listeningUrl, smallMnist, start, tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 100);

/** A TCP client that upgrades to WebSocket and starts a 64 KiB message, sending only `bytes` of it. */
async function partialSender(url: string, bytes: number) {
  const { hostname, port } = new URL(url);
  const raw = createConnection({ host: hostname, port: Number(port) });
  await new Promise((resolve) => raw.once('connect', resolve));
  raw.write(
    `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise((resolve) => raw.once('data', resolve)); // 101 Switching Protocols
  // A binary frame, masked (zero mask), whose 64-bit length says 64 KiB: only `bytes` of it follow.
  raw.write(
    Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.alloc(bytes)]),
  );
  const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
  raw.on('error', () => {});
  return { raw, closed };
}

describe('before admission', () => {
  it("past the shared byte budget a peer is dropped as preauth_budget; past its address's join rate, refused; a worker still trains", async () => {
    const c = start([
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
      `${dir}/run`,
      '--max-preauth-kb',
      '20',
      '--max-joins-per-source-per-s',
      '3',
    ]);
    const url = await listeningUrl(c);
    const first = await partialSender(url, 12 * 1024); // within its 16 KiB and the 20 KiB budget: held open
    const second = await partialSender(url, 12 * 1024); // 24 KiB together: dropped
    await second.closed;
    await c.waitFor(
      /dropped ws .* before admission: peers not yet admitted have sent \d+ bytes together \(at most 20480/,
    );
    expect(first.raw.destroyed).toBe(false);
    first.raw.destroy();
    // Six connections at once from one address with a bucket of 3: some are refused at once.
    const flood = await Promise.all([1, 2, 3, 4, 5, 6].map(() => partialSender(url, 0)));
    await c.waitFor(/connections per second from 127\.0\.0\.1/);
    flood.forEach((f) => f.raw.destroy());
    await new Promise((resolve) => setTimeout(resolve, 1500)); // the bucket refills
    start(['worker', '--connect', url, '--backend', 'wasm', '--id', 'honest', '--data-dir', dir]);
    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(3);
    expect(summary.rejected_frames.preauth_budget).toBe(1);
    expect(summary.rejected_frames.join_rate_limited).toBeGreaterThanOrEqual(1);
  }, 120_000);
});
