/**
 * What a spot-checked run needs to undo a liar: for every worker, the step of its first node that nobody
 * checked, and a copy of the run's state (weights, Adam's moments, figures, sample ledger) from before it.
 * A caught liar's unchecked nodes may all be lies, so the run goes back to the copy before the first of them
 * and replays without it; every shuffle and dropout mask derives from (seed, epoch, step), so the replay
 * computes what an honest run computes.
 *
 * Copies are taken in memory, before the first step a worker is about to be given work in (one per distinct
 * join), and dropped once no worker's first unchecked node needs them (the newest is always kept).
 */
import { type RunState, stateFromCheckpoint, stateToCheckpoint } from './run-state.js';
import type { SampleLedger } from './sample-ledger.js';

export interface Anchor {
  state: RunState;
  ledger: SampleLedger;
}

function copyOf(state: RunState): RunState {
  const { meta, tensors } = stateToCheckpoint(state);
  const copies = Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.slice()]));
  return stateFromCheckpoint(structuredClone(meta), copies, `the state at step ${state.step}`);
}

/** A copy of the run as it stands: to go back to the start of the step in hand. */
export function anchorOf(state: RunState, ledger: SampleLedger): Anchor {
  return { state: copyOf(state), ledger: ledger.copy() };
}

export class TrustAnchors {
  private readonly anchors = new Map<number, Anchor>();
  /** Per worker: the step of its first node that was taken unchecked. */
  private readonly firstUnchecked = new Map<string, number>();

  /** Per worker: the step before which it was first about to be given work. */
  private readonly seenAt = new Map<string, number>();

  /**
   * True when a copy must be taken before this step: one of `workers` is new since the newest copy (so that
   * undoing it replays no more than its own time in the run).
   */
  needed(workers: readonly string[], step: number): boolean {
    for (const id of workers) if (!this.seenAt.has(id)) this.seenAt.set(id, step);
    const newest = this.newest();
    return workers.some(
      (id) => !this.firstUnchecked.has(id) && (newest === undefined || newest < this.seenAt.get(id)!),
    );
  }

  private newest(): number | undefined {
    return this.anchors.size === 0 ? undefined : Math.max(...this.anchors.keys());
  }

  take(state: RunState, ledger: SampleLedger): void {
    this.anchors.set(state.step, anchorOf(state, ledger));
  }

  /** A node of `workerId`'s was taken at `step` without a check. */
  unchecked(workerId: string, step: number): void {
    if (!this.firstUnchecked.has(workerId)) this.firstUnchecked.set(workerId, step);
    this.prune();
  }

  /** The copy to go back to when `workerId` is caught (undefined: none of its nodes went in unchecked). */
  anchorFor(workerId: string): Anchor | undefined {
    const first = this.firstUnchecked.get(workerId);
    if (first === undefined) return undefined;
    const step = Math.max(...[...this.anchors.keys()].filter((s) => s <= first));
    const anchor = this.anchors.get(step);
    if (!anchor) throw new Error(`no copy of the run's state from before step ${first}`);
    return anchorOf(anchor.state, anchor.ledger);
  }

  /**
   * The run went back to `step` with `banned` gone: later copies and later first-unchecked steps describe
   * steps that will be computed again.
   */
  rewound(step: number, banned: string): void {
    this.firstUnchecked.delete(banned);
    for (const [id, seen] of this.seenAt) if (seen > step) this.seenAt.delete(id);
    for (const s of [...this.anchors.keys()]) if (s > step) this.anchors.delete(s);
    for (const [id, first] of this.firstUnchecked) if (first >= step) this.firstUnchecked.delete(id);
  }

  /** Copies no worker needs any more (the newest is kept: the next worker to join starts from it). */
  private prune(): void {
    const steps = [...this.anchors.keys()].sort((a, b) => a - b);
    const needed = new Set<number>([steps[steps.length - 1]]);
    for (const first of this.firstUnchecked.values())
      needed.add(Math.max(...steps.filter((s) => s <= first)));
    for (const s of steps) if (!needed.has(s)) this.anchors.delete(s);
  }

  /** Copies held (each the size of the weights and both moments). */
  get held(): number {
    return this.anchors.size;
  }
}
