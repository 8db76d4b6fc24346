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

/** The sender's side of a lossy pair, beyond which messages it loses. */
interface PairOptions {
  /** Every message of the receiver's (its acks) reaches the server this much later: a slow link. */
  receiverDelayMs?: number;
  /** The sender's messages leave one after another at this rate, queued in between: a narrow link. */
  senderBytesPerS?: number;
  retransmitMs?: number;
  windowBytes?: number;
}

/**
 * Two NatsLinks on their own connections to a real server with a 64 KiB max_payload; the sender's
 * connection never sends the messages `drop` picks (fault injection on a real connection).
 */
async function lossyPair(
  name: string,
  /** Given the subject and, for a chunk of the link's stream, its number (Gf-Chunk). */
  drop: (subject: string, chunk: number) => boolean,
  broadcast = false,
  dropFromReceiver: (subject: string) => boolean = () => false,
  options: PairOptions = {},
) {
  const server = await startNats(name, [], {}, smallPayload);
  const nc = await connect({ servers: server.url });
  // What the sender put on the wire, by subject, and what it lost: proof that a loss and a resend happened.
  const sent = new Map<string, { messages: number; bytes: number }>();
  let dropped = 0;
  /** The chunk numbers (Gf-Chunk) the sender's connection sent, in order, and those it lost. */
  const chunks = { sent: [] as number[], lost: [] as number[] };
  /** Bytes waiting in the narrow link, and the most ever. */
  const queue = { bytes: 0, most: 0, items: [] as { bytes: number; go: () => void }[] };
  // One message at a time, each after its time on the link: strictly in order, as a link is.
  const drain = (bytesPerS: number) => {
    const head = queue.items[0];
    if (!head) return;
    setTimeout(
      () => {
        queue.items.shift();
        queue.bytes -= head.bytes;
        head.go();
        drain(bytesPerS);
      },
      (1000 * head.bytes) / bytesPerS,
    );
  };
  const lossy = (
    conn: NatsConnection,
    lose: (subject: string, chunk: number) => boolean,
    count: boolean,
    delayMs = 0,
    bytesPerS = 0,
  ) => {
    const publish = conn.publish.bind(conn);
    conn.publish = (subject, data, publishOptions) => {
      const chunk = Number(publishOptions?.headers?.get('Gf-Chunk') || Number.NaN);
      if (lose(subject, chunk)) {
        dropped++;
        if (count && chunk > 0) chunks.lost.push(chunk);
        return;
      }
      const bytes = data?.byteLength ?? 0;
      const s = sent.get(subject) ?? { messages: 0, bytes: 0 };
      if (count) {
        sent.set(subject, { messages: s.messages + 1, bytes: s.bytes + bytes });
        if (chunk > 0) chunks.sent.push(chunk);
      }
      const go = () => conn.isClosed() || publish(subject, data, publishOptions);
      if (bytesPerS > 0) {
        queue.items.push({ bytes, go });
        queue.bytes += bytes;
        queue.most = Math.max(queue.most, queue.bytes);
        if (queue.items.length === 1) drain(bytesPerS);
      } else if (delayMs > 0) setTimeout(go, delayMs);
      else go();
    };
  };
  lossy(nc, drop, true, 0, options.senderBytesPerS);
  const chunkBytes = 16 * 1024;
  const sender = new NatsLink({
    nc,
    sendSubject: 't.a',
    recvSubject: 't.b',
    peer: 'receiver',
    chunkBytes,
    retransmitMs: options.retransmitMs,
    windowBytes: options.windowBytes,
    broadcast: broadcast ? new BroadcastPublisher(nc, BROADCAST, chunkBytes) : undefined,
  });
  const receiverNc = await connect({ servers: server.url });
  lossy(receiverNc, dropFromReceiver, false, options.receiverDelayMs);
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
    chunks,
    queue,
    dropped: () => dropped,
    async stop() {
      sender.close('done');
      receiver.close('done');
      await Promise.all([nc.close(), receiverNc.close()]);
      await server.stop();
    },
  };
}

/** A pair that loses nothing: its links are only slow (PairOptions). */
const losslessPair = (name: string, options: PairOptions) =>
  lossyPair(
    name,
    () => false,
    false,
    () => false,
    options,
  );

/** Chunk numbers sent more than once, each once, in order. */
const repeated = (sent: number[]) =>
  [...new Set(sent.filter((n, i) => sent.indexOf(n) !== i))].sort((a, b) => a - b);

