import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { describeEachBackend, isGpuBackend } from './backends.js';
import { expectClose, toleranceFor } from './closeness.js';

describeEachBackend('expectClose', (backend) => {
  it('uses 1e-5 on cpu/wasm and 1e-3 on GPU backends', () => {
    expect(toleranceFor(backend)).toBe(isGpuBackend(backend) ? 1e-3 : 1e-5);
  });

  it('accepts values within tolerance', async () => {
    const a = tf.tensor([1, 2, 3]);
    await expectClose(a, [1, 2 + toleranceFor(backend) / 2, 3]);
    a.dispose();
  });

  it('fails on a wrong value, naming the element', async () => {
    const a = tf.tensor([1, 2, 3]);
    await expect(expectClose(a, [1, 2.01, 3], { label: 'case' })).rejects.toThrow(
      /case: value 1 is 2, expected 2.01/,
    );
    a.dispose();
  });

  it('fails on a shape mismatch and on NaN', async () => {
    const a = tf.tensor([1, 2, 3, 4], [2, 2]);
    const b = tf.tensor([1, 2, 3, 4], [4]);
    await expect(expectClose(a, b)).rejects.toThrow(/shape \[2,2\] differs/);
    await expect(expectClose([Number.NaN], [1])).rejects.toThrow(/value 0 is NaN/);
    tf.dispose([a, b]);
  });
});
