/**
 * The NATS link against a real nats-server: sizes around max_payload, loss and resend, the weights broadcast,
 * auth errors.
 */
import { describe, expect, it } from 'vitest';
import { type NatsConnection, connect } from 'nats';
import { BroadcastPublisher } from '../../protocol/nats-broadcast.js';
import { NatsLink } from '../../protocol/nats-link.js';
import { connectNats, listenNats } from '../../protocol/nats-transport.js';
import { SharedSecret, newNonce } from '../../protocol/auth.js';
import { sessionKeys } from '../../protocol/sealing.js';
import type { Link } from '../../protocol/transport.js';
import { tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const smallPayload = { dir, text: `max_payload: ${64 * 1024}\n` };

const MAX_PAYLOAD = 64 * 1024;
const frame = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + 7) & 255);

/** Frames (and transport rejections) arriving on a link, awaited one by one. */
function inbox(link: Link) {
  const frames: Uint8Array[] = [];
  const rejected: string[] = [];
  const waiters: Array<() => void> = [];
  link.attach({
    frame: (b) => {
      frames.push(b);
      waiters.splice(0).forEach((w) => w());
    },
    close: () => {},
    rejected: (r) => rejected.push(r),
  });
  return {
    frames,
    rejected,
    async next(count: number) {
      while (frames.length < count) await new Promise<void>((r) => waiters.push(r));
      return frames;
    },
  };
}

const BROADCAST = 'lossy.weights';

/**
 * Two NatsLinks on their own connections to a real server with a 64 KiB max_payload; the sender's
 * connection never sends the messages `drop` picks (fault injection on a real connection).
 */
async function lossyPair(
  name: string,
  drop: (subject: string) => boolean,
  broadcast = false,
  dropFromReceiver: (subject: string) => boolean = () => false,
  /** Every message of the receiver's (its acks) reaches the server this much later: a slow link. */
  receiverDelayMs = 0,
) {
  const server = await startNats(name, [], {}, smallPayload);
  const nc = await connect({ servers: server.url });
  // What the sender put on the wire, by subject, and what it lost: proof that a loss and a resend happened.
  const sent = new Map<string, { messages: number; bytes: number }>();
  let dropped = 0;
  const lossy = (conn: NatsConnection, lose: (subject: string) => boolean, count: boolean, delayMs = 0) => {
    const publish = conn.publish.bind(conn);
    conn.publish = (subject, data, options) => {
      if (lose(subject)) {
        dropped++;
        return;
      }
      const s = sent.get(subject) ?? { messages: 0, bytes: 0 };
      if (count) sent.set(subject, { messages: s.messages + 1, bytes: s.bytes + (data?.byteLength ?? 0) });
      if (delayMs > 0) setTimeout(() => conn.isClosed() || publish(subject, data, options), delayMs);
      else publish(subject, data, options);
    };
  };
  lossy(nc, drop, true);
  const chunkBytes = 16 * 1024;
  const sender = new NatsLink({
    nc,
    sendSubject: 't.a',
    recvSubject: 't.b',
    peer: 'receiver',
    chunkBytes,
    broadcast: broadcast ? new BroadcastPublisher(nc, BROADCAST, chunkBytes) : undefined,
  });
  const receiverNc = await connect({ servers: server.url });
  lossy(receiverNc, dropFromReceiver, false, receiverDelayMs);
  const receiver = new NatsLink({
    nc: receiverNc,
    sendSubject: 't.b',
    recvSubject: 't.a',
    peer: 'sender',
    chunkBytes,
    broadcastSubject: broadcast ? BROADCAST : undefined,
  });
  const got = inbox(receiver);
  inbox(sender);
  await receiverNc.flush();
  return {
    sender,
    receiver,
    got,
    sent,
    dropped: () => dropped,
    async stop() {
      sender.close('done');
      receiver.close('done');
      await Promise.all([nc.close(), receiverNc.close()]);
      await server.stop();
    },
  };
}

