/**
 * `mkdir -p` that always ends. Node's own `mkdir(dir, { recursive: true })` loops for ever, at 100%
 * CPU, where the kernel answers ENOENT for a directory whose parent exists (any path under /proc): it
 * takes ENOENT as "the parent is missing", makes the parent (which exists), and tries again. Here a
 * directory is made once after its parents, and an ENOENT whose parent exists is the error it is.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * Makes `dir` and any missing parents; returns the first directory it made (the top of what is new), or
 * undefined when `dir` already existed. Fails where a part of the path is a file (EEXIST/ENOTDIR) or the
 * file system refuses (EACCES, EROFS, ENOENT under /proc …).
 */
export async function makeDir(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir);
    return dir;
  } catch (err) {
    if (codeOf(err) === 'EEXIST') {
      if ((await stat(dir)).isDirectory()) return undefined;
      throw err;
    }
    const parent = dirname(dir);
    if (codeOf(err) !== 'ENOENT' || parent === dir || (await exists(parent))) throw err;
    const first = await makeDir(parent);
    try {
      await mkdir(dir);
    } catch (again) {
      // Made meanwhile by someone else: as good as made here.
      if (codeOf(again) !== 'EEXIST' || !(await stat(dir)).isDirectory()) throw again;
    }
    return first;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
