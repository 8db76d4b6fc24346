/**
 * A NATS link's flow control and loss recovery without sockets: the send window (protocol/send-window.ts),
 * the receive side and the ack's ranges (protocol/chunk-acks.ts), and the two driven against each other over
 * a simulated lossy, ordered pipe.
 */
import { describe, expect, it } from 'vitest';
import { MAX_ACK_RANGES, ReceiveWindow, formatRanges, parseRanges } from '../../protocol/chunk-acks.js';
import { SendWindow } from '../../protocol/send-window.js';

const KB = 1024;
const numbers = (out: { n: number }[]) => out.map((o) => o.n);

function windowOf(chunks: number, windowChunks = 4) {
  const w = new SendWindow<string>({ windowBytes: windowChunks * KB, chunkBytes: KB });
  for (let i = 1; i <= chunks; i++) w.push(`c${i}`, KB);
  return w;
}

describe('SendWindow', () => {
  it('lets out at most the window, and each ack clocks out as many bytes as it acknowledged', () => {
    const w = windowOf(10);
    expect(numbers(w.take(0))).toEqual([1, 2, 3, 4]);
    expect(w.take(1)).toEqual([]);
    expect(w.bytesOut).toBe(4 * KB);
    const r = w.ack(2, [], 10);
    expect(r.progressed).toBe(true);
    expect(r.released).toEqual(['c1', 'c2']);
    expect(r.rttMs).toBe(10);
    expect(numbers(w.take(10))).toEqual([5, 6]);
  });

  it('one chunk always fits an empty window, however large', () => {
    const w = new SendWindow<string>({ windowBytes: KB, chunkBytes: KB });
    w.push('big', 10 * KB);
    w.push('next', 1);
    expect(numbers(w.take(0))).toEqual([1]);
    w.ack(1, [], 1);
    expect(numbers(w.take(1))).toEqual([2]);
  });

  it('a chunk held beyond a gap is not resent; the gap is, once, as soon as a later chunk is acknowledged', () => {
    const w = windowOf(4);
    w.take(0);
    // 2 lost: the peer holds 1, and 3-4 beyond the gap.
    const r = w.ack(1, [[3, 4]], 5);
    expect(r.lost).toBe(1);
    expect(w.take(5).map((o) => [o.n, o.resend])).toEqual([[2, true]]);
    // The same ack again (a repeat, or the peer's ping) shows nothing new lost.
    expect(w.ack(1, [[3, 4]], 6).lost).toBe(0);
    expect(w.take(6)).toEqual([]);
    const done = w.ack(4, [], 9);
    expect(done.released).toEqual(['c2', 'c3', 'c4']);
    // Karn: the resent chunk's ack times nothing; 3 and 4 were timed by their selective ack.
    expect(done.rttMs).toBeUndefined();
    expect(w.queued).toBe(0);
  });

  it('a timeout resends the earliest chunk out only; the echo of that copy shows the rest lost, at once', () => {
    const w = windowOf(8);
    w.take(0); // 1-4 out
    w.timeout();
    expect(w.windowBytes).toBe(KB);
    const [resent] = w.take(1);
    expect([resent.n, resent.resend]).toEqual([1, true]);
    expect(w.take(1)).toEqual([]);
    // The copy arrived (its echo) and 2-4, sent before it, did not: lost, sent again without another timeout.
    const r = w.ack(1, [], 2, resent.xmit);
    expect(r.lost).toBe(3);
    expect(numbers(w.take(2))).toContain(2);
  });

  it('after a spurious timeout (a long queue, not a loss) one chunk was sent twice, no more', () => {
    const w = windowOf(8);
    const first = w.take(0); // 1-4 out, only queued
    w.timeout();
    expect(numbers(w.take(1))).toEqual([1]);
    // The originals arrive, in order, before the copy: their echoes show nothing lost.
    const sent = new Map<number, number>([[1, 2]]);
    for (const { n, xmit } of first) {
      expect(w.ack(n, [], 2 + n, xmit).lost).toBe(0);
      for (const o of w.take(2 + n)) sent.set(o.n, (sent.get(o.n) ?? 0) + 1);
    }
    expect([...sent].filter(([n, times]) => n <= 4 && times > 1).map(([n]) => n)).toEqual([1]);
    expect([...sent.keys()].filter((n) => n > 4).length).toBeGreaterThan(0); // new chunks flow again
  });

  it('ignores acks of chunks never sent, and ranges beyond them', () => {
    const w = windowOf(6);
    w.take(0); // 1-4 out, 5-6 queued
    const r = w.ack(1_000_000, [[1_000_002, 2_000_000]], 1);
    expect(r.released).toEqual(['c1', 'c2', 'c3', 'c4']);
    expect(w.get(5)).toBe('c5');
    expect(numbers(w.take(1))).toEqual([5, 6]);
  });

  it('after a reconnect everything out and not held goes again, in a full window', () => {
    const w = windowOf(4);
    w.take(0);
    w.ack(0, [[3, 3]], 1);
    w.take(1); // 1 and 2 resent
    w.resendUnheld();
    expect(w.take(2).map((o) => [o.n, o.resend])).toEqual([
      [1, true],
      [2, true],
      [4, true],
    ]);
  });

  it('a chunk the peer held and then dropped (renege) is due again', () => {
    const w = windowOf(3);
    w.take(0);
    w.ack(0, [[1, 3]], 1);
    expect(w.oldestOutAt).toBeUndefined(); // all held: no timer runs
    w.renege(1);
    expect(numbers(w.take(2))).toEqual([1]);
  });

  it('refuses a window smaller than a chunk', () => {
    expect(() => new SendWindow({ windowBytes: 10, chunkBytes: 100 })).toThrow(RangeError);
  });
});

