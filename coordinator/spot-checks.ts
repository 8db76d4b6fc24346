/**
 * Spot checks (--verify-fraction p): a secret-seeded random share of each step's tree nodes and of each
 * evaluation's test chunks is computed again by another worker before it counts. Training is deterministic,
 * so two honest workers on the same backend give the same bits: a worker that lies about any checked node
 * (flipped signs, scaled values, wrong labels, a made-up loss) is caught outright, and one that lies about a
 * share q of its nodes escapes a step with probability (1 − p)^(its checked-eligible lies).
 *
 * The choice is an HMAC of the item's name under a key drawn at start and never sent: a worker cannot tell
 * which of its nodes will be checked, so it cannot lie only where it is safe. Pure apart from the key.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { UsageError } from '../common/errors.js';
import { RECHECK_TOLERANCE, nodesAgree } from './outliers.js';

/** Where checked items come from, keyed so that a worker cannot predict the choice. */
export class SpotChecks {
  constructor(
    readonly fraction: number,
    private readonly key: Uint8Array = randomBytes(32),
  ) {
    if (!(fraction >= 0 && fraction <= 1))
      throw new RangeError(`fraction must be in [0, 1], got ${fraction}`);
  }

  /** Whether the item named `what` (e.g. "step 12 node 1:3") is recomputed. */
  picks(what: string): boolean {
    if (this.fraction === 0) return false;
    if (this.fraction === 1) return true;
    return this.rank(what) < this.fraction;
  }

  /**
   * The items picked among `items`, and with the checks on, at least one of each owner's: for test chunks,
   * which are cheap and come once an epoch, so that a worker faking all of its share is always caught.
   */
  picksEach<T extends { owner: string }>(items: readonly T[], nameOf: (item: T) => string): T[] {
    if (this.fraction === 0) return [];
    const picked = new Set(items.filter((item) => this.picks(nameOf(item))));
    const lowest = new Map<string, { item: T; rank: number }>();
    for (const item of items) {
      const rank = this.rank(nameOf(item));
      const best = lowest.get(item.owner);
      if (!best || rank < best.rank) lowest.set(item.owner, { item, rank });
    }
    for (const { item } of lowest.values()) picked.add(item);
    return items.filter((item) => picked.has(item));
  }

  /** Uniform in [0, 1), unpredictable without the key. */
  private rank(what: string): number {
    const digest = createHmac('sha256', this.key).update(what).digest();
    return digest.readUIntBE(0, 6) / 2 ** 48;
  }
}

/**
 * GRADFLEET_VERIFY_KEY (64 hex digits) fixes the draw, so that a test or an investigation can replay which
 * items a run checked; kept as secret as the run secret. Unset: a fresh random key.
 */
export function spotCheckKeyOf(env: NodeJS.ProcessEnv): Uint8Array | undefined {
  const hex = env.GRADFLEET_VERIFY_KEY;
  if (hex === undefined || hex === '') return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new UsageError('GRADFLEET_VERIFY_KEY must be 64 hex digits');
  return Buffer.from(hex, 'hex');
}

/**
 * The chance that a worker lying in `lies` checked-eligible items (its nodes over some steps) is caught:
 * 1 − (1 − p)^lies.
 */
export function detectionProbability(fraction: number, lies: number): number {
  return 1 - (1 - fraction) ** lies;
}

/** A tree node's result as two computations can be compared. */
export interface NodeResult {
  values: Float32Array;
  lossSum: number;
  correct: number;
}

/** A test chunk's result: a class per sample, and the chunk's loss sum. */
export interface ChunkResult {
  predictions: Float32Array;
  lossSum: number;
}

export interface Comparison {
  agree: boolean;
  /** What differs, in words, for the evidence in the log. */
  detail: string;
}

/** Across backends, argmax may go the other way near a tie: this share of the samples (at least one). */
const NEAR_TIES = 0.01;

function lossesDiffer(a: number, b: number, exact: boolean): Comparison | undefined {
  const scale = Math.max(Math.abs(a), Math.abs(b));
  const off = scale === 0 ? 0 : Math.abs(a - b) / scale;
  if (exact ? a !== b : !(off <= RECHECK_TOLERANCE))
    return { agree: false, detail: `loss sums differ: ${a} against ${b}` };
  return undefined;
}

/**
 * Two computations of the same node. `exact` (same backend): every bit, the loss and the count must match.
 * Across backends the values may differ by RECHECK_TOLERANCE (relative L2), the loss likewise, and the
 * correct count by NEAR_TIES of the samples.
 */
export function compareNodes(a: NodeResult, b: NodeResult, exact: boolean, samples: number): Comparison {
  if (a.values.length !== b.values.length)
    return { agree: false, detail: `${a.values.length} values against ${b.values.length}` };
  const values = nodesAgree(a.values, b.values, exact ? 0 : RECHECK_TOLERANCE);
  if (exact ? !values.identical : !values.agree)
    return {
      agree: false,
      detail: `values differ (relative distance ${values.relativeDistance.toPrecision(3)})`,
    };
  const loss = lossesDiffer(a.lossSum, b.lossSum, exact);
  if (loss) return loss;
  const off = Math.abs(a.correct - b.correct);
  if (exact ? off !== 0 : off > Math.max(1, samples * NEAR_TIES))
    return { agree: false, detail: `correct counts differ: ${a.correct} against ${b.correct}` };
  return { agree: true, detail: values.identical ? 'identical' : 'within tolerance' };
}

/**
 * Two computations of the same test chunk: the same predictions and loss (`exact`), or across backends at
 * most NEAR_TIES of the predictions different and the loss within RECHECK_TOLERANCE.
 */
export function compareChunks(a: ChunkResult, b: ChunkResult, exact: boolean): Comparison {
  if (a.predictions.length !== b.predictions.length)
    return { agree: false, detail: `${a.predictions.length} predictions against ${b.predictions.length}` };
  let differ = 0;
  for (let i = 0; i < a.predictions.length; i++) if (a.predictions[i] !== b.predictions[i]) differ++;
  if (exact ? differ !== 0 : differ > Math.max(1, a.predictions.length * NEAR_TIES))
    return { agree: false, detail: `${differ} of ${a.predictions.length} predictions differ` };
  const loss = lossesDiffer(a.lossSum, b.lossSum, exact);
  if (loss) return loss;
  return { agree: true, detail: differ === 0 && a.lossSum === b.lossSum ? 'identical' : 'within tolerance' };
}
