/**
 * Writes a file so that a reader never sees half of it: into a temporary file beside it, then
 * renamed over it (the parent folder is created, by makeDir, which fails rather than loops where it
 * cannot be). Checkpoints add fsyncs on top of this pattern in coordinator/checkpoint-store.ts,
 * because they must also survive a power cut.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { makeDir } from './make-dir.js';

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await makeDir(dir);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
