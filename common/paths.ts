/** Where a path really leads: for rules such as "only files inside this folder". */
import { realpathSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';

/** Whether `path` resolves (links followed) to somewhere inside `dir`; false when either does not exist. */
export function resolvesInside(path: string, dir: string): boolean {
  try {
    const rel = relative(realpathSync(dir), realpathSync(path));
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  } catch {
    return false;
  }
}
