/**
 * Who may connect to the side that is joined (the coordinator, a shard reducer): caps on open
 * connections and workers, and token buckets on the join rate (one shared, one per source address),
 * so a flood of connections (a misconfigured autoscaler, a port scan, one hostile machine) cannot
 * exhaust it nor crowd out other machines' workers. A connection that comes with a join pass (proof of
 * the secret, protocol/join-pass.ts) skips the buckets, so honest workers behind the flood's address still
 * join; each pass is good once, near our clock. Pure: time comes in as an argument.
 */

export interface AdmissionLimits {
  /** Links open at once, handshakes included. */
  maxConnections: number;
  /** Workers admitted at once (past the handshake). */
  maxWorkers: number;
  /** Sustained new connections per second; bursts of up to this many are allowed. */
  joinsPerSecond: number;
  /**
   * The same, per source (a remote address; for NATS, the joining client's inbox); default
   * DEFAULT_JOINS_PER_SOURCE.
   */
  joinsPerSourcePerSecond?: number;
  /**
   * Bytes all peers not yet admitted may have sent, together (protocol/budgets.ts); default
   * DEFAULT_PRE_AUTH_BYTES.
   */
  preAuthBytes?: number;
}

const DEFAULT_JOINS_PER_SOURCE = 10;
/** 64 peers at the 16 KiB each may send before admission; an honest handshake is well under 1 KiB. */
const DEFAULT_PRE_AUTH_BYTES = 1024 * 1024;

export const DEFAULT_ADMISSION: Required<AdmissionLimits> = {
  maxConnections: 256,
  maxWorkers: 128,
  joinsPerSecond: 20,
  joinsPerSourcePerSecond: DEFAULT_JOINS_PER_SOURCE,
  preAuthBytes: DEFAULT_PRE_AUTH_BYTES,
};

export type Admission =
  | { ok: true }
  | { ok: false; reason: 'too_many_connections' | 'join_rate_limited'; detail: string };
type Refused = Extract<Admission, { ok: false }>;

/**
 * How far a join pass's time may be from ours, either way: the machines' clocks differ by a little, and a
 * pass is used at once.
 */
const JOIN_PASS_WINDOW_MS = 120_000;
/** Passes remembered at once (each until it expires): well above what honest joins use in a window. */
const MAX_REMEMBERED_PASSES = 4096;

/** Whether a join pass (its proof already checked) may let its connection skip the join-rate limits. */
export type PassVerdict =
  | { ok: true }
  | { ok: false; why: 'stale' | 'replayed' | 'too_many'; detail: string };
type WorkerRoom = { ok: true } | { ok: false; reason: 'cluster_full'; detail: string };

/** `rate` tokens a second, holding at most `rate`: bursts of up to `rate`, then that rate. */
class TokenBucket {
  private tokens: number;

  constructor(
    private readonly rate: number,
    private refilledAt: number,
  ) {
    this.tokens = rate;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.refilledAt) / 1000) * this.rate);
    this.refilledAt = now;
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Back to full: nothing to remember about this source. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.rate;
  }
}

/** Sources remembered at once; past it, those whose bucket has refilled are forgotten. */
const MAX_TRACKED_SOURCES = 4096;

/** Nonces of the passes taken, each until its pass expires: a pass is good for one connection. */
class PassLedger {
  private readonly expiries = new Map<string, number>();

