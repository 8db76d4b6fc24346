/**
 * The sending half of a NATS link's flow control and loss recovery, without sockets or timers (the link
 * drives it): every chunk gets a number, at most a window of bytes is out unacknowledged, acks (a cumulative
 * number plus the ranges held beyond it: chunk-acks.ts) clock new chunks out, and only chunks shown lost are
 * sent again. A fixed resend timer that resends whole frames collapses under load: the resends join the
 * queue that delayed the acks (#32). TCP's answers, at chunk granularity: a window, an RTT-based timeout
 * that backs off (retransmit-timeout.ts, owned by the link), selective acknowledgement, an echo of which copy
 * arrived (TCP's timestamps), and a timeout that resends one chunk, so one that was only a long queue repeats
 * one chunk, not W.
 */
import type { ChunkRange } from './chunk-acks.js';

export interface SendWindowOptions {
  /** The most bytes ever out unacknowledged (the window's ceiling). */
  windowBytes: number;
  /** A full chunk's payload: the unit the window shrinks to after a timeout and grows by. */
  chunkBytes: number;
}

interface Entry<T> {
  n: number;
  /** Bytes this chunk counts against the window (an empty control still counts one). */
  cost: number;
  item: T;
  /** Not yet out, or shown lost: waiting for room in the window. */
  due: boolean;
  sentAt: number;
  /** Order of the last transmission: a later one acknowledged while this one is not shows it lost. */
  xmit: number;
  /** Sent more than once: its ack times neither copy (Karn). */
  resent: boolean;
  /** Held by the peer beyond its cumulative ack (selectively acknowledged). */
  sacked: boolean;
  /** Goes out whatever the window, and counts until acknowledged cumulatively (see push). */
  always: boolean;
  /** Its cost is in bytesOut now. */
  counted: boolean;
}

export interface Outgoing<T> {
  n: number;
  item: T;
  /** This transmission's id, for the peer to echo in its acks (which copy of a resent chunk arrived). */
  xmit: number;
  /** Sent before: counts as a repeat. */
  resend: boolean;
}

export interface AckResult<T> {
  /** Chunks newly acknowledged (cumulatively or selectively): the timer counts again from now. */
  progressed: boolean;
  /** A round trip measured on a chunk sent once, if this ack newly acknowledged one. */
  rttMs?: number;
  /** Chunks the peer now holds in order: their buffers may go. */
  released: T[];
  /** Chunks shown lost by a later one's ack: due again (no timeout needed). */
  lost: number;
}

export class SendWindow<T> {
  private readonly entries = new Map<number, Entry<T>>();
  private nextN = 1;
  private xmitCounter = 0;
  /** Everything below this is acknowledged cumulatively. */
  private acked = 0;
  /** The congestion window, bytes: ≤ windowBytes, down to one chunk after a timeout. */
  private cwnd: number;
  private ssthresh: number;
  private outBytes = 0;
  /** The highest transmission order the peer acknowledged. */
  private highestAckedXmit = 0;
  /** A chunk was just shown lost: the first due goes whatever the window. */
  private fastResend = false;

  constructor(private readonly options: SendWindowOptions) {
    if (!(options.chunkBytes >= 1 && options.windowBytes >= options.chunkBytes))
      throw new RangeError(
        `a send window needs room for one chunk: window ${options.windowBytes}, chunk ${options.chunkBytes}`,
      );
    this.cwnd = options.windowBytes;
    this.ssthresh = options.windowBytes;
  }

  /**
   * Queues a chunk; it goes out when the window has room. Returns its number. `always`: a small message
   * that stands for `bytes` travelling another way (a reference to a broadcast): it goes out at its turn
   * whatever the window, so it arrives ahead of those bytes, and its bytes count against the window until
   * the peer has used it, so nothing else queues behind them.
   */
  push(item: T, bytes: number, always = false): number {
    const n = this.nextN++;
    this.entries.set(n, {
      n,
      cost: Math.max(1, bytes),
      item,
      due: true,
      sentAt: 0,
      xmit: 0,
      resent: false,
      sacked: false,
      always,
      counted: false,
    });
    return n;
  }

  /**
   * What may go out now, lowest number first (lost chunks before new ones, as they are older): marked sent at
   * `now`. One chunk always fits an empty window, however large.
   */
  take(now: number): Outgoing<T>[] {
    const out: Outgoing<T>[] = [];
    for (const e of this.entries.values()) {
      if (!e.due) continue;
      const resend = e.xmit > 0;
      // A chunk just shown lost (by an ack, or the earliest at a timeout) goes whatever the window (TCP's fast
      // retransmit): it holds up the peer's progress. One chunk, once per such event.
      const first = resend && this.fastResend;
      if (!first && !e.always && this.outBytes > 0 && this.outBytes + e.cost > this.cwnd) break;
      if (first) this.fastResend = false;
      e.due = false;
      e.sentAt = now;
      e.xmit = ++this.xmitCounter;
      e.resent ||= resend;
      this.count(e, true);
      out.push({ n: e.n, item: e.item, xmit: e.xmit, resend });
    }
    return out;
  }

