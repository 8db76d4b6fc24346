/** Flag parsers shared by the subcommands: each rejects bad input with a message naming the flag's rule. */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { type WireDtype, parseWireDtype } from '../protocol/wire-dtype.js';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** A comma-separated list of positive integers, e.g. `--threads 1,2`. */
export function positiveIntList(value: string): number[] {
  return value.split(',').map((part) => positiveInt(part.trim()));
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

export function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('expected a port number, 0 to 65535 (0: any free port)');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number ≥ 0');
  return n;
}

/** A share in [0, 1], e.g. of items to check. */
export function share(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a number in [0, 1]');
  return n;
}

/** A factor in (0, 1], e.g. a decay. */
export function unitFraction(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a number in (0, 1]');
  return n;
}

export function wireDtype(value: string): WireDtype {
  try {
    return parseWireDtype(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function oneOf<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if ((choices as readonly string[]).includes(value)) return value as T;
    throw new InvalidArgumentError(`expected one of: ${choices.join(', ')}`);
  };
}

/** Reads the file a flag names, failing with the flag and the reason (not a bare ENOENT). */
export function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(
      `${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
}

/** Prints the result object as the last line on stdout (the --json contract). */
export function printJson(result: object): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** A repeatable flag's values, in the order given (commander passes the default array first). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
