/**
 * The one error type the data module throws for bad input. Callers (CLI, coordinator, workers)
 * catch it to print a one-line diagnosis instead of a stack trace, so the message always starts
 * with the file (and line, where there is one) that is wrong.
 */
export class DataError extends Error {
  override name = 'DataError';

  /**
   * @param source  the file path, or `path` plus a line reference, that the problem is in
   * @param problem what is wrong, phrased so that `${source}: ${problem}` reads as a sentence
   */
  constructor(
    readonly source: string,
    readonly problem: string,
    options?: ErrorOptions,
  ) {
    super(`${source}: ${problem}`, options);
  }
}
