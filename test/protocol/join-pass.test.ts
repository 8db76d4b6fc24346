/**
 * Join passes (protocol/join-pass.ts): a worker that holds the secret proves it with its connection request,
 * so a join flood from its own address (NAT) or from everywhere does not starve it. On real sockets (ws, and
 * NATS through a real nats-server), with the real pool, handshake and admission.
 */
import { connect as natsConnect, nuid } from 'nats';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { silentLogger } from '../../common/logger.js';
import { AdmissionControl } from '../../protocol/admission.js';
import { SharedSecret } from '../../protocol/auth.js';
import { RejectionCounts } from '../../protocol/channel.js';
import { ClientHandshake, joiningChannel } from '../../protocol/client-handshake.js';
import { mintJoinPass, parseJoinPass, passHoldsSecret } from '../../protocol/join-pass.js';
import { COORDINATOR_MESSAGE_TYPES, type Message } from '../../protocol/messages.js';
import { connectNats, listenNats } from '../../protocol/nats-transport.js';
import { PeerPool } from '../../protocol/peer-pool.js';
import type { Link, Listener } from '../../protocol/transport.js';
import { connectWs, listenWs } from '../../protocol/ws-transport.js';
import { startNats } from '../helpers/nats.js';

const secret = new SharedSecret('the-join-pass-test-secret-0123456789');
const otherSecret = new SharedSecret('another-secret-altogether-9876543210');
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

/**
 * A pool that admits any worker that gets through the handshake (recording its id), on `listener`, with a
 * join rate of one a second in all and from each source.
 */
function poolOn(listener: Listener, options: { secret?: SharedSecret; maxConnections?: number } = {}) {
  const rejections = new RejectionCounts();
  const warnings: string[] = [];
  const log = Object.assign(Object.create(silentLogger), {
    warn: (_fields: unknown, message: string) => warnings.push(message),
  });
  const admitted: string[] = [];
  const pool = new PeerPool({
    listener,
    log,
    rejections,
    secret: 'secret' in options ? options.secret : secret,
    heartbeat: { intervalMs: 60_000, timeoutMs: 120_000 },
    limits: {
      maxConnections: options.maxConnections ?? 256,
      maxWorkers: 64,
      joinsPerSecond: 1,
      joinsPerSourcePerSecond: 1,
    },
  });
  pool.serve('worker', {
    admit: (hello) => {
      admitted.push(hello.workerId);
      return { message: () => {}, lost: () => {} };
    },
  });
  cleanup.push(
    () => listener.close(),
    () => pool.shutdown('test over'),
  );
  return { rejections, warnings, admitted };
}

/**
 * Runs the joining side of the handshake over `link` as `workerId`; resolves with how the link ended up:
 * 'authenticated' (our auth sent, the link still open a moment later) or the reason it closed.
 */
function handshake(link: Link, workerId: string, withSecret: SharedSecret | undefined = secret) {
  return new Promise<string>((resolve) => {
    let hs: ClientHandshake | undefined;
    const channel = joiningChannel<Message, Message>(link, {
      log: silentLogger,
      rejections: new RejectionCounts(),
      accepts: COORDINATOR_MESSAGE_TYPES,
      handle: ({ message }) => {
        if (message.type !== 'challenge') return;
        const answered = hs!.challenge(message);
        if (!answered.ok) return resolve(answered.why);
        setTimeout(() => resolve('authenticated'), 150);
      },
      fail: (err) => resolve(`failed: ${err.message}`),
      lost: (reason) => resolve(reason),
    });
    hs = new ClientHandshake(channel, { workerId, backend: 'wasm' }, withSecret, 'the coordinator');
    hs.start();
    cleanup.push(() => link.close('test over'));
  });
}

