/**
 * Who may connect: caps on open connections and workers, and a token bucket on the join rate, so a
 * flood of connections (a misconfigured autoscaler, a port scan) cannot exhaust the coordinator.
 * Pure: time comes in as an argument.
 */

export interface AdmissionLimits {
  /** Links open at once, handshakes included. */
  maxConnections: number;
  /** Workers admitted at once (past the handshake). */
  maxWorkers: number;
  /** Sustained new connections per second; bursts of up to this many are allowed. */
  joinsPerSecond: number;
}

export const DEFAULT_ADMISSION: AdmissionLimits = { maxConnections: 256, maxWorkers: 128, joinsPerSecond: 20 };

export type Admission = { ok: true } | { ok: false; reason: 'too_many_connections' | 'join_rate_limited'; detail: string };

export class AdmissionControl {
  private tokens: number;
  private refilledAt: number;

  constructor(readonly limits: AdmissionLimits, now: number) {
    this.tokens = limits.joinsPerSecond;
    this.refilledAt = now;
  }

  /** Whether a new connection may open, given how many are open; takes a join token if so. */
  admitConnection(open: number, now: number): Admission {
    const { maxConnections, joinsPerSecond } = this.limits;
    if (open >= maxConnections) return { ok: false, reason: 'too_many_connections', detail: `${open} connections are open (--max-connections ${maxConnections})` };
    this.tokens = Math.min(joinsPerSecond, this.tokens + ((now - this.refilledAt) / 1000) * joinsPerSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return { ok: false, reason: 'join_rate_limited', detail: `more than ${joinsPerSecond} connections per second (--max-joins-per-s)` };
    this.tokens -= 1;
    return { ok: true };
  }

  /** Whether another worker fits, given how many are admitted. */
  hasRoomFor(workers: number): boolean {
    return workers < this.limits.maxWorkers;
  }
}
