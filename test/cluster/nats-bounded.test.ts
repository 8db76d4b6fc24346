/**
 * A coordinator's limits before admission over NATS, on a real nats-server, as bounded-resources.test.ts
 * checks them over ws: every message a peer not yet admitted sends is charged as it arrives (before any
 * frame is assembled) against its own 16 KiB and the shared --max-preauth-kb, and one client cannot
 * join faster than its own bucket (--max-joins-per-source-per-s: its reply inbox names it) while
 * another client joins; a worker still trains. A client that picks a new reply inbox for each join
 * is a new source each time (the per-client bucket cannot tell): the shared --max-joins-per-s still
 * holds it.
 */
import { type NatsConnection, connect, nuid } from 'nats';
import { describe, expect, it } from 'vitest';
import { chunkFrame } from '../../protocol/chunking.js';
import { chunkHeaders } from '../../protocol/nats-chunk-headers.js';
import { type Started, expectOk, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { startNats } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

const dir = tempDir();
const data = smallMnist(dir, 300, 100);
const SUBJECT = 'bounded';

function coordinator(url: string, out: string, limits: string[]): Started {
  return start([
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
    '--transport',
    'nats',
    '--nats-url',
    url,
    '--nats-subject',
    SUBJECT,
    '--no-metrics',
    '--json',
    '--out',
    out,
    ...limits,
  ]);
}

interface Session {
  session: string;
  /** Why the coordinator closed it (its `close` controls' Gf-Reason), in order. */
  closes: string[];
}

/** Listens on a session's `down` subject, as a worker does before it asks to join, for `close` controls. */
function watchDown(nc: NatsConnection, session: string): Session {
  const s: Session = { session, closes: [] };
  nc.subscribe(`${SUBJECT}.s.${session}.down`, {
    callback: (_err, msg) => {
      if (msg.headers?.get('Gf-Ctl') === 'close') s.closes.push(msg.headers.get('Gf-Reason'));
    },
  });
  return s;
}

/** Joins as nats.js does (`request`: the reply goes to this connection's own inbox), and nothing more. */
async function join(nc: NatsConnection, worker: string): Promise<Session> {
  const s = watchDown(nc, nuid.next());
  await nc.flush();
  const reply = await nc.request(
    `${SUBJECT}.join`,
    new TextEncoder().encode(JSON.stringify({ worker, session: s.session })),
    { timeout: 5000 },
  );
  expect(JSON.parse(new TextDecoder().decode(reply.data))).toEqual({ session: s.session });
  // The coordinator closes a refused link before it answers; a round trip to the server brings the close.
  await nc.flush();
  return s;
}

/**
 * Chunks 0 and 1 of a 16 KiB frame of three 6 KiB chunks: 12 KiB that never make a frame, so only a charge
 * per message sees them.
 */
function sendPartialFrame(nc: NatsConnection, s: Session): void {
  const chunks = chunkFrame(1, new Uint8Array(16 * 1024).fill(7), 6 * 1024);
  expect(chunks).toHaveLength(3);
  for (const { info, bytes } of chunks.slice(0, 2))
    nc.publish(`${SUBJECT}.s.${s.session}.up`, bytes, { headers: chunkHeaders(info) });
}

const perSourceRefusal =
  /^more than 3 connections per second from (_INBOX\.\w+) \(--max-joins-per-source-per-s\)$/;

describe('before admission, over NATS', () => {
  it("each message is charged as it arrives: past the shared budget a peer is dropped, past its own 16 KiB too; one client's joins are held to its bucket, another's are not; a worker still trains", async () => {
    const server = await startNats('bounded', []);
    const c = coordinator(server.url, `${dir}/run`, [
      '--max-preauth-kb',
      '20',
      '--max-joins-per-source-per-s',
      '3',
    ]);
    await c.waitFor(/coordinator listening on/);
    const [a, b, flooder, other] = await Promise.all(
      ['a', 'b', 'flooder', 'other'].map((name) => connect({ servers: server.url, name })),
    );

    // A and B, each from its own client, join and send 12 KiB of a frame they never finish: 24 KiB together.
    const first = await join(a, 'a');
    sendPartialFrame(a, first);
    await a.flush();
    const second = await join(b, 'b');
    sendPartialFrame(b, second);
    await b.flush();
    await until('the close of B', async () => second.closes.length > 0, 10_000);
    expect(second.closes).toEqual([
      'peers not yet admitted have sent 24576 bytes together (at most 20480: --max-preauth-kb)',
    ]);
    const dropped = JSON.parse(await c.waitFor(/"msg":"dropped nats b \(session \w+\) before admission/)) as {
      reason: string;
    };
    expect(dropped.reason).toBe('preauth_budget');
    // A, within both, is held open: its 12 KiB are all that is charged now. 5 KiB more pass its own 16 KiB.
    await a.flush();
    expect(first.closes).toEqual([]);
    a.publish(`${SUBJECT}.s.${first.session}.up`, new Uint8Array(5 * 1024));
    await until('the close of A', async () => first.closes.length > 0, 10_000);
    expect(first.closes).toEqual(['it sent 17408 bytes before authenticating (at most 16384)']);

    // Six joins at once from one client, whose bucket holds 3: the rest are refused, naming its inbox.
    const flood = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => join(flooder, `flood${i}`)));
    const refused = flood.filter((s) => s.closes.length > 0);
    console.log(
      `nats-bounded: ${refused.length} of 6 joins from one client refused: ${refused[0]?.closes[0]}`,
    );
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(refused.length).toBeLessThanOrEqual(3);
    const sources = new Set(refused.map((s) => perSourceRefusal.exec(s.closes[0])?.[1]));
    expect(sources.size).toBe(1);
    expect([...sources][0]).toMatch(/^_INBOX\.\w+$/);
    // Another client, in the same second: a bucket of its own.
    const admitted = await join(other, 'other');
    expect(admitted.closes).toEqual([]);
    expect(c.log()).not.toMatch(/refused a connection from nats other/);

    await new Promise((resolve) => setTimeout(resolve, 1500)); // the bucket refills
    start([
      'worker',
      '--transport',
      'nats',
      '--nats-url',
      server.url,
      '--nats-subject',
      SUBJECT,
      '--backend',
      'wasm',
      '--id',
      'honest',
      '--data-dir',
      dir,
    ]);
    const summary = expectOk(await c.done);
    expect(summary.steps).toBe(3);
    expect(summary.rejected_frames).toMatchObject({
      preauth_budget: 1,
      preauth_too_large: 1,
      join_rate_limited: refused.length,
    });
    await Promise.all([a, b, flooder, other].map((nc) => nc.close()));
    await server.stop();
  }, 60_000);

  it('a client that picks a new reply inbox for each join (a new source each time) still cannot join faster than --max-joins-per-s', async () => {
    const server = await startNats('inboxes', []);
    const c = coordinator(server.url, `${dir}/inboxes`, [
      '--max-joins-per-s',
      '4',
      '--max-joins-per-source-per-s',
      '1',
    ]);
    await c.waitFor(/coordinator listening on/);
    const nc = await connect({ servers: server.url, name: 'many-inboxes' });
    // Eight joins at once, each with a reply subject of its own making (a server without permissions lets a
    // client name any).
    const sessions = Array.from({ length: 8 }, () => watchDown(nc, nuid.next()));
    let answered = 0;
    for (const i of sessions.keys()) nc.subscribe(`_INBOX.spoof${i}.1`, { callback: () => answered++ });
    await nc.flush();
    for (const [i, s] of sessions.entries())
      nc.publish(
        `${SUBJECT}.join`,
        new TextEncoder().encode(JSON.stringify({ worker: `spoof${i}`, session: s.session })),
        { reply: `_INBOX.spoof${i}.1` },
      );
    await until('eight answers', async () => {
      await nc.flush();
      return answered === 8;
    });
    await nc.flush();
    const refused = sessions.filter((s) => s.closes.length > 0);
    const reasons = new Set(refused.map((s) => s.closes[0]));
    console.log(`nats-bounded: ${8 - refused.length} of 8 admitted; refused: ${[...reasons].join('; ')}`);
    // Four tokens, and at most a fraction of one more refilled while eight requests arrive.
    expect(8 - refused.length).toBeGreaterThanOrEqual(1);
    expect(8 - refused.length).toBeLessThanOrEqual(5);
    for (const reason of reasons) expect(reason).toMatch(/^more than \d connections per second/);
    c.child.kill('SIGINT');
    await c.done;
    await nc.close();
    await server.stop();
  }, 60_000);
});
