import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
await tf.setBackend('wasm');
await tf.ready();
const names = tf.getKernelsForBackend('wasm').map(k=>k.kernelName).sort();
console.log(names.length, names.join(' '));
console.log(tf.env().getBool('WASM_HAS_SIMD_SUPPORT'), tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT'));