/** `count` ws connections at once with no pass (a flood from this address); all closed again afterwards. */
async function flood(url: string, count: number): Promise<void> {
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<WebSocket>((resolve) => {
          const s = new WebSocket(url, { perMessageDeflate: false });
          s.once('open', () => resolve(s));
          s.once('error', () => resolve(s));
        }),
    ),
  );
  cleanup.push(() => sockets.forEach((s) => s.terminate()));
}

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe('a join pass', () => {
  it('is well formed only as minted: wrong sizes, extra parts, another version or a long text are none', () => {
    const text = mintJoinPass(secret, 'worker-α', 1_700_000_000_000);
    const pass = parseJoinPass(text)!;
    expect(pass).toMatchObject({ version: 'v1', workerId: 'worker-α', at: 1_700_000_000_000 });
    expect(passHoldsSecret(secret, pass)).toBe(true);
    expect(passHoldsSecret(otherSecret, pass)).toBe(false);
    const parts = text.split('.');
    const variants = [
      '',
      'v1',
      `v2.${parts.slice(1).join('.')}`,
      `${text}.extra`,
      parts.map((p, i) => (i === 3 ? p.slice(2) : p)).join('.'), // a short nonce
      parts.map((p, i) => (i === 4 ? `${p}AA` : p)).join('.'), // a long proof
      parts.map((p, i) => (i === 2 ? '-5' : p)).join('.'),
      parts.map((p, i) => (i === 2 ? '1e12' : p)).join('.'),
      parts.map((p, i) => (i === 1 ? '' : p)).join('.'), // no worker
      parts.map((p, i) => (i === 1 ? Buffer.from('x'.repeat(129)).toString('base64url') : p)).join('.'),
      'x'.repeat(600),
    ];
    for (const v of variants) expect(parseJoinPass(v), v).toBeUndefined();
    // Altered in any part, it no longer holds the secret.
    expect(passHoldsSecret(secret, { ...pass, workerId: 'worker-β' })).toBe(false);
    expect(passHoldsSecret(secret, { ...pass, at: pass.at + 1 })).toBe(false);
    expect(passHoldsSecret(secret, { ...pass, nonce: new Uint8Array(16) })).toBe(false);
  });

  it('counts once, near our clock; it lets a connection past the join-rate buckets, never past --max-connections', () => {
    const admission = new AdmissionControl(
      { maxConnections: 3, maxWorkers: 8, joinsPerSecond: 1, joinsPerSourcePerSecond: 1 },
      0,
    );
    const now = 1_700_000_000_000;
    const pass = parseJoinPass(mintJoinPass(secret, 'w', now))!;
    expect(admission.takePass(pass, now + 1000)).toEqual({ ok: true });
    expect(admission.takePass(pass, now + 2000)).toMatchObject({ ok: false, why: 'replayed' });
    const old = parseJoinPass(mintJoinPass(secret, 'w', now - 600_000))!;
    expect(admission.takePass(old, now)).toMatchObject({
      ok: false,
      why: 'stale',
      detail: expect.stringMatching(/600 s from ours/),
    });
    const ahead = parseJoinPass(mintJoinPass(secret, 'w', now + 600_000))!;
    expect(admission.takePass(ahead, now)).toMatchObject({ ok: false, why: 'stale' });
    expect(admission.admitConnection(0, 0, 'nat')).toEqual({ ok: true });
    expect(admission.admitConnection(1, 0, 'nat')).toMatchObject({ ok: false, reason: 'join_rate_limited' });
    expect(admission.admitConnection(1, 0, 'nat', true)).toEqual({ ok: true });
    expect(admission.admitConnection(3, 0, 'nat', true)).toMatchObject({
      ok: false,
      reason: 'too_many_connections',
    });
  });
});

