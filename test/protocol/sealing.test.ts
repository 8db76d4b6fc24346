/** Sealing (protocol/sealing.ts): what opens, and why everything else does not. */
import { describe, expect, it } from 'vitest';
import { SharedSecret, newNonce } from '../../protocol/auth.js';
import { chunkFrame } from '../../protocol/chunking.js';
import { BROADCAST_ID_HEADER, BroadcastCache } from '../../protocol/nats-broadcast.js';
import { chunkHeaders } from '../../protocol/nats-chunk-headers.js';
import { BroadcastSeal, type SealFailure, sessionKeys } from '../../protocol/sealing.js';

const secret = new SharedSecret('sealing-test-secret-4a8d1f');
const handshake = () => ({ workerNonce: newNonce(), coordinatorNonce: newNonce(), workerId: 'w1' });
const pair = (order: 'strict' | 'growing' = 'strict', h = handshake(), s = secret) => ({
  worker: sessionKeys(s, h, 'worker', order),
  coordinator: sessionKeys(s, h, 'coordinator', order),
});
const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 5) & 255);

describe('sealed frames', () => {
  it('open to the same bytes at the other end, in both directions, and hide them', () => {
    const { worker, coordinator } = pair();
    const frame = bytes(100_003);
    const sealed = worker.send.seal(frame);
    expect(Buffer.from(sealed).indexOf(Buffer.from(frame.subarray(0, 64)))).toBe(-1);
    const opened = coordinator.receive.open(sealed);
    expect(opened.ok && Buffer.from(opened.plaintext).equals(Buffer.from(frame))).toBe(true);
    const back = worker.receive.open(coordinator.send.seal(frame));
    expect(back.ok).toBe(true);
  });

  it('an altered byte, another session, another direction, another secret: bad_seal', () => {
    const { worker, coordinator } = pair();
    const sealed = worker.send.seal(bytes(64));
    for (const at of [0, 5, 20, sealed.length - 1]) {
      const altered = Uint8Array.from(sealed);
      altered[at] ^= 1;
      expect(pair().coordinator.receive.open(altered)).toMatchObject({ ok: false });
      expect(coordinator.receive.open(altered), `byte ${at}`).toMatchObject({
        ok: false,
        reason: 'bad_seal',
      });
    }
    // moved to another session
    expect(pair().coordinator.receive.open(sealed)).toMatchObject({ ok: false, reason: 'bad_seal' });
    expect(worker.receive.open(sealed)).toMatchObject({ ok: false, reason: 'bad_seal' }); // reflected back
    const h = handshake();
    const other = pair('strict', h, new SharedSecret('another-secret-entirely-99'));
    expect(pair('strict', h).coordinator.receive.open(other.worker.send.seal(bytes(8)))).toMatchObject({
      ok: false,
      reason: 'bad_seal',
    });
    // not sealed at all
    expect(coordinator.receive.open(bytes(64))).toMatchObject({ ok: false, reason: 'bad_seal' });
    // the genuine one still opens after all that
    expect(coordinator.receive.open(sealed)).toMatchObject({ ok: true });
  });

  it('a replay or a reorder is `replayed`; a stream that may lose messages (NATS) accepts gaps but never goes back', () => {
    const strict = pair();
    const [a, b, c] = [1, 2, 3].map((n) => strict.worker.send.seal(bytes(n)));
    expect(strict.coordinator.receive.open(a).ok).toBe(true);
    expect(strict.coordinator.receive.open(c)).toMatchObject({ ok: false, reason: 'replayed' });
    expect(strict.coordinator.receive.open(b).ok).toBe(true);
    expect(strict.coordinator.receive.open(a)).toMatchObject({ ok: false, reason: 'replayed' });
    const growing = pair('growing');
    const [x, , z] = [1, 2, 3].map((n) => growing.worker.send.seal(bytes(n)));
    expect(growing.coordinator.receive.open(z).ok).toBe(true);
    expect(growing.coordinator.receive.open(x)).toMatchObject({ ok: false, reason: 'replayed' });
  });

  it('an exact replay of the newest message (the counter last accepted) is `replayed`, in either order', () => {
    for (const order of ['strict', 'growing'] as const) {
      const { worker, coordinator } = pair(order);
      const [first, newest] = [1, 2].map((n) => worker.send.seal(bytes(n)));
      expect(coordinator.receive.open(first).ok, order).toBe(true);
      expect(coordinator.receive.open(newest).ok, order).toBe(true);
      expect(coordinator.receive.open(newest), order).toMatchObject({
        ok: false,
        reason: 'replayed',
        detail: 'message 2 arrived after message 2',
      });
      // The stream goes on: the next genuine message still opens.
      expect(coordinator.receive.open(worker.send.seal(bytes(3))).ok, order).toBe(true);
    }
  });

  it('broadcasts open only under their publisher and step', () => {
    const seal = new BroadcastSeal(secret);
    const frame = bytes(1000);
    const sealed = seal.seal('pub-1', 7, frame);
    const worker = new BroadcastSeal(secret);
    expect(worker.open('pub-1', 7, sealed).ok).toBe(true);
    expect(worker.open('pub-1', 8, sealed)).toMatchObject({ ok: false, reason: 'replayed' });
    expect(worker.open('pub-2', 7, sealed)).toMatchObject({ ok: false, reason: 'bad_seal' });
    expect(
      new BroadcastSeal(new SharedSecret('not-the-run-secret-123')).open('pub-1', 7, sealed),
    ).toMatchObject({ ok: false, reason: 'bad_seal' });
  });
});

