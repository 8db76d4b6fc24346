/** The data module's public API: loaders, the Dataset type and batch helpers. */
export {
  createDataset,
  fingerprint,
  gatherLabels,
  normalizeInto,
  PIXELS_PER_IMAGE,
  shuffledIndices,
  subset,
  type Dataset,
  type ImageShape,
} from './dataset.js';
export { loadMnist } from './mnist.js';
export { writeKaggleCsv, writeSubmission } from './kaggle-csv.js';
export { loadDataset } from './load.js';
