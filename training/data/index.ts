/** The data module's public API: loaders, the Dataset type and batch helpers. */
export { DataError } from './errors.js';
export {
  createDataset,
  fingerprint,
  gatherLabels,
  IMAGE_HEIGHT,
  IMAGE_WIDTH,
  labelCounts,
  MNIST_MEAN,
  MNIST_STD,
  normalizeInto,
  normalizePixel,
  NUM_CLASSES,
  PIXELS_PER_IMAGE,
  shuffledIndices,
  splitValidation,
  subset,
  type Dataset,
  type ImageShape,
  MNIST_SHAPE,
  type ValidationSplit,
} from './dataset.js';
export {
  encodeIdx,
  IDX_DTYPE_UBYTE,
  IDX_IMAGES_MAGIC,
  IDX_LABELS_MAGIC,
  parseIdx,
  readIdx,
  readIdxImages,
  readIdxLabels,
  type IdxImages,
  type IdxTensor,
} from './idx.js';
export {
  defaultMnistDir,
  findMnistFiles,
  labelsPathFor,
  loadMnist,
  loadMnistFiles,
  mnistFileNames,
  type MnistFiles,
  type MnistSplit,
} from './mnist.js';
export {
  formatKaggleCsv,
  formatSubmission,
  kaggleCsvKind,
  loadKaggleCsv,
  parseKaggleCsv,
  writeKaggleCsv,
  writeSubmission,
  type KaggleCsvKind,
} from './kaggle-csv.js';
export { loadDataset } from './load.js';
export { isGzip, readDataFile } from './read-bytes.js';