describe('the NATS weights broadcast, sealed (nats-broadcast.ts BroadcastCache)', () => {
  /** A worker's cache of one publisher's broadcasts, and what it rejected. */
  const cache = () => {
    const rejected: Array<{ reason: SealFailure; detail: string }> = [];
    const c = new BroadcastCache();
    c.sealWith(new BroadcastSeal(secret), (reason, detail) => rejected.push({ reason, detail }));
    return { c, rejected };
  };
  const publisher = new BroadcastSeal(secret);
  /** Broadcast `seq` of publisher `pub-1` as it travels: sealed, in chunks with their headers. */
  const broadcast = (seq: number, frame: Uint8Array) =>
    chunkFrame(seq, publisher.seal('pub-1', seq, frame), 1024).map(({ info, bytes }) => {
      const h = chunkHeaders(info);
      h.set(BROADCAST_ID_HEADER, 'pub-1');
      return { h, bytes, ref: { id: 'pub-1', seq, length: info.length, crc: info.crc } };
    });
  const deliver = (c: BroadcastCache, chunks: ReturnType<typeof broadcast>) => {
    for (const { h, bytes } of chunks) c.add(h, bytes);
  };

  it('the newest broadcast sent again whole is `replayed`, and so is an older one; the genuine one is kept', () => {
    const { c, rejected } = cache();
    const [one, two] = [1, 2].map((seq) => broadcast(seq, bytes(3000 + seq)));
    expect(two.length).toBeGreaterThan(1);
    deliver(c, one);
    deliver(c, two);
    expect(rejected).toEqual([]);
    deliver(c, two); // the newest, again
    expect(rejected).toEqual([{ reason: 'replayed', detail: 'broadcast 2 of pub-1 arrived after 2' }]);
    deliver(c, one); // an older one
    expect(rejected.map((r) => r.reason)).toEqual(['replayed', 'replayed']);
    expect(Buffer.from(c.take(two[0].ref)!).equals(Buffer.from(bytes(3002)))).toBe(true);
    // A later broadcast still opens.
    const three = broadcast(3, bytes(10));
    deliver(c, three);
    expect(rejected).toHaveLength(2);
    expect(c.take(three[0].ref)).toBeDefined();
  });
});