  /**
   * The peer holds every chunk up to `cumulative` and those in `held`, and `echo` is the transmission id of
   * the last chunk that reached it (0: not given). Numbers never sent are ignored (a hostile or confused peer
   * cannot acknowledge what it never got).
   */
  ack(cumulative: number, held: readonly ChunkRange[], now: number, echo = 0): AckResult<T> {
    const result: AckResult<T> = { progressed: false, released: [], lost: 0 };
    let newestSample: Entry<T> | undefined;
    const acknowledge = (e: Entry<T>, cumulatively: boolean) => {
      if (e.xmit === 0) return false; // queued, never sent
      if (cumulatively || !e.always) this.count(e, false);
      if (!e.sacked) {
        result.progressed = true;
        this.grow(e.cost);
        // A resent chunk's ack may be the original's, sent before the chunks now out: it shows none of them
        // lost (Karn's ambiguity; taking it would resend the whole window after every spurious timeout).
        if (!e.resent) this.highestAckedXmit = Math.max(this.highestAckedXmit, e.xmit);
        if (!e.resent && (!newestSample || e.xmit > newestSample.xmit)) newestSample = e;
      }
      return true;
    };
    const upTo = Math.min(cumulative, this.nextN - 1);
    for (let n = this.acked + 1; n <= upTo; n++) {
      const e = this.entries.get(n);
      if (!e || !acknowledge(e, true)) break;
      this.entries.delete(n);
      this.acked = n;
      result.released.push(e.item);
    }
    for (const [from, to] of held) {
      for (let n = Math.max(from, this.acked + 1); n <= Math.min(to, this.nextN - 1); n++) {
        const e = this.entries.get(n);
        if (!e || e.sacked || !acknowledge(e, false)) continue;
        e.sacked = true;
        e.due = false;
      }
    }
    if (newestSample) result.rttMs = now - newestSample.sentAt;
    // The echo names the copy that arrived, resent or not (TCP's timestamps do the same).
    this.highestAckedXmit = Math.max(this.highestAckedXmit, Math.min(echo, this.xmitCounter));
    // NATS keeps one publisher's messages in order to a subscriber: a chunk sent after this one arrived,
    // so this one was lost (RACK with no reordering allowance). It is sent again once, without a timeout.
    for (const e of this.entries.values()) {
      if (e.due || e.sacked || e.xmit === 0 || e.xmit >= this.highestAckedXmit) continue;
      this.markLost(e);
      result.lost++;
    }
    if (result.lost > 0) {
      this.fastResend = true;
      this.ssthresh = Math.max(this.cwnd / 2, 2 * this.options.chunkBytes);
      this.cwnd = this.ssthresh;
    }
    return result;
  }

  /**
   * The retransmission timer fired (nothing acknowledged for a timeout): the earliest chunk out and not held
   * by the peer goes again (RFC 6298 5.4), and the window shrinks to one chunk. The others stay out: if the
   * timeout was only a long queue their acks come and nothing more is sent twice; if they were lost, the ack
   * of the copy just sent (its echo) shows it, and they go again at once.
   */
  timeout(): void {
    for (const e of this.entries.values()) {
      if (e.due || e.sacked || e.xmit === 0) continue;
      this.markLost(e);
      break;
    }
    this.ssthresh = Math.max(this.cwnd / 2, 2 * this.options.chunkBytes);
    this.cwnd = this.options.chunkBytes;
    this.fastResend = true;
  }

  /**
   * The connection came back (or the peer says it did): whatever was out and not held may be gone with the
   * old connection, so it is due again now, in a full window.
   */
  resendUnheld(): void {
    for (const e of this.entries.values()) if (!e.due && !e.sacked && e.xmit > 0) this.markLost(e);
    this.cwnd = this.options.windowBytes;
  }

  /** When the oldest chunk out was sent (the retransmission timer runs from there), or undefined if none. */
  get oldestOutAt(): number | undefined {
    let oldest: number | undefined;
    for (const e of this.entries.values())
      if (!e.due && !e.sacked && e.xmit > 0) oldest = Math.min(oldest ?? e.sentAt, e.sentAt);
    return oldest;
  }

  /** The chunk numbered `n` if it is still held for the peer (sent or not). */
  get(n: number): T | undefined {
    return this.entries.get(n)?.item;
  }

  /**
   * The peer dropped chunk `n` after acknowledging it as held (it could not use it after all): due again.
   */
  renege(n: number): void {
    const e = this.entries.get(n);
    if (!e || e.xmit === 0 || e.due) return;
    e.sacked = false;
    this.markLost(e);
  }

  /** The chunk numbered `n` went out again by another way (its content, re-requested): its timer restarts. */
  touch(n: number, now: number): void {
    const e = this.entries.get(n);
    if (e && !e.due) e.sentAt = now;
  }

  get bytesOut(): number {
    return this.outBytes;
  }

  get windowBytes(): number {
    return this.cwnd;
  }

  get queued(): number {
    return this.entries.size;
  }

  private markLost(e: Entry<T>): void {
    e.due = true;
    this.count(e, false);
  }

  private count(e: Entry<T>, counted: boolean): void {
    if (e.counted === counted) return;
    e.counted = counted;
    this.outBytes += counted ? e.cost : -e.cost;
  }

  /** Slow start to ssthresh, then a chunk per window's worth of acks, never past the ceiling. */
  private grow(bytes: number): void {
    const { windowBytes, chunkBytes } = this.options;
    const step = this.cwnd < this.ssthresh ? bytes : (chunkBytes * bytes) / this.cwnd;
    this.cwnd = Math.min(windowBytes, this.cwnd + step);
  }
}
