import { createModel, createRuntime, GraphBuilder, Trainer, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

tf.env().set('PROD', true);
await useBackend('wasm');
const runtime = createRuntime();
const b = new GraphBuilder(runtime);
let h = b.input('image', 'float32', ['batch', 28, 28, 1]);
for (const f of [16, 32, 64]) {
  h = b.add('core.Conv2D', h, { filters: f, kernelSize: [3, 3], padding: 'same', activation: 'relu' });
  h = b.add('core.MaxPool2D', h, { poolSize: [2, 2] });
}
h = b.add('core.Flatten', h);
const model = createModel(runtime, b.build({ logits: b.add('core.Dense', h, { units: 10 }) }), { seed: 1 });
const trainer = new Trainer(model, { optimizer: tf.train.adam(1e-3) });
const x = tf.randomUniform([64, 28, 28, 1]);
const y = tf.tensor1d(
  Int32Array.from({ length: 64 }, (_, i) => i % 10),
  'int32',
);
for (let i = 0; i < 3; i++) await trainer.step(x, y);
const info = await tf.profile(async () => {
  await trainer.step(x, y);
});
const agg = {};
for (const k of info.kernels) {
  const t = await k.kernelTimeMs;
  const key = k.name + ' ' + JSON.stringify(k.inputShapes);
  agg[key] = (agg[key] || 0) + (typeof t === 'number' ? t : 0);
}
const rows = Object.entries(agg)
  .sort((a, b) => b[1] - a[1])
  .slice(0, 25);
for (const [k, v] of rows) console.log(v.toFixed(1).padStart(7), k);
console.log(
  'total',
  Object.values(agg)
    .reduce((a, b) => a + b, 0)
    .toFixed(1),
);
