/**
 * The per-node outlier check (--outlier-factor): a tree node whose gradient is far larger than the
 * step's typical node is recomputed by another worker before it may count. Pure: norms in, verdicts out.
 *
 * Nodes cover different numbers of samples (a worker pre-reduces whole subtrees), so they are
 * compared by the norm of their mean gradient, ‖sum‖ / samples: a node of many micro-batches is not
 * flagged for being a sum of many. The median is robust: one poisoned node cannot move it far.
 */
import { type DistanceSums, distanceSums } from '../training/parallel/node-distance.js';
import type { TreeNode } from '../training/parallel/reduction-tree.js';
import { median } from './stragglers.js';

export interface NodeNorm {
  key: string;
  node: TreeNode;
  /** Who sent it. */
  workerId: string;
  /** ‖values‖ / samples over the trainable parameters. */
  meanNorm: number;
}

/**
 * Nodes whose mean-gradient norm exceeds `factor` × the median. With three nodes or more, the step's own
 * median; with fewer (two workers' nodes: their median is their mean, which a factor of 2 or more never
 * exceeds), the median of the step's nodes and the run's recent accepted ones (`history`).
 */
export function flagOutliers(
  norms: readonly NodeNorm[],
  factor: number,
  history: readonly number[] = [],
): { flagged: NodeNorm[]; median: number } {
  const own = norms.map((n) => n.meanNorm);
  const basis = own.length >= 3 ? own : [...history, ...own];
  const mid = median(basis);
  return { flagged: basis.length < 2 ? [] : norms.filter((n) => n.meanNorm > factor * mid), median: mid };
}

/** The mean-gradient norms of the run's last accepted nodes, oldest first: what a small step is compared with. */
export class NormHistory {
  private readonly norms: number[] = [];

  constructor(private readonly size = 64) {}

  add(norms: readonly number[]): void {
    this.norms.push(...norms);
    this.norms.splice(0, Math.max(0, this.norms.length - this.size));
  }

  get values(): readonly number[] {
    return this.norms;
  }
}

/**
 * How far a recomputation may differ and still confirm the original: relative L2 distance. The
 * same build on the same backend gives the same bits (the usual case, checked first); other backends
 * (wasm, native, tfjs) sum in other orders and differ in the last digits, ~1e-6 relative. A node
 * that passes is within 0.1% of an honest one, so whatever it hides moves the step by no more than
 * that, while a flagged poisoned node is off by at least the outlier factor.
 */
export const RECHECK_TOLERANCE = 1e-3;

export interface Agreement {
  agree: boolean;
  identical: boolean;
  /** ‖a − b‖ / max(‖a‖, ‖b‖) over the given values (0 when both are zero). */
  relativeDistance: number;
}

export function nodesAgree(
  original: Float32Array,
  recomputed: Float32Array,
  tolerance = RECHECK_TOLERANCE,
): Agreement {
  if (original.length !== recomputed.length)
    return { agree: false, identical: false, relativeDistance: Infinity };
  return agreementOf(distanceSums(original, recomputed), tolerance);
}

/** The verdict on a recomputation from its distance sums (over the whole vector, or added up from slices). */
export function agreementOf(sums: DistanceSums, tolerance = RECHECK_TOLERANCE): Agreement {
  const { diffSquares, squares, againstSquares, identical } = sums;
  const scale = Math.sqrt(Math.max(squares, againstSquares));
  const relativeDistance = scale === 0 ? 0 : Math.sqrt(diffSquares) / scale;
  return { agree: identical || relativeDistance <= tolerance, identical, relativeDistance };
}
