/**
 * One unit of work the coordinator hands out in ranges (a step's micro-batches, a recheck of one
 * node, an evaluation's test chunks): what it is (its spec), who was given what and when (its
 * state), and how it ends (settled once every item is in, or aborted when it cannot finish).
 */
import type { Verdict } from './step-gather.js';
import { ShareTimer } from './sharding.js';
import type { ResultMessage, WorkerSession } from './worker-pool.js';
import type { ItemRange, WorkTracker } from './work-tracker.js';

export interface WorkSpec {
  kind: ResultMessage['type'];
  tracker: WorkTracker;
  /** Workers given none of this unit (a recheck is done by anyone but the node's sender). */
  excluded?: ReadonlySet<string>;
  /** Each range goes to one worker whole, never split by speed (a recheck: the node comes back as one). */
  indivisible?: boolean;
  send(session: WorkerSession, range: ItemRange): void;
  /** The unit's verdict on a result; undefined when the result is not of this unit's kind. */
  accept(session: WorkerSession, message: ResultMessage, payload: Float32Array): Verdict | undefined;
  /** A verdict that was pending when its result arrived, decided now (default: taken as it is). */
  concluded?(verdict: Verdict): Verdict;
}

export class WorkUnit {
  /** When each worker was last given work in this unit (its deadline runs from there). */
  readonly assignedAt = new Map<string, number>();
  /** Workers that missed the deadline: their late results are dropped, and they get no more of this unit. */
  readonly late = new Set<string>();
  /** Per worker: ranges it owes whose assignment waits until it confirms it holds the current weights. */
  private readonly waiting = new Map<string, ItemRange[]>();
  /**
   * Per worker with work in hand, on this coordinator's clock from the assignment (sent only once it held the
   * weights, so no transfer wait is in it).
   */
  readonly shares = new ShareTimer();
  /** Resolves once every item is in; rejects with the reason the unit could not finish. */
  readonly settled: Promise<void>;
  private settle!: { done(): void; abort(err: Error): void };

  constructor(readonly spec: WorkSpec) {
    this.settled = new Promise<void>((done, abort) => {
      this.settle = { done, abort };
    });
  }

  get kind(): ResultMessage['type'] {
    return this.spec.kind;
  }

  get tracker(): WorkTracker {
    return this.spec.tracker;
  }

  isExcluded(workerId: string): boolean {
    return this.spec.excluded?.has(workerId) ?? false;
  }

  /** `range` waits for the worker to hold the current weights. */
  hold(workerId: string, range: ItemRange): void {
    this.waiting.set(workerId, [...(this.waiting.get(workerId) ?? []), range]);
  }

  /** The ranges that waited for the worker's weights, now to be sent. */
  takeHeld(workerId: string): ItemRange[] | undefined {
    const held = this.waiting.get(workerId);
    this.waiting.delete(workerId);
    return held;
  }

  /** The worker no longer owes this unit anything it was not sent yet. */
  forget(workerId: string): void {
    this.waiting.delete(workerId);
    this.shares.forget(workerId);
  }

  /** The worker missed the deadline: its ranges (returned) go to others, and it gets no more of this unit. */
  revokeLate(workerId: string): ItemRange[] {
    const orphaned = this.tracker.release(workerId);
    this.assignedAt.delete(workerId);
    this.waiting.delete(workerId);
    this.late.add(workerId);
    return orphaned;
  }

  done(): void {
    this.settle.done();
  }

  abort(err: Error): void {
    this.settle.abort(err);
  }
}
