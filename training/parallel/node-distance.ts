/**
 * How far apart two versions of a tree node are (--outlier-factor's recheck): the sums that
 * relative L2 distance is made of, over any part of the vector, so that shard reducers can each
 * measure their slice and the coordinator add the parts up. Pure.
 */

export interface DistanceSums {
  /** Σ (a − b)², Σ a², Σ b², each in float64. */
  diffSquares: number;
  squares: number;
  againstSquares: number;
  /** Every value has the same bits in both. */
  identical: boolean;
}

export function distanceSums(a: Float32Array, b: Float32Array): DistanceSums {
  if (a.length !== b.length) throw new RangeError(`${a.length} values against ${b.length}`);
  let diffSquares = 0;
  let squares = 0;
  let againstSquares = 0;
  let identical = true;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    if (!Object.is(a[i], b[i])) identical = false;
    diffSquares += d * d;
    squares += a[i] * a[i];
    againstSquares += b[i] * b[i];
  }
  return { diffSquares, squares, againstSquares, identical };
}

/** The sums of two parts of the same pair of vectors. */
export function addDistanceSums(x: DistanceSums, y: DistanceSums): DistanceSums {
  return {
    diffSquares: x.diffSquares + y.diffSquares,
    squares: x.squares + y.squares,
    againstSquares: x.againstSquares + y.againstSquares,
    identical: x.identical && y.identical,
  };
}
