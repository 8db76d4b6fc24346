/** The median of a benchmark's samples (the upper one of an even count: always a measured value). */
export const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
