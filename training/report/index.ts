/** Training reports as standalone SVG pictures, plus an atomic writer for them. */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export { renderConfusionMatrix, type ConfusionMatrixOptions } from './confusion-matrix.js';
export { renderTrainingCurves, type CurvePoint, type TrainingCurvesOptions } from './training-curves.js';

/**
 * Writes `svg` to `path` atomically: into a temporary file beside it, then renamed over it, so a
 * reader (a browser refreshing the report) never sees half a picture. Creates the parent folder.
 */
export async function writeSvg(path: string, svg: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, svg, 'utf8');
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
