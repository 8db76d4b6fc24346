import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '/work/main/dist/training/backends/select.js';
const threads = +process.argv[2];
await selectBackend('native', undefined, { threads });
const x = tf.randomNormal([64, 6272]), dy = tf.randomNormal([64, 512]);
for (const [name, f] of [['xT.dy [6272x512]', () => tf.matMul(x, dy, true, false)], ['dyT.x [512x6272]', () => tf.matMul(dy, x, true, false)]]) {
  const times = [];
  for (let i = 0; i < 25; i++) { const t = performance.now(); const r = f(); times.push(performance.now() - t); r.dispose(); }
  times.sort((a, b) => a - b); console.log(threads, name, times[12].toFixed(2), 'ms', (411e6 / times[12] / 1e6).toFixed(1), 'GFLOP/s');
}