describe('NATS transport', () => {
  it('1 byte, exactly max_payload, one byte more, and 14 MB round-trip through a server with a 64 KiB max_payload', async () => {
    const server = await startNats('small-payload', [], {}, smallPayload);
    const endpoint = { servers: [server.url], subject: 'chunks' };
    const listener = await listenNats(endpoint);
    const accepted = new Promise<Link>((resolve) => listener.onLink(resolve));
    const worker = await connectNats(endpoint, 'w');
    const coordinatorSide = inbox(await accepted);
    const sizes = [1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 14_000_000];
    for (const n of sizes) worker.send(frame(n));
    const got = await coordinatorSide.next(sizes.length);
    expect(got.map((f) => f.byteLength)).toEqual(sizes);
    for (const f of got) expect(Buffer.from(f).equals(Buffer.from(frame(f.byteLength)))).toBe(true);
    expect(got.every((f) => f.byteOffset % 4 === 0)).toBe(true);
    expect(coordinatorSide.rejected).toEqual([]);
    worker.close('done');
    await listener.close();
    await server.stop();
  });

  it('a lost chunk is detected and counted, and the frame arrives once, resent', async () => {
    let published = 0;
    // the third message published is never sent
    const pair = await lossyPair('lossy', () => ++published === 3);
    const { sender, got, sent } = pair;
    sender.send(frame(100_000));
    sender.send(frame(10));
    await got.next(2);
    expect(pair.dropped()).toBe(1);
    // The 100 kB frame crossed twice (the first time short of its lost 16 KiB chunk): it was resent whole.
    expect(sent.get('t.a')!.bytes).toBeGreaterThanOrEqual(2 * 100_000 - 16 * 1024);
    // Past the 2 s resend timer (and its first doubling): still each frame once.
    await new Promise((r) => setTimeout(r, 4500));
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000, 10]);
    expect(Buffer.from(got.frames[0]).equals(Buffer.from(frame(100_000)))).toBe(true);
    expect(got.rejected).toContain('lost_chunk');
    await pair.stop();
  });

  it('sealed, a lost chunk is still resent and delivered once: resends go out under new counters', async () => {
    let published = 0;
    const pair = await lossyPair('lossy-sealed', () => ++published === 4);
    const secret = new SharedSecret('nats-link-sealing-secret-1');
    const h = { workerNonce: newNonce(), coordinatorNonce: newNonce(), workerId: 'w' };
    pair.sender.secure(sessionKeys(secret, h, 'worker', 'growing'));
    pair.receiver.secure(sessionKeys(secret, h, 'coordinator', 'growing'));
    pair.sender.send(frame(100_000));
    pair.sender.send(frame(10));
    await pair.got.next(2);
    expect(pair.dropped()).toBe(1);
    expect(pair.got.frames.map((f) => f.byteLength)).toEqual([100_000, 10]);
    expect(Buffer.from(pair.got.frames[0]).equals(Buffer.from(frame(100_000)))).toBe(true);
    expect(pair.got.rejected).toContain('lost_chunk');
    expect(pair.got.rejected).not.toContain('bad_seal');
    expect(pair.got.rejected).not.toContain('replayed');
    await pair.stop();
  });

  it('before admission a link assembles no frame past its limit: a claim of 1 MB is refused at its first chunk', async () => {
    const pair = await lossyPair('pre-auth-limit', () => false);
    pair.receiver.limitFrames(16 * 1024);
    pair.sender.send(frame(1_000_000));
    await until(
      'the refusal',
      async () => (pair.got.rejected.includes('corrupt_chunk') ? true : undefined),
      10_000,
    );
    expect(pair.got.frames).toEqual([]);
    // Admitted: the limit rises, and the resent frame arrives whole.
    pair.receiver.limitFrames(64 * 1024 * 1024);
    await pair.got.next(1);
    expect(pair.got.frames[0].byteLength).toBe(1_000_000);
    await pair.stop();
  });

  it('a lost acknowledgement: the sender resends after 2 s, and the repeat is dropped, not delivered twice', async () => {
    let receiverMessages = 0;
    const pair = await lossyPair(
      'lost-ack',
      () => false,
      false,
      (subject) => subject === 't.b' && ++receiverMessages <= 3,
    );
    const { sender, got, sent } = pair;
    sender.send(frame(100_000));
    await got.next(1);
    await new Promise((r) => setTimeout(r, 4500));
    expect(pair.dropped()).toBeGreaterThan(0);
    expect(sent.get('t.a')!.bytes).toBeGreaterThanOrEqual(2 * 100_000); // resent whole, unacknowledged
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000]);
    expect(got.rejected).toContain('duplicate_chunk');
    await pair.stop();
  });

  it('a slow link (acks 2.5 s late): one resend at the first guess, then the timeout has learnt the round trip and none', async () => {
    const pair = await lossyPair(
      'slow-acks',
      () => false,
      false,
      () => false,
      2500,
    );
    const { sender, got, sent } = pair;
    const size = 50_000;
    sender.send(frame(size));
    await got.next(1);
    // Past the first guess (2 s): frame 1 was resent once, and its ack (2.5 s) has come.
    await new Promise((r) => setTimeout(r, 3000));
    expect(sent.get('t.a')!.bytes).toBe(2 * size);
    for (let i = 0; i < 3; i++) sender.send(frame(size));
    await got.next(4);
    // Their acks come 2.5 s after them: within the backed-off timeout (4 s), and they teach it the round trip.
    await new Promise((r) => setTimeout(r, 3000));
    sender.send(frame(size));
    await got.next(5);
    await new Promise((r) => setTimeout(r, 3500));
    expect(sent.get('t.a')!.bytes).toBe(6 * size);
    expect(got.frames.map((f) => f.byteLength)).toEqual([size, size, size, size, size]);
    await pair.stop();
  });

  it('a shared frame (the weights) crosses the server once for all workers, each in its place in its link; a late joiner gets it in full', async () => {
    const server = await startNats('broadcast', []);
    const endpoint = { servers: [server.url], subject: 'bc' };
    const listener = await listenNats(endpoint);
    const accepted: Link[] = [];
    listener.onLink((link) => {
      inbox(link);
      accepted.push(link);
    });
    // What crosses the server, by subject: a spy of our own on a real connection.
    const spy = await connect({ servers: server.url });
    const bytesOn = { weights: 0, down: 0 };
    spy.subscribe('bc.weights', { callback: (_, m) => (bytesOn.weights += m.data.byteLength) });
    spy.subscribe('bc.s.*.down', { callback: (_, m) => (bytesOn.down += m.data.byteLength) });
    await spy.flush();
    const early = [inbox(await connectNats(endpoint, 'a')), inbox(await connectNats(endpoint, 'b'))];
    expect(accepted).toHaveLength(2); // a join is answered after its link is handed over
    const weights = frame(3_000_000);
    const sendAround = (link: Link) => {
      link.send(frame(10));
      link.sendShared!(weights);
      link.send(frame(20));
    };
    accepted.forEach(sendAround);
    for (const w of early) {
      const got = await w.next(3);
      expect(got.map((f) => f.byteLength)).toEqual([10, weights.byteLength, 20]);
      expect(Buffer.from(got[1]).equals(Buffer.from(weights))).toBe(true);
      expect(w.rejected).toEqual([]);
    }
    await spy.flush();
    expect(bytesOn.weights).toBe(weights.byteLength); // once, not once per worker
    expect(bytesOn.down).toBeLessThan(10_000);

    // Joined after the broadcast: the same frame offered again is not republished; the link resends it in
    // full.
    const late = inbox(await connectNats(endpoint, 'c'));
    sendAround(accepted[2]);
    const got = await late.next(3);
    expect(got.map((f) => f.byteLength)).toEqual([10, weights.byteLength, 20]);
    expect(Buffer.from(got[1]).equals(Buffer.from(weights))).toBe(true);
    expect(late.rejected).toEqual([]);
    await spy.flush();
    expect(bytesOn.weights).toBe(weights.byteLength);
    expect(bytesOn.down).toBeGreaterThan(weights.byteLength);
    await spy.close();
    await listener.close();
    await server.stop();
  });

  it('a lost broadcast chunk costs a resend in full over the session, never a torn or missing frame', async () => {
    let broadcastChunks = 0;
    // The second chunk of the first broadcast is lost.
    const pair = await lossyPair(
      'lossy-broadcast',
      (subject) => subject === BROADCAST && ++broadcastChunks === 2,
      true,
    );
    const { sender, got, sent } = pair;
    const first = frame(100_000);
    const second = frame(50_000).reverse();
    sender.sendShared(first);
    sender.send(frame(10));
    sender.sendShared(second);
    await got.next(3);
    expect(pair.dropped()).toBe(1);
    // Each broadcast crossed its subject once; the first came again in full over the session.
    expect(sent.get(BROADCAST)!.bytes).toBeGreaterThanOrEqual(150_000 - 16 * 1024);
    expect(sent.get(BROADCAST)!.bytes).toBeLessThan(150_000 + 1024);
    expect(sent.get('t.a')!.bytes).toBeGreaterThan(100_000);
    await new Promise((r) => setTimeout(r, 4500));
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000, 10, 50_000]);
    expect(Buffer.from(got.frames[0]).equals(Buffer.from(first))).toBe(true);
    expect(Buffer.from(got.frames[2]).equals(Buffer.from(second))).toBe(true);
    expect(got.rejected).toEqual([]);
    await pair.stop();
  });

  it('an unreachable server, wrong credentials and a missing coordinator each get a clear error', async () => {
    const server = await startNats('auth', ['--user', 'gradfleet', '--pass', 's3cret']);
    const refused = await startNats('gone', []);
    await refused.stop();
    await expect(connectNats({ servers: [refused.url], subject: 'x' }, 'w')).rejects.toThrow(
      /cannot (reach|connect to) NATS at nats:\/\/127\.0\.0\.1:\d+/,
    );
    await expect(
      connectNats({ servers: [server.url], subject: 'x', user: 'gradfleet', pass: 'wrong' }, 'w'),
    ).rejects.toThrow(/refused the credentials/);
    await expect(
      connectNats({ servers: [server.url], subject: 'x', user: 'gradfleet', pass: 's3cret' }, 'w'),
    ).rejects.toThrow(/no coordinator answers on x\.join/);
    await server.stop();
  });
});
