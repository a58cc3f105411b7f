import { Trainer, useBackend } from '@dynn/core';
import { expectNoLeaks, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { paramValues, residualBlockModel } from './test-models.js';
import { upcycleModel } from './upcycle.js';

// Training behaviour on wasm alone: the MoE op's training on every backend is tested in moe-op.test.ts.
beforeAll(async () => {
  await useBackend('wasm');
});

it('trains the router from scratch, and the copies diverge into different experts', async () => {
  const dense = residualBlockModel();
  const moe = upcycleModel(dense, { node: 'ffn1', experts: 4, k: 2, seed: 1 });
  dense.dispose();
  const x = seededNormal([8, 3, 8], { seed: 4 });
  const y = seededNormal([8, 3, 4], { seed: 5 });
  const router = await paramValues(moe, 'ffn1/kernel');
  const trainer = new Trainer(moe, { loss: 'meanSquaredError', optimizer: tf.train.adam(0.01) });
  // The first step creates the optimizer's slots; later steps must allocate nothing that stays.
  const first = await trainer.step(x, y, 1);
  let last = first;
  await expectNoLeaks(async () => {
    for (let step = 2; step <= 5; step++) last = await trainer.step(x, y, step);
  });
  expect(last.loss).toBeLessThan(first.loss);
  const learned = await paramValues(moe, 'ffn1/kernel');
  expect(learned.some((v, i) => Math.abs(v - router[i]!) > 1e-3)).toBe(true);
  // Each copy saw other tokens with other weights: no two experts are alike any more.
  const experts = await Promise.all([0, 1, 2, 3].map((e) => paramValues(moe, `ffn1/experts/${e}/up/kernel`)));
  for (let a = 0; a < 4; a++) {
    for (let b = a + 1; b < 4; b++) {
      expect(experts[a]!.some((v, i) => Math.abs(v - experts[b]![i]!) > 1e-4)).toBe(true);
    }
  }
  tf.dispose([x, y]);
  moe.dispose();
});
