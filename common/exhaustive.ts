/**
 * The `default` of a switch over a union: a new member that no case handles fails to compile
 * here (its type is not `never`), and a value from outside the types (bad JSON) fails loudly at
 * run time instead of being silently skipped.
 */
export function unreachable(value: never, what: string): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(value)}`);
}
