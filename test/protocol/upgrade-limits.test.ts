/**
 * Connections that are not links yet (TCP and TLS sockets before the WebSocket upgrade) on real sockets: they
 * count against --max-connections while open, one that does not ask for the upgrade in time is closed, and
 * closing the listener destroys every connection, so the coordinator's exit waits for no peer.
 */
import { readFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { silentLogger } from '../../common/logger.js';
import { RejectionCounts } from '../../protocol/channel.js';
import { PeerPool } from '../../protocol/peer-pool.js';
import type { Listener } from '../../protocol/transport.js';
import { connectWs, listenWs } from '../../protocol/ws-transport.js';
import { makeCertificates } from '../helpers/certificates.js';
import { tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

/** A pool on a real ws listener, with `maxConnections` and generous join rates (only the cap is tested). */
async function poolOn(maxConnections: number, options: Parameters<typeof listenWs>[2] = {}) {
  const listener = await listenWs('127.0.0.1', 0, options);
  const rejections = new RejectionCounts();
  const warnings: string[] = [];
  const log = Object.assign(Object.create(silentLogger), {
    warn: (_fields: unknown, message: string) => warnings.push(message),
  });
  const pool = new PeerPool({
    listener,
    log,
    rejections,
    heartbeat: { intervalMs: 60_000, timeoutMs: 120_000 },
    limits: { maxConnections, maxWorkers: 8, joinsPerSecond: 1000, joinsPerSourcePerSecond: 1000 },
  });
  cleanup.push(
    () => listener.close(),
    () => pool.shutdown('test over'),
  );
  const { port } = new URL(listener.url);
  return { listener, rejections, warnings, port: Number(port) };
}

/** A TCP connection that says nothing (never asks for the upgrade); resolves once it is connected. */
function silentSocket(port: number, send?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => {
      if (send) socket.write(send);
      resolve(socket);
    });
    socket.once('error', reject);
    cleanup.push(() => socket.destroy());
  });
}

/** Resolves with how many ms after the call the server closed `socket` (or it failed). */
function closedWithin(socket: Socket): Promise<number> {
  const from = performance.now();
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) return resolve(0);
    socket.on('error', () => {});
    socket.once('close', () => resolve(performance.now() - from));
  });
}

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe('sockets before the upgrade', () => {
  it('count against --max-connections: past it a socket is closed at once, counted and logged', async () => {
    const { rejections, warnings, port, listener } = await poolOn(3);
    const silent = await Promise.all([1, 2, 3].map(() => silentSocket(port)));
    await settle();
    const fourth = await silentSocket(port);
    expect(await closedWithin(fourth)).toBeLessThan(1000);
    for (const s of silent) expect(s.destroyed).toBe(false);
    expect(rejections.byReason.too_many_connections).toBe(1);
    expect(warnings.join('\n')).toMatch(
      /refused a connection from ws 127\.0\.0\.1:\d+: 3 connections are open \(--max-connections 3\)/,
    );
    // A worker finds no slot either while three sockets that never upgraded hold them.
    await expect(connectWs(listener.url)).rejects.toThrow();
    // One leaves: a worker's connection opens (an upgraded link still counts while it is open).
    silent[0].destroy();
    await settle();
    const link = await connectWs(listener.url);
    cleanup.push(() => link.close('test over'));
    await settle();
    const another = await silentSocket(port);
    expect(await closedWithin(another)).toBeLessThan(1000);
    expect(rejections.byReason.too_many_connections).toBeGreaterThanOrEqual(3);
  });

  it('one that does not finish asking for the upgrade in time is closed, and its slot is free again', async () => {
    const { port, listener } = await poolOn(1, { upgradeTimeoutMs: 400 });
    // Half a request: the headers never end.
    const slow = await silentSocket(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
    const closedAfter = await closedWithin(slow);
    expect(closedAfter).toBeGreaterThan(250);
    expect(closedAfter).toBeLessThan(2000);
    await settle();
    const link = await connectWs(listener.url);
    cleanup.push(() => link.close('test over'));
  });

  it('a plain HTTP request is answered 426 and closed, not left open', async () => {
    const { port } = await poolOn(4);
    const socket = await silentSocket(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    let answer = '';
    socket.on('data', (d) => (answer += d));
    expect(await closedWithin(socket)).toBeLessThan(1000);
    expect(answer).toMatch(/^HTTP\/1\.1 426 /);
  });

  it('under wss:// a socket that never starts TLS counts, and is closed after the same time', async () => {
    const certs = makeCertificates(dir);
    const { port, rejections } = await poolOn(1, {
      upgradeTimeoutMs: 400,
      tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) },
    });
    const silent = await silentSocket(port);
    await settle();
    const second = await silentSocket(port);
    expect(await closedWithin(second)).toBeLessThan(1000);
    expect(rejections.byReason.too_many_connections).toBe(1);
    const closedAfter = await closedWithin(silent);
    expect(closedAfter).toBeLessThan(2000);
    // TLS done, then no request: closed as well.
    const tls = await new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(certs.ca) }, () => resolve(s));
      s.once('error', reject);
      cleanup.push(() => s.destroy());
    });
    expect(await closedWithin(tls)).toBeLessThan(2000);
  });
});

describe('closing the listener', () => {
  it('destroys sockets before, during and after the upgrade at once: it waits for no peer to hang up', async () => {
    const { port, listener } = await poolOn(64);
    const silent = await Promise.all(Array.from({ length: 20 }, () => silentSocket(port)));
    const halfway = await silentSocket(port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    // An upgraded socket whose peer never answers a close (it stopped reading).
    const upgraded = new WebSocket(listener.url);
    await new Promise((resolve) => upgraded.once('open', resolve));
    cleanup.push(() => upgraded.terminate());
    await settle();
    const closes = [...silent, halfway].map(closedWithin);
    const started = performance.now();
    await closeOf(listener);
    expect(performance.now() - started).toBeLessThan(1000);
    for (const after of await Promise.all(closes)) expect(after).toBeLessThan(1000);
    // Nothing listens any more.
    await expect(silentSocket(port)).rejects.toThrow(/ECONNREFUSED/);
  });
});

/** Closes the listener; fails past 5 s rather than waiting for the peers. */
function closeOf(listener: Listener): Promise<void> {
  return Promise.race([
    listener.close(),
    new Promise<void>((_, reject) =>
      setTimeout(() => reject(new Error('the listener waited for its peers to hang up')), 5000),
    ),
  ]);
}
