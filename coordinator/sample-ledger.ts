/**
 * Exact sample accounting: every sample of every epoch must be trained on exactly once, whoever
 * computed it and however often workers came and went. The ledger counts each accepted
 * micro-batch's samples by their position in the epoch's order; closing an epoch checks that each
 * position was counted once. Pure bookkeeping, no I/O.
 */

export interface LedgerTotals {
  /** Samples accepted into a step's gradient. */
  samples: number;
  microBatches: number;
  /** Samples accepted more than once in an epoch (must stay 0). */
  duplicates: number;
  /** Samples an epoch closed without (must stay 0). */
  missing: number;
  /** Epochs closed with every sample counted exactly once. */
  epochsComplete: number;
}

export class SampleLedger {
  readonly totals: LedgerTotals = {
    samples: 0,
    microBatches: 0,
    duplicates: 0,
    missing: 0,
    epochsComplete: 0,
  };
  private epoch = -1;
  private readonly counts: Uint8Array;

  constructor(private readonly trainCount: number) {
    this.counts = new Uint8Array(trainCount);
  }

  /**
   * Starts at `epoch` with positions [0, accountedBefore) already trained on (a resumed run: an
   * earlier coordinator accounted them and the checkpoint holds their effect).
   */
  begin(epoch: number, accountedBefore: number): void {
    this.epoch = epoch;
    this.counts.fill(0);
    this.counts.fill(1, 0, Math.min(accountedBefore, this.trainCount));
  }

  /** One accepted micro-batch (or tree node): positions [start, end) of `epoch`'s order. */
  record(epoch: number, start: number, end: number): void {
    if (epoch !== this.epoch)
      throw new RangeError(`samples of epoch ${epoch} recorded during epoch ${this.epoch}`);
    if (!(0 <= start && start < end && end <= this.trainCount))
      throw new RangeError(`positions [${start}, ${end}) outside an epoch of ${this.trainCount}`);
    for (let i = start; i < end; i++) {
      if (this.counts[i] > 0) this.totals.duplicates++;
      this.counts[i] = Math.min(255, this.counts[i] + 1);
    }
    this.totals.samples += end - start;
  }

  /** A snapshot to go back to (a sharded run's rollback to a checkpoint). */
  copy(): SampleLedger {
    const c = new SampleLedger(this.trainCount);
    c.restore(this);
    return c;
  }

  /** Becomes `other`: its epoch, its counts and its totals. */
  restore(other: SampleLedger): void {
    this.epoch = other.epoch;
    this.counts.set(other.counts);
    Object.assign(this.totals, other.totals);
  }

  countMicroBatches(n: number): void {
    this.totals.microBatches += n;
  }

  /** Checks the epoch just finished; returns how many of its samples were never counted. */
  close(): number {
    const missing = this.counts.reduce((n, c) => n + (c === 0 ? 1 : 0), 0);
    this.totals.missing += missing;
    if (missing === 0 && this.counts.every((c) => c === 1)) this.totals.epochsComplete++;
    this.begin(this.epoch + 1, 0);
    return missing;
  }
}
