/**
 * Who may not come back, and until when: a worker caught lying is refused for the rest of the run, one that
 * keeps sending frames the coordinator must reject is refused for a back-off period. Pure: times in, verdicts
 * out, so the policy is testable without sockets.
 */
import type { RejectionReason } from '../protocol/errors.js';

/**
 * Rejections a worker earns without meaning harm (a slow machine's results, after the deadline or after the
 * step): never held against it.
 */
const EXCUSED: ReadonlySet<RejectionReason> = new Set<RejectionReason>(['late_result', 'stale_result']);

export interface AbusePolicy {
  /** Rejections within `windowMs` that get a worker evicted. */
  limit: number;
  windowMs: number;
  /** How long an evicted abuser is refused. */
  backoffMs: number;
}

export const DEFAULT_ABUSE_POLICY: AbusePolicy = { limit: 3, windowMs: 30_000, backoffMs: 60_000 };

interface Ban {
  until: number;
  why: string;
}

export class Bans {
  private readonly bans = new Map<string, Ban>();
  /** Per worker: when its recent rejections happened (only those inside the window are kept). */
  private readonly strikes = new Map<string, number[]>();

  constructor(private readonly policy: AbusePolicy = DEFAULT_ABUSE_POLICY) {}

  /** Refused for the rest of the run. */
  banForRun(workerId: string, why: string): void {
    this.bans.set(workerId, { until: Number.POSITIVE_INFINITY, why });
  }

  /**
   * A rejection of one of `workerId`'s frames at `now` (ms): true when it crosses the limit, and the worker
   * is then banned for the back-off period.
   */
  strike(workerId: string, reason: RejectionReason, now: number): boolean {
    if (EXCUSED.has(reason)) return false;
    const { limit, windowMs, backoffMs } = this.policy;
    const recent = (this.strikes.get(workerId) ?? []).filter((t) => now - t < windowMs);
    recent.push(now);
    this.strikes.set(workerId, recent);
    if (recent.length < limit) return false;
    this.strikes.delete(workerId);
    const current = this.bans.get(workerId);
    if (!current || current.until < now + backoffMs)
      this.bans.set(workerId, {
        until: now + backoffMs,
        why: `${limit} frames rejected within ${windowMs / 1000} s (the last: ${reason}); refused for ${backoffMs / 1000} s`,
      });
    return true;
  }

  /** Why `workerId` is refused at `now`, or undefined if it may join. */
  refusal(workerId: string, now: number): string | undefined {
    const ban = this.bans.get(workerId);
    if (!ban) return undefined;
    if (ban.until <= now) {
      this.bans.delete(workerId);
      return undefined;
    }
    return ban.why;
  }

  /** Workers banned for the run, for the summary. */
  get bannedForRun(): string[] {
    return [...this.bans].filter(([, b]) => b.until === Number.POSITIVE_INFINITY).map(([id]) => id);
  }
}
