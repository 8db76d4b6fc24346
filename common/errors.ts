/**
 * Errors a caller tells apart by kind. A `UsageError` is a command line that cannot run as given (a flag's
 * value, or flags that exclude or need each other): the CLI prints its message alone on one line and exits
 * non-zero, with no stack even under GRADFLEET_DEBUG, since it is the user's to fix and no bug to trace.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}
