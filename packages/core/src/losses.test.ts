import { describeEachBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkTargetShape, checkTargetValues, correctCount } from './losses.js';

const logits = { name: 'logits', shape: ['batch', 3] };
const sequence = { name: 'tokens', shape: ['batch', 5, 4] };

describe('checkTargetShape', () => {
  it('accepts the shapes each loss reads', () => {
    expect(() => checkTargetShape('sparseCategoricalCrossentropy', [8], logits, 'y')).not.toThrow();
    expect(() => checkTargetShape('sparseCategoricalCrossentropy', [8, 1], logits, 'y')).not.toThrow();
    expect(() => checkTargetShape('sparseCategoricalCrossentropy', [8, 5], sequence, 'y')).not.toThrow();
    expect(() => checkTargetShape('categoricalCrossentropy', [8, 3], logits, 'y')).not.toThrow();
    expect(() => checkTargetShape('categoricalCrossentropy', [8, 5, 4], sequence, 'y')).not.toThrow();
    expect(() => checkTargetShape('meanSquaredError', [8, 3], logits, 'y')).not.toThrow();
  });

  it('names one-hot/sparse mix-ups and other shapes', () => {
    expect(() => checkTargetShape('sparseCategoricalCrossentropy', [8, 5, 4], sequence, 'y')).toThrow(
      /y has shape \[8, 5, 4\]: one-hot rows.*shape \[8, 5\]/,
    );
    expect(() => checkTargetShape('categoricalCrossentropy', [8, 5], sequence, 'y')).toThrow(
      /y has shape \[8, 5\]: class indices.*shape \[8, 5, 4\].*tf\.oneHot\(y, 4\)/,
    );
    expect(() => checkTargetShape('categoricalCrossentropy', [8, 1], logits, 'y')).toThrow(/class indices/);
    expect(() => checkTargetShape('categoricalCrossentropy', [8, 7], logits, "y 'logits'")).toThrow(
      /^y 'logits' has shape \[8, 7\] but loss 'categoricalCrossentropy' on output 'logits' \(\[batch, 3\]\)/,
    );
    expect(() => checkTargetShape('sparseCategoricalCrossentropy', [8, 2, 2], logits, 'y')).toThrow(
      /wants one class index per row, shape \[8\]/,
    );
    // Targets of another shape would broadcast silently into a wrong mean squared error.
    expect(() =>
      checkTargetShape('meanSquaredError', [8], { name: 'out', shape: ['batch', 1] }, 'y'),
    ).toThrow(
      /y has shape \[8\] but output 'out' \(\[batch, 1\]\) gives \[8, 1\].*tf\.reshape\(y, \[8, 1\]\)/,
    );
  });
});

describe('checkTargetValues', () => {
  it('names the offending label, its row and the number of classes', () => {
    expect(() => checkTargetValues('sparseCategoricalCrossentropy', [0, 2, 3], [3], logits, 'y')).toThrow(
      /^y holds label 3 at row 2, but output 'logits' has 3 classes, so labels must be integers 0\.\.2/,
    );
    expect(() =>
      checkTargetValues('sparseCategoricalCrossentropy', [0, 1, 2, 3, 0, 9], [2, 3], sequence, 'y'),
    ).toThrow(/^y holds label 9 at row 1 \(element \[1, 2\]\), but output 'tokens' has 4 classes/);
    expect(() => checkTargetValues('categoricalCrossentropy', [0, 0, 2], [1, 3], logits, 'y')).toThrow(
      /y holds 2 at row 0 \(element \[0, 2\]\).*values in \[0, 1\].*'sparseCategoricalCrossentropy'/,
    );
    expect(() =>
      checkTargetValues('categoricalCrossentropy', [0.1, 0.2, 0.7], [1, 3], logits, 'y'),
    ).not.toThrow();
    expect(() => checkTargetValues('meanSquaredError', [7, -3], [2, 1], logits, 'y')).not.toThrow();
  });
});

describeEachBackend('correctCount', () => {
  it('reads [N, 1] targets as class indices when told they are sparse', async () => {
    const predictions = tf.tensor2d([
      [0, 1, 0],
      [2, 0, 0],
      [0, 0, 3],
    ]);
    const column = tf.tensor2d([[1], [0], [1]]);
    const oneHot = tf.tensor2d([
      [0, 1, 0],
      [0, 0, 1],
      [0, 0, 1],
    ]);
    const flat = tf.reshape(column, [3]);
    const counts = [
      correctCount(predictions, column, true),
      correctCount(predictions, flat),
      correctCount(predictions, oneHot),
      correctCount(predictions, oneHot, false),
    ];
    expect(await Promise.all(counts.map(async (c) => (await c.data())[0]))).toEqual([2, 2, 2, 2]);
    tf.dispose([predictions, column, flat, oneHot, ...counts]);
  });
});