  take(nonce: string, at: number, wallClock: number): PassVerdict {
    const skew = wallClock - at;
    if (Math.abs(skew) > JOIN_PASS_WINDOW_MS)
      return {
        ok: false,
        why: 'stale',
        detail: `its time is ${Math.round(skew / 1000)} s from ours (at most ${JOIN_PASS_WINDOW_MS / 1000} s: are both clocks set?)`,
      };
    if (this.expiries.has(nonce))
      return { ok: false, why: 'replayed', detail: 'it was used before (a pass is good once)' };
    if (this.expiries.size >= MAX_REMEMBERED_PASSES)
      for (const [key, expiry] of this.expiries) if (expiry < wallClock) this.expiries.delete(key);
    // Forgetting an unexpired pass would let it be used again: past the cap, passes count for nothing.
    if (this.expiries.size >= MAX_REMEMBERED_PASSES)
      return { ok: false, why: 'too_many', detail: `${MAX_REMEMBERED_PASSES} passes are in use` };
    this.expiries.set(nonce, at + JOIN_PASS_WINDOW_MS);
    return { ok: true };
  }
}

export class AdmissionControl {
  private readonly shared: TokenBucket;
  private readonly bySource = new Map<string, TokenBucket>();
  private readonly passes = new PassLedger();

  constructor(
    readonly limits: AdmissionLimits,
    now: number,
  ) {
    this.shared = new TokenBucket(limits.joinsPerSecond, now);
  }

  private get perSource(): number {
    return this.limits.joinsPerSourcePerSecond ?? DEFAULT_JOINS_PER_SOURCE;
  }

  /**
   * Whether a new connection from `source` may open, given how many are open; takes join tokens if so.
   * `passed`: it came with a join pass that proved the secret and was taken (takePass): no tokens.
   */
  admitConnection(open: number, now: number, source = '', passed = false): Admission {
    const { joinsPerSecond } = this.limits;
    const full = this.connectionsFull(open);
    if (full) return full;
    if (passed) return { ok: true };
    const bucket = this.sourceBucket(source, now);
    // The source's bucket first: one busy source must not spend the tokens every other source shares.
    if (!bucket.take(now))
      return {
        ok: false,
        reason: 'join_rate_limited',
        detail: `more than ${this.perSource} connections per second from ${source || 'one source'} (--max-joins-per-source-per-s)`,
      };
    if (!this.shared.take(now))
      return {
        ok: false,
        reason: 'join_rate_limited',
        detail: `more than ${joinsPerSecond} connections per second (--max-joins-per-s)`,
      };
    return { ok: true };
  }

  /** Why no other connection may open, with `open` open; undefined while one may. */
  connectionsFull(open: number): Refused | undefined {
    const { maxConnections } = this.limits;
    if (open < maxConnections) return undefined;
    return {
      ok: false,
      reason: 'too_many_connections',
      detail: `${open} connections are open (--max-connections ${maxConnections})`,
    };
  }

  /**
   * A join pass whose proof checked out, made at `at` (ms since the epoch) with `nonce`: takes it if it is
   * fresh by `wallClock` (our Date.now()) and new.
   */
  takePass(pass: { at: number; nonce: Uint8Array }, wallClock: number): PassVerdict {
    return this.passes.take(Buffer.from(pass.nonce).toString('base64'), pass.at, wallClock);
  }

  private sourceBucket(source: string, now: number): TokenBucket {
    let bucket = this.bySource.get(source);
    if (bucket) return bucket;
    if (this.bySource.size >= MAX_TRACKED_SOURCES) {
      for (const [key, b] of this.bySource) if (b.isFull(now)) this.bySource.delete(key);
    }
    bucket = new TokenBucket(this.perSource, now);
    // Still full of busy sources (a flood from many addresses): the shared bucket is what limits it; do not
    // grow.
    if (this.bySource.size < MAX_TRACKED_SOURCES) this.bySource.set(source, bucket);
    return bucket;
  }

  /** Whether another worker fits, given how many are admitted. */
  hasRoomFor(workers: number): boolean {
    return workers < this.limits.maxWorkers;
  }

  /** Whether another worker may be admitted, given how many are; if not, why. */
  admitWorker(workers: number): WorkerRoom {
    if (this.hasRoomFor(workers)) return { ok: true };
    return {
      ok: false,
      reason: 'cluster_full',
      detail: `${workers} workers are connected (--max-workers ${this.limits.maxWorkers})`,
    };
  }
}
