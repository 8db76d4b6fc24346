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
 * Nodes whose mean-gradient norm exceeds `factor` × the step's median. With one node there is
 * nothing to compare with; with two, the median is their mean, so only a factor under 2 can flag.
 */
export function flagOutliers(
  norms: readonly NodeNorm[],
  factor: number,
): { flagged: NodeNorm[]; median: number } {
  const mid = median(norms.map((n) => n.meanNorm));
  return { flagged: norms.length < 2 ? [] : norms.filter((n) => n.meanNorm > factor * mid), median: mid };
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
