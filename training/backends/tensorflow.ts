/**
 * Native TensorFlow through tfjs-node(-gpu): an optional peer dependency, never installed by
 * gradfleet, because its install script downloads libtensorflow.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendCandidate, BackendUnavailableError } from './backend.js';

const resolvePackage = createRequire(import.meta.url).resolve;

function isInstalled(pkg: string): boolean {
  try {
    resolvePackage(pkg);
    return true;
  } catch {
    return false;
  }
}

function tensorflowCandidate(pkg: string, gpu: boolean): BackendCandidate {
  return {
    name: 'tensorflow',
    package: pkg,
    async load() {
      if (!isInstalled(pkg)) throw new BackendUnavailableError('not installed');
      try {
        await import(pkg);
        if (!(await tf.setBackend('tensorflow')))
          throw new Error('loaded, but the tensorflow backend failed to initialise');
      } catch (err) {
        throw new BackendUnavailableError(`failed to load: ${(err as Error).message.split('\n')[0]}`);
      }
      return { name: 'tensorflow', package: pkg, gpu, trainingKernels: [] };
    },
  };
}

export const tensorflowGpu = tensorflowCandidate('@tensorflow/tfjs-node-gpu', true);
export const tensorflowCpu = tensorflowCandidate('@tensorflow/tfjs-node', false);
