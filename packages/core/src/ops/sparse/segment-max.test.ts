import { describeEachBackend, expectClose, guardLeaks, runOp } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { resolveAttrs } from '../../op.js';
import { segmentMax, segmentMaxOp } from './segment-max.js';
import { describeSegmentOp } from './segment-test-cases.js';
import { referenceSegment } from './sparse-test-utils.js';

describeSegmentOp('max', segmentMaxOp, 'SegmentMax');

describeEachBackend('core.SegmentMax with maxSegmentLength', () => {
  guardLeaks();

  it('gives the same maxima with a bound on rows per segment (fewer scan steps)', async () => {
    // Segments of 1 to 5 rows, unsorted; 12 rows would take 4 steps, a bound of 5 takes 3.
    const ids = [3, 0, 3, 1, 3, 0, 2, 3, 1, 3, 5, 0];
    const values = Float32Array.from({ length: 24 }, (_, i) => ((i * 7) % 24) / 10 - 1);
    const data = tf.tensor(values, [12, 2]);
    const segmentIds = tf.tensor1d(ids, 'int32');
    const expected = referenceSegment('max', values, 2, ids, 6);
    for (const maxSegmentLength of [5, 8, 64]) {
      const { outputs } = await runOp(segmentMaxOp, {
        attrs: { numSegments: 6, maxSegmentLength },
        inputs: [data, segmentIds],
      });
      await expectClose(outputs[0]!, expected, { label: `maxSegmentLength ${maxSegmentLength}` });
      tf.dispose(outputs);
    }
    tf.dispose([data, segmentIds]);
  });
});

describe('core.SegmentMax bound', () => {
  it('counts one comparison per element per scan step, fewer with a bound', () => {
    const attrs = resolveAttrs(segmentMaxOp, { numSegments: 6, maxSegmentLength: 4 }, 'max');
    expect(segmentMaxOp.flops(attrs, [[100, 3], [100]], [[6, 3]])).toBe(2 * 300);
    expect(segmentMaxOp.flops({ ...attrs, maxSegmentLength: null }, [[100, 3], [100]], [[6, 3]])).toBe(
      7 * 300,
    );
  });

  it('rejects a bound below 1', () => {
    const x = tf.zeros([2, 1]);
    const ids = tf.tensor1d([0, 0], 'int32');
    expect(() => segmentMax(x, ids, 1, { maxSegmentLength: 0 })).toThrow(
      /positive integer maxSegmentLength, got 0/,
    );
    expect(() => resolveAttrs(segmentMaxOp, { numSegments: 1, maxSegmentLength: 0 }, 'max')).toThrow(
      /minimum 1/,
    );
    tf.dispose([x, ids]);
  });
});
