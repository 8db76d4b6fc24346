/**
 * Bounded resources on real sockets and a real nats-server: what peers not yet admitted may cost,
 * and what a peer that stops reading (ws) or acknowledging (NATS) may make us hold.
 */
import { createConnection } from 'node:net';
import { connect } from 'nats';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PreAdmissionBudget } from '../../protocol/budgets.js';
import { NatsLink } from '../../protocol/nats-link.js';
import type { Link } from '../../protocol/transport.js';
import { connectWs, listenWs } from '../../protocol/ws-transport.js';
import { startNats } from '../helpers/nats.js';

describe('PreAdmissionBudget', () => {
  it('holds each peer to its allowance and all of them to the total, and frees what admitted or departed peers had sent', () => {
    const budget = new PreAdmissionBudget(100, 150);
    const a = budget.open();
    const b = budget.open();
    expect(a.charge(60)).toEqual({ ok: true });
    expect(a.charge(41)).toMatchObject({ ok: false, reason: 'preauth_too_large' });
    a.release();
    expect(budget.outstanding).toBe(0);
    expect(b.charge(90)).toEqual({ ok: true });
    const c = budget.open();
    expect(c.charge(70)).toMatchObject({
      ok: false,
      reason: 'preauth_budget',
      detail: expect.stringMatching(/160 bytes together \(at most 150/),
    });
    c.release();
    b.release();
    b.release(); // twice is once
    expect(budget.outstanding).toBe(0);
    expect(b.charge(1000)).toEqual({ ok: true }); // admitted: no longer charged
  });
});

/** Closes and rejections a link reports, once attached. */
function watch(link: Link) {
  const seen = { rejected: [] as string[], closed: undefined as string | undefined, received: 0, frames: 0 };
  const closed = new Promise<string>((resolve) =>
    link.attach({
      frame: () => void seen.frames++,
      close: (reason) => {
        seen.closed = reason;
        resolve(reason);
      },
      rejected: (reason) => seen.rejected.push(reason),
      received: (n) => {
        seen.received += n;
      },
    }),
  );
  return { seen, closed };
}

describe('ws link', () => {
  it('counts the raw bytes a peer sends as they arrive, before ws has a whole message', async () => {
    const listener = await listenWs('127.0.0.1', 0, { maxFrameBytes: 8 * 1024 * 1024 });
    let server: ReturnType<typeof watch> | undefined;
    listener.onLink((link) => {
      server = watch(link);
    });
    const client = new WebSocket(listener.url, { perMessageDeflate: false });
    await new Promise((resolve) => client.once('open', resolve));
    // Half of a 4 MiB message: ws is still assembling it, yet the bytes are counted.
    const socket = (client as unknown as { _socket: import('node:net').Socket })._socket;
    // binary, masked, 64-bit length 4 MiB, zero mask
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0]);
    socket.write(Buffer.concat([header, Buffer.alloc(2 * 1024 * 1024)]));
    await expect.poll(() => server?.seen.received ?? 0, { timeout: 10_000 }).toBeGreaterThan(1024 * 1024);
    expect(server!.seen.frames).toBe(0);
    client.terminate();
    await listener.close();
  });

  it('queues past the high-water mark and drops a peer that does not read once the cap is reached', async () => {
    const listener = await listenWs('127.0.0.1', 0, { maxFrameBytes: 4 * 1024 * 1024 }); // cap 16 MiB
    const linked = new Promise<Link>((resolve) => listener.onLink(resolve));
    // A raw TCP client that completes the upgrade, then never reads again.
    const url = new URL(listener.url);
    const raw = createConnection({ host: url.hostname, port: Number(url.port) });
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write(
      `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const link = await linked;
    raw.pause();
    const { seen, closed } = watch(link);
    const frame = new Uint8Array(1024 * 1024);
    for (let i = 0; i < 64 && seen.closed === undefined; i++) link.send(frame);
    expect(await closed).toMatch(/is not reading: \d+ bytes wait to be sent to it \(cap 16777216\)/);
    expect(seen.rejected).toEqual(['send_buffer_full']);
    raw.destroy();
    await listener.close();
  });

  it('a reader that keeps up gets every frame in order through the queue', async () => {
    const listener = await listenWs('127.0.0.1', 0, { maxFrameBytes: 64 * 1024 * 1024 });
    const linked = new Promise<Link>((resolve) => listener.onLink(resolve));
    const client = await connectWs(listener.url, { maxFrameBytes: 64 * 1024 * 1024 });
    const got: number[] = [];
    const all = new Promise<void>((resolve) =>
      client.attach({
        frame: (b) => {
          got.push(b[0]);
          if (got.length === 12) resolve();
        },
        close: () => {},
      }),
    );
    const link = await linked;
    // 72 MiB: most of it waits in the queue
    for (let i = 0; i < 12; i++) link.send(new Uint8Array(6 * 1024 * 1024).fill(i));
    await all;
    expect(got).toEqual([...Array(12).keys()]);
    client.close('done');
    await listener.close();
  });
});

describe('NATS link', () => {
  it('drops a peer that leaves frames unacknowledged past the cap', async () => {
    const server = await startNats('unacked', []);
    const nc = await connect({ servers: server.url });
    // Nobody is at the other end: nothing is ever acknowledged.
    const link = new NatsLink({
      nc,
      sendSubject: 'silent.down',
      recvSubject: 'silent.up',
      peer: 'nats silent',
      chunkBytes: 256 * 1024,
      maxUnackedBytes: 3 * 1024 * 1024,
    });
    const { seen, closed } = watch(link);
    for (let i = 0; i < 8 && seen.closed === undefined; i++) link.send(new Uint8Array(1024 * 1024));
    expect(await closed).toMatch(/nats silent has not acknowledged 3145728 bytes \(cap 3145728\)/);
    expect(seen.rejected).toEqual(['send_buffer_full']);
    await nc.close();
  });
});
