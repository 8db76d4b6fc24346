/** Training reports as standalone SVG pictures, plus an atomic writer for them. */
import { writeFileAtomic } from '../../common/write-atomic.js';

export { renderConfusionMatrix } from './confusion-matrix.js';
export { renderTrainingCurves, type CurvePoint } from './training-curves.js';

/** Writes a picture atomically, so a browser refreshing the report never sees half of it. */
export const writeSvg = (path: string, svg: string): Promise<void> => writeFileAtomic(path, svg);
