/**
 * Which worker owes which items of a unit of work (a step's micro-batches, an evaluation's test
 * chunks). Results are accepted only for ranges the sender owes, each at most once; a lost worker's
 * or a rejected result's items come back as ranges to hand to someone else.
 */

/** Items [first, end) of a unit of work: micro-batches of a step, or test chunks of an evaluation. */
export interface ItemRange {
  first: number;
  end: number;
}

export class WorkTracker {
  private readonly owed = new Map<string, ItemRange[]>();
  private remainingItems: number;

  /** `remaining`: fewer than all items when only some are to be done (a recheck of one tree node). */
  constructor(
    readonly items: number,
    remaining = items,
  ) {
    this.remainingItems = remaining;
  }

  get remaining(): number {
    return this.remainingItems;
  }

  expect(workerId: string, range: ItemRange): void {
    const list = this.owed.get(workerId) ?? [];
    list.push({ ...range });
    this.owed.set(workerId, list);
  }

  /** Whether `workerId` owes all of `range` (and so may deliver it). */
  owes(workerId: string, range: ItemRange): boolean {
    return this.find(workerId, range) >= 0;
  }

  /** Marks a delivered range done; false when the worker did not owe it (duplicate, unassigned). */
  settle(workerId: string, range: ItemRange): boolean {
    if (!this.cut(workerId, range)) return false;
    this.remainingItems -= range.end - range.first;
    return true;
  }

  /** Takes back `range` from the worker (its result was rejected): the range must be re-assigned. */
  revoke(workerId: string, range: ItemRange): ItemRange[] {
    return this.cut(workerId, range) ? [{ ...range }] : [];
  }

  private find(workerId: string, range: ItemRange): number {
    if (range.first >= range.end) return -1;
    return (this.owed.get(workerId) ?? []).findIndex((r) => r.first <= range.first && range.end <= r.end);
  }

  /** Removes `range` from what the worker owes, keeping the parts of its block on either side. */
  private cut(workerId: string, range: ItemRange): boolean {
    const at = this.find(workerId, range);
    if (at < 0) return false;
    const list = this.owed.get(workerId)!;
    const r = list[at];
    list.splice(
      at,
      1,
      ...[
        { first: r.first, end: range.first },
        { first: range.end, end: r.end },
      ].filter((x) => x.first < x.end),
    );
    return true;
  }

  /** Everything the worker still owes (it was lost): to be re-assigned. */
  release(workerId: string): ItemRange[] {
    const list = this.owed.get(workerId) ?? [];
    this.owed.delete(workerId);
    return list;
  }

  owesAnything(workerId: string): boolean {
    return (this.owed.get(workerId)?.length ?? 0) > 0;
  }
}
