import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { describeEachBackend } from './backends.js';
import { seededInts, seededNormal, seededUniform } from './random-tensors.js';

describeEachBackend('seeded tensors', () => {
  it('repeat for the same seed and differ for another', async () => {
    const [a, b, c] = [
      seededUniform([64], { seed: 7 }),
      seededUniform([64], { seed: 7 }),
      seededUniform([64], { seed: 8 }),
    ];
    const [av, bv, cv] = await Promise.all([a.data(), b.data(), c.data()]);
    expect(av).toEqual(bv);
    expect(av).not.toEqual(cv);
    for (const v of av) expect(v >= -1 && v < 1).toBe(true);
    tf.dispose([a, b, c]);
  });

  it('draw normals with the requested moments and ints in range', async () => {
    const n = seededNormal([20000], { seed: 3, mean: 2, std: 0.5 });
    const values = Array.from(await n.data());
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
    expect(mean).toBeCloseTo(2, 1);
    expect(Math.sqrt(variance)).toBeCloseTo(0.5, 1);
    const ints = seededInts([1000], 5, { seed: 1 });
    expect(ints.dtype).toBe('int32');
    expect(new Set(await ints.data())).toEqual(new Set([0, 1, 2, 3, 4]));
    tf.dispose([n, ints]);
  });
});
