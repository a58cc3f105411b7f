import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-layers';

tf.env().set('PROD', true);
await tf.setBackend('wasm');
async function time(label, f, n = 10) {
  for (let i = 0; i < 3; i++) tf.tidy(f);
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const r = tf.tidy(f);
    await r.data();
    r.dispose();
  }
  console.log(label, ((performance.now() - t) / n).toFixed(2));
}
const a = tf.randomUniform([64, 7, 7, 32]);
const wa = tf.randomUniform([3, 3, 32, 64]);
const b = tf.randomUniform([64, 9, 9, 64]);
const wb = tf.randomUniform([3, 3, 64, 32]);
await time('fwd same 7x7 32->64 reuse w', () => tf.conv2d(a, wa, 1, 'same'));
await time('grad valid 9x9 64->32 reuse w', () => tf.conv2d(b, wb, 1, 'valid'));
await time('grad valid 9x9 64->32 fresh w', () => tf.conv2d(b, tf.add(wb, 0), 1, 'valid'));
await time('fwd same fresh w', () => tf.conv2d(a, tf.add(wa, 0), 1, 'same'));
const c = tf.randomUniform([64, 7, 7, 64]);
await time('grad same 7x7 64->32 reuse', () => tf.conv2d(c, wb, 1, 'same'));
const x = tf.randomUniform([64, 28, 28, 16]);
await time('maxpool', () => tf.maxPool(x, 2, 2, 'valid'));
await time('maxpool grad', () => tf.grad((v) => tf.maxPool(v, 2, 2, 'valid'))(x));
await time('reshape-max', () => tf.max(tf.reshape(x, [64, 14, 2, 14, 2, 16]), [2, 4]));
await time('reshape-max grad', () =>
  tf.grad((v) => tf.max(tf.reshape(v, [64, 14, 2, 14, 2, 16]), [2, 4]))(x),
);
const dy = tf.randomUniform([50176, 16]);
await time('bias sum', () => tf.sum(dy, 0));
await time('bias ones matmul', () => tf.matMul(tf.ones([1, 50176]), dy));
const up = (t, b, h2, w2, c) =>
  tf.reshape(tf.mul(tf.reshape(t, [b, h2, 1, w2, 1, c]), tf.ones([1, 1, 2, 1, 2, 1])), [
    b,
    h2 * 2,
    w2 * 2,
    c,
  ]);
await time('mask grad', () => {
  const y = tf.maxPool(x, 2, 2, 'valid');
  const dy = tf.onesLike(y);
  const mask = tf.equal(x, up(y, 64, 14, 14, 16));
  return tf.mul(tf.cast(mask, 'float32'), up(dy, 64, 14, 14, 16));
});
await time('mask grad where', () => {
  const y = tf.maxPool(x, 2, 2, 'valid');
  const dy = tf.onesLike(y);
  return tf.where(tf.equal(x, up(y, 64, 14, 14, 16)), up(dy, 64, 14, 14, 16), tf.zerosLike(x));
});
await time('resizeNN up', () => tf.image.resizeNearestNeighbor(tf.maxPool(x, 2, 2, 'valid'), [28, 28]));