describe('over ws, during a join flood from the same address', () => {
  it('a worker with a pass joins at once; one without is refused; a replayed, foreign or stale pass counts for nothing', async () => {
    const listener = await listenWs('127.0.0.1', 0);
    const { rejections, warnings, admitted } = poolOn(listener);
    await flood(listener.url, 12);
    await settle();
    const limited = rejections.byReason.join_rate_limited ?? 0;
    expect(limited).toBeGreaterThanOrEqual(10);

    // The honest worker behind the same address: its pass takes it through the empty buckets.
    const pass = mintJoinPass(secret, 'honest');
    expect(await handshake(await connectWs(listener.url, { joinPass: pass }), 'honest')).toBe(
      'authenticated',
    );
    expect(admitted).toEqual(['honest']);

    // Without a pass, the limits apply as to anyone.
    expect(await handshake(await connectWs(listener.url), 'no-pass')).toMatch(/more than 1 connections/);
    // The same pass again (recorded from the wire): no use twice.
    expect(await handshake(await connectWs(listener.url, { joinPass: pass }), 'honest')).toMatch(
      /more than 1 connections/,
    );
    expect(warnings.join('\n')).toMatch(/worker honest's join pass does not count: it was used before/);
    // Made with another secret, or long ago: no use either.
    const foreign = mintJoinPass(otherSecret, 'foreign');
    expect(await handshake(await connectWs(listener.url, { joinPass: foreign }), 'foreign')).toMatch(
      /more than 1 connections/,
    );
    const stale = mintJoinPass(secret, 'late', Date.now() - 10 * 60_000);
    expect(await handshake(await connectWs(listener.url, { joinPass: stale }), 'late')).toMatch(
      /more than 1 connections/,
    );
    expect(warnings.join('\n')).toMatch(
      /worker late's join pass does not count: its time is 600 s from ours/,
    );
    expect(admitted).toEqual(['honest']);
    expect(rejections.byReason.join_rate_limited).toBe(limited + 4);
  });

  it("a pass is for its worker: a hello in another's name is refused as auth_failed", async () => {
    const listener = await listenWs('127.0.0.1', 0);
    const { rejections, admitted } = poolOn(listener);
    const pass = mintJoinPass(secret, 'alice');
    expect(await handshake(await connectWs(listener.url, { joinPass: pass }), 'mallory')).toMatch(
      /hello from mallory on a join pass for alice/,
    );
    expect(admitted).toEqual([]);
    expect(rejections.byReason.auth_failed).toBe(1);
  });

  it('a pool without a secret cannot check a pass: the limits apply', async () => {
    const listener = await listenWs('127.0.0.1', 0);
    const { rejections, admitted } = poolOn(listener, { secret: undefined });
    await flood(listener.url, 6);
    await settle();
    const pass = mintJoinPass(secret, 'honest');
    expect(await handshake(await connectWs(listener.url, { joinPass: pass }), 'honest', undefined)).toMatch(
      /more than 1 connections/,
    );
    expect(admitted).toEqual([]);
    expect(rejections.byReason.join_rate_limited).toBeGreaterThanOrEqual(6);
  });
});

describe('over NATS, during a flood of join requests', () => {
  it('a worker with a pass joins; one without is refused', async () => {
    const server = await startNats('join-pass', []);
    const endpoint = { servers: [server.url], subject: 'passes' };
    const listener = await listenNats(endpoint);
    const { rejections, admitted } = poolOn(listener);
    // Join requests from one client, faster than the bucket refills: sessions nobody will serve.
    const nc = await natsConnect({ servers: server.url });
    cleanup.push(() => nc.close());
    for (let i = 0; i < 8; i++)
      await nc.request(
        'passes.join',
        new TextEncoder().encode(JSON.stringify({ worker: `flood-${i}`, session: nuid.next() })),
        { timeout: 2000 },
      );
    await settle();
    expect(rejections.byReason.join_rate_limited).toBeGreaterThanOrEqual(6);
    const withPass = await connectNats(endpoint, 'honest', { joinPass: mintJoinPass(secret, 'honest') });
    expect(await handshake(withPass, 'honest')).toBe('authenticated');
    const without = await connectNats(endpoint, 'other');
    expect(await handshake(without, 'other')).toMatch(/more than 1 connections per second/);
    expect(admitted).toEqual(['honest']);
  }, 30_000);
});