describe('ReceiveWindow and the ack ranges', () => {
  const receiver = (maxHeldBytes = 100 * KB) =>
    new ReceiveWindow<string>({ maxHeldBytes: () => maxHeldBytes, maxAhead: 64 });

  it('hands chunks on in number order, each once, and acknowledges what it holds beyond a gap', () => {
    const r = receiver();
    expect(r.arrive(1, 'a', KB)).toBe('next');
    r.accept();
    expect(r.arrive(3, 'c', KB)).toBe('held');
    expect(r.arrive(5, 'e', KB)).toBe('held');
    expect(r.arrive(6, 'f', KB)).toBe('held');
    expect(r.arrive(3, 'c', KB)).toBe('duplicate');
    expect(r.arrive(1, 'a', KB)).toBe('duplicate');
    expect(r.cumulative).toBe(1);
    expect(r.ranges()).toEqual([
      [3, 3],
      [5, 6],
    ]);
    expect(r.arrive(2, 'b', KB)).toBe('next');
    r.accept();
    const order: string[] = [];
    for (let next = r.takeNext(); next; next = r.takeNext()) {
      order.push(next);
      r.accept();
    }
    expect(order).toEqual(['c']);
    expect(r.cumulative).toBe(3);
    expect(r.bytesHeld).toBe(2 * KB);
  });

  it('holds no more than its byte budget, nor chunks too far ahead: those are dropped, to be resent', () => {
    const r = receiver(2 * KB);
    expect(r.arrive(2, 'b', KB)).toBe('held');
    expect(r.arrive(3, 'c', KB)).toBe('held');
    expect(r.arrive(4, 'd', KB)).toBe('no_room');
    expect(r.arrive(1000, 'far', 0)).toBe('no_room');
    expect(r.ranges()).toEqual([[2, 3]]);
  });

  it('a parked chunk is acknowledged as held until it is used or dropped', () => {
    const r = receiver();
    r.park(1, 'ref');
    expect(r.ranges()).toEqual([[1, 1]]);
    expect(r.arrive(1, 'ref', 0)).toBe('duplicate');
    r.unpark(1);
    expect(r.ranges()).toEqual([]);
  });

  it('lists at most MAX_ACK_RANGES ranges, the lowest', () => {
    const r = receiver();
    for (let n = 2; n < 2 + 2 * (MAX_ACK_RANGES + 5); n += 2) r.arrive(n, 'x', 1);
    const ranges = r.ranges();
    expect(ranges).toHaveLength(MAX_ACK_RANGES);
    expect(ranges[0]).toEqual([2, 2]);
    expect(parseRanges(formatRanges(ranges))).toEqual(ranges);
  });

  it('reads only short, ascending, disjoint ranges of whole numbers', () => {
    expect(parseRanges(undefined)).toEqual([]);
    expect(parseRanges('3-5,9-9')).toEqual([
      [3, 5],
      [9, 9],
    ]);
    expect(parseRanges('0-2', 0)).toEqual([[0, 2]]);
    for (const bad of [
      '0-2',
      '5-3',
      '3-5,4-6',
      '3-5,',
      'a-b',
      '1.5-2',
      '-1-2',
      '1e3-2000',
      ' 1-2',
      '1-99999999999999999',
    ])
      expect(parseRanges(bad), bad).toBeUndefined();
    const many = Array.from({ length: MAX_ACK_RANGES + 1 }, (_, i) => `${2 * i + 1}-${2 * i + 1}`).join(',');
    expect(parseRanges(many)).toBeUndefined();
  });
});

/**
 * Sender and receiver over a simulated pipe that keeps order and loses what `lose` picks; acks come back
 * after each delivery. Returns how often each chunk was sent.
 */
function simulate(chunks: number, lose: (n: number, attempt: number) => boolean) {
  const sender = windowOf(chunks);
  const receiver = new ReceiveWindow<string>({ maxHeldBytes: () => 64 * KB, maxAhead: 64 });
  const sends = new Map<number, number>();
  const delivered: string[] = [];
  let now = 0;
  for (let round = 0; round < 1000 && delivered.length < chunks; round++) {
    now += 10;
    const out = sender.take(now);
    if (out.length === 0) {
      // Nothing moves: the retransmission timer fires.
      sender.timeout();
      continue;
    }
    for (const { n, item } of out) {
      const attempt = (sends.get(n) ?? 0) + 1;
      sends.set(n, attempt);
      if (lose(n, attempt)) continue;
      if (receiver.arrive(n, item, KB) === 'next') {
        delivered.push(item);
        receiver.accept();
        for (let next = receiver.takeNext(); next; next = receiver.takeNext()) {
          delivered.push(next);
          receiver.accept();
        }
      }
      sender.ack(receiver.cumulative, receiver.ranges(), now + 5);
    }
  }
  return { sends, delivered };
}

describe('sender and receiver together', () => {
  it('without loss, every chunk is sent once and arrives in order', () => {
    const { sends, delivered } = simulate(50, () => false);
    expect(delivered).toEqual(Array.from({ length: 50 }, (_, i) => `c${i + 1}`));
    expect([...sends.values()].every((times) => times === 1)).toBe(true);
  });

  it('with chunks lost, exactly the lost chunks are sent again, and everything arrives once, in order', () => {
    const lost = new Set([3, 7, 8, 20, 50]);
    const { sends, delivered } = simulate(50, (n, attempt) => attempt === 1 && lost.has(n));
    expect(delivered).toEqual(Array.from({ length: 50 }, (_, i) => `c${i + 1}`));
    const repeated = [...sends].filter(([, times]) => times > 1).map(([n]) => n);
    expect(repeated).toEqual([...lost]);
    expect([...sends.values()].every((times) => times <= 2)).toBe(true);
  });
});