const sameFrame = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

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

  it('chunks lost: exactly the lost chunks are resent, not their frames, and each frame arrives once', async () => {
    const lose = new Set([2, 4]);
    // Chunks 2 and 4 of the 100 kB frame's 7 are never sent, the first time.
    const pair = await lossyPair('lossy', (_, chunk) => lose.delete(chunk));
    const { sender, got, chunks } = pair;
    sender.send(frame(100_000));
    sender.send(frame(10));
    await got.next(2);
    expect(pair.dropped()).toBe(2);
    expect(chunks.lost).toEqual([2, 4]);
    // Sent twice (lost, then resent): those two, no other.
    expect(repeated([...chunks.sent, ...chunks.lost])).toEqual([2, 4]);
    // Past the 2 s first guess and its doubling: nothing more was sent, and each frame came once.
    await new Promise((r) => setTimeout(r, 4500));
    expect([...chunks.sent].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000, 10]);
    expect(sameFrame(got.frames[0], frame(100_000))).toBe(true);
    expect(got.rejected).toContain('lost_chunk');
    expect(got.rejected).not.toContain('duplicate_chunk');
    await pair.stop();
  });

  it('no resend while acks flow: a 1 MB frame through a 1 MB/s link takes 1 s, five 200 ms timeouts, and goes once', async () => {
    const pair = await losslessPair('acks-flow', {
      senderBytesPerS: 1_000_000,
      retransmitMs: 200,
    });
    const { sender, got, chunks } = pair;
    sender.send(frame(1_000_000));
    sender.send(frame(10));
    await got.next(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(repeated(chunks.sent)).toEqual([]);
    expect(pair.sent.get('t.a')!.bytes).toBe(1_000_010);
    expect(sameFrame(got.frames[0], frame(1_000_000))).toBe(true);
    expect(got.rejected).toEqual([]);
    await pair.stop();
  });

  it('a 10× overload (4 MB at once into a 2 MB/s link: 2 s of it, 10 × the 200 ms floor Linux uses, 16 × the window) is not multiplied: each chunk once, the queue within the window', async () => {
    const windowBytes = 256 * 1024;
    const pair = await losslessPair('overload', {
      senderBytesPerS: 2_000_000,
      // A first guess of 500 ms, well below the 2 s the burst takes to cross: only acks keep it from firing.
      retransmitMs: 500,
      windowBytes,
    });
    const { sender, got, chunks, queue } = pair;
    for (let i = 0; i < 20; i++) sender.send(frame(200_000));
    await got.next(20);
    await new Promise((r) => setTimeout(r, 500));
    expect(pair.sent.get('t.a')!.bytes).toBe(20 * 200_000);
    expect(repeated(chunks.sent)).toEqual([]);
    expect(chunks.sent.length).toBe(20 * Math.ceil(200_000 / (16 * 1024)));
    // The window, not the sender's burst, sets what waits in the link (and at the server).
    expect(queue.most).toBeLessThanOrEqual(windowBytes + 16 * 1024 + 1024);
    expect(got.frames.every((f) => sameFrame(f, frame(200_000)))).toBe(true);
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

  it('lost acknowledgements: after the timeout one chunk is resent, the repeat is dropped, the frame delivered once', async () => {
    const start = Date.now();
    // Everything the receiver sends in its first 2.5 s is lost: past the sender's first guess (2 s).
    const pair = await lossyPair(
      'lost-ack',
      () => false,
      false,
      (subject) => subject === 't.b' && Date.now() - start < 2500,
    );
    const { sender, got, chunks } = pair;
    sender.send(frame(100_000));
    await got.next(1);
    await new Promise((r) => setTimeout(r, 4500));
    expect(pair.dropped()).toBeGreaterThan(0);
    // A timeout resends the earliest chunk out only: its ack (or the original's) covers all seven.
    expect(repeated(chunks.sent)).toEqual([1]);
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000]);
    expect(got.rejected).toContain('duplicate_chunk');
    await pair.stop();
  });

  it('the timeout adapts to a slow link: with 200 ms more on every ack, one resend at a first guess below it, then none', async () => {
    const pair = await losslessPair('slow-acks', {
      receiverDelayMs: 200,
      retransmitMs: 150,
    });
    const { sender, got, chunks } = pair;
    // One frame at a time, each alone on the link: nothing but the timeout keeps it from being resent.
    const count = 12;
    for (let i = 0; i < count; i++) {
      sender.send(frame(20_000 + i));
      await new Promise((r) => setTimeout(r, 300));
    }
    await got.next(count);
    await new Promise((r) => setTimeout(r, 1000));
    // The first guess (150 ms) fires once, on the first chunk; every later round trip is measured and covered.
    expect(repeated(chunks.sent)).toEqual([1]);
    expect(got.frames.map((f) => f.byteLength)).toEqual(Array.from({ length: count }, (_, i) => 20_000 + i));
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

  it('a lost broadcast chunk: the worker asks for that chunk only, over its session, never a torn or missing frame', async () => {
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
    // Each broadcast crossed its subject once; over the session came the one missing chunk (16 KiB) and the
    // 10-byte frame, not the first frame in full.
    expect(sent.get(BROADCAST)!.bytes).toBeGreaterThanOrEqual(150_000 - 16 * 1024);
    expect(sent.get(BROADCAST)!.bytes).toBeLessThan(150_000 + 1024);
    expect(sent.get('t.a')!.bytes).toBe(16 * 1024 + 10);
    await new Promise((r) => setTimeout(r, 4500));
    expect(sent.get('t.a')!.bytes).toBe(16 * 1024 + 10);
    expect(got.frames.map((f) => f.byteLength)).toEqual([100_000, 10, 50_000]);
    expect(sameFrame(got.frames[0], first)).toBe(true);
    expect(sameFrame(got.frames[2], second)).toBe(true);
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
