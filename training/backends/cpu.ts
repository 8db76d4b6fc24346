/** The pure-JS cpu backend: ~17 s per step, a correctness reference; only used when asked for by name. */
import * as tf from '@tensorflow/tfjs-core';
import { type BackendCandidate, BackendUnavailableError } from './backend.js';

export const cpu: BackendCandidate = {
  name: 'cpu',
  package: '@tensorflow/tfjs-backend-cpu',
  async load() {
    await import('@tensorflow/tfjs-backend-cpu');
    if (!(await tf.setBackend('cpu')))
      throw new BackendUnavailableError('the cpu backend failed to initialise');
    return { name: 'cpu', package: '@tensorflow/tfjs-backend-cpu', gpu: false, trainingKernels: [] };
  },
};
