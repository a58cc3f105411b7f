// Shared by this folder's tests only (not exported by the package): the conformance tests every
// segment reduction runs, on every backend.
import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
import { BATCH, type ValueInfo } from '../../ir.js';
import { type OpDef, resolveAttrs } from '../../op.js';
import type { SegmentAttrs } from './segment-attrs.js';
import {
  forwardOnce,
  opInputGrads,
  referenceSegment,
  referenceSegmentGrad,
  type SegmentKind,
} from './sparse-test-utils.js';

const SEGMENTS = 6;
/** Unsorted ids with repeats; segments 3 and 5 are empty. */
const UNSORTED = [2, 0, 2, 4, 0, 2, 1];
/** Ascending ids with repeats; segments 3 and 5 are empty. */
const SORTED = [0, 0, 1, 2, 2, 2, 4];
/**
 * 7 rows of 3 distinct values spaced 0.1 apart in [-1, 1] (a permutation): finite differences of
 * a max with a step of 3e-2 never cross a tie.
 */
const DISTINCT = Float32Array.from({ length: 21 }, (_, i) => ((i * 8) % 21) / 10 - 1);
/** Rows with ties: r0, r2 and r5 share their first two values, r2 and r5 are equal, r1 and r4 share two. */
const TIED_ROWS = [
  [0.5, -0.2, 0.1],
  [0.3, 0.3, -0.4],
  [0.5, -0.2, 0.7],
  [-0.6, -0.9, -0.1],
  [0.3, 0.2, -0.4],
  [0.5, -0.2, 0.7],
  [-0.8, -0.3, -0.5],
];
/** The tied rows for UNSORTED: segment 2 holds r0, r2, r5; segment 0 holds r1, r4. */
const TIED = Float32Array.from(TIED_ROWS.flat());
/** The tied rows for SORTED: segment 2 holds r0, r2, r5 again. */
const TIED_SORTED = Float32Array.from([1, 3, 4, 0, 2, 5, 6].flatMap((r) => TIED_ROWS[r]!));

interface Variant {
  label: string;
  ids: number[];
  sorted: boolean;
}

const VARIANTS: Variant[] = [
  { label: 'unsorted ids', ids: UNSORTED, sorted: false },
  { label: 'sorted ids, sorted: true', ids: SORTED, sorted: true },
  { label: 'sorted ids, sorted: false', ids: SORTED, sorted: false },
];

/**
 * Declares the conformance tests of one segment reduction: forward against a plain reference
 * (repeats, empty segments, sorted and unsorted ids, ties, numSegments given by attribute or by a
 * third input, rank-3 data, no rows), gradients against the reference and finite differences, on
 * every backend with leak checks; then shapes, errors, channels and FLOPs.
 */
export function describeSegmentOp(kind: SegmentKind, def: OpDef<SegmentAttrs>, name: string): void {
  describeEachBackend(def.type, () => {
    guardLeaks();

    it('matches a plain reference: repeats, empty segments, sorted and unsorted ids, both ways to count segments', async () => {
      for (const values of [DISTINCT, TIED, DISTINCT.map((v) => v - 3)]) {
        for (const { label, ids, sorted } of VARIANTS) {
          const data = tf.tensor(values, [7, 3]);
          const segmentIds = tf.tensor1d(ids, 'int32');
          const like = tf.zeros([SEGMENTS, 2], 'int32');
          const expected = referenceSegment(kind, values, 3, ids, SEGMENTS);
          const { outputs } = await runOp(def, {
            attrs: { numSegments: SEGMENTS, sorted },
            inputs: [data, segmentIds],
          });
          // The harness names every input's first dimension `batch`: the third input runs directly.
          const fromLike = forwardOnce(def, { sorted }, [data, segmentIds, like]);
          for (const [how, out] of [
            ['numSegments', outputs[0]!],
            ['third input', fromLike],
          ] as const) {
            expect(out.shape).toEqual([SEGMENTS, 3]);
            await expectClose(out, expected, { label: `${label}, ${how}` });
          }
          tf.dispose([...outputs, fromLike]);
          tf.dispose([data, segmentIds, like]);
        }
      }
    });

    it('reduces rank-3 rows and gives zeros for no rows', async () => {
      const values = seededUniform([5, 2, 2], { seed: 3, min: -1, max: 1 });
      const ids = [1, 1, 0, 3, 1];
      const segmentIds = tf.tensor1d(ids, 'int32');
      const { outputs } = await runOp(def, { attrs: { numSegments: 4 }, inputs: [values, segmentIds] });
      expect(outputs[0]!.shape).toEqual([4, 2, 2]);
      await expectClose(outputs[0]!, referenceSegment(kind, await values.data(), 4, ids, 4));
      const none = tf.zeros([0, 3]);
      const noIds = tf.tensor1d([], 'int32');
      const empty = await runOp(def, { attrs: { numSegments: 2 }, inputs: [none, noIds] });
      expect(empty.outputs[0]!.shape).toEqual([2, 3]);
      await expectClose(empty.outputs[0]!, [0, 0, 0, 0, 0, 0]);
      tf.dispose([values, segmentIds, none, noIds, ...outputs, ...empty.outputs]);
    });

    // With 7 (odd) rows this also guards scatterRows' webgl fix: webgl's packed ScatterNd read an
    // 8th row from texture padding and counted an extra tie.
    it(`has the reference gradient${kind === 'max' ? ', split equally among tied maxima' : ''}`, async () => {
      const weights = seededUniform([SEGMENTS, 3], { seed: 5, min: -1, max: 1 });
      const w = await weights.data();
      for (const { label, ids, sorted } of VARIANTS) {
        const values = ids === UNSORTED ? TIED : TIED_SORTED;
        const data = tf.tensor(values, [7, 3]);
        const segmentIds = tf.tensor1d(ids, 'int32');
        const [grad] = opInputGrads(def, { numSegments: SEGMENTS, sorted }, [data, segmentIds], weights, [0]);
        await expectClose(grad!, referenceSegmentGrad(kind, values, 3, ids, SEGMENTS, w), { label });
        tf.dispose([data, segmentIds, grad!]);
      }
      weights.dispose();
    });

    it('has finite-difference gradients', async () => {
      for (const { ids, sorted } of VARIANTS.slice(0, 2)) {
        const data = tf.tensor(DISTINCT, [7, 3]);
        const segmentIds = tf.tensor1d(ids, 'int32');
        await checkOpGradients(def, { attrs: { numSegments: SEGMENTS, sorted }, inputs: [data, segmentIds] });
        tf.dispose([data, segmentIds]);
      }
    });
  });

  describe(`${def.type} shapes, errors, channels and FLOPs`, () => {
    const data: ValueInfo = { name: 'data', dtype: 'float32', shape: ['tokens', 4] };
    const ids: ValueInfo = { name: 'ids', dtype: 'int32', shape: ['tokens'] };
    const nodes: ValueInfo = { name: 'nodes', dtype: 'float32', shape: [BATCH, 8] };
    const fixed = resolveAttrs(def, { numSegments: 5 }, 'seg');
    const fromInput = resolveAttrs(def, {}, 'seg');

    it('gives [segments, ...row] with symbolic rows, from numSegments or from the third input', () => {
      expect(def.inferShape(fixed, [data, ids])).toEqual([{ shape: [5, 4], dtype: 'float32' }]);
      expect(def.inferShape(fromInput, [data, ids, nodes])).toEqual([
        { shape: [BATCH, 4], dtype: 'float32' },
      ]);
      expect(fixed.sorted).toBe(false);
    });

    it('names what is wrong: dtypes, ranks, row counts, the segment count', () => {
      const fail = (attrs: SegmentAttrs, inputs: ValueInfo[], pattern: RegExp) =>
        expect(() => def.inferShape(attrs, inputs)).toThrow(pattern);
      fail(
        fixed,
        [data, { ...ids, dtype: 'float32' }],
        new RegExp(`${name} needs int32 segment ids, got float32`),
      );
      fail(fixed, [{ ...data, dtype: 'int32' }, ids], /needs float32 data, got int32\[tokens, 4\]/);
      fail(fixed, [{ ...data, shape: [] }, ids], /data of rank >= 1/);
      fail(fixed, [data, { ...ids, shape: ['tokens', 2] }], /segment ids of rank 1, got \[tokens, 2\]/);
      fail(fixed, [data, { ...ids, shape: ['edges'] }], /one id per row of data \[tokens, 4\]/);
      fail(fixed, [data, ids, nodes], /from numSegments or from a third input, not both/);
      fail(fromInput, [data, ids], /needs the number of segments/);
      fail(fromInput, [data, ids, { ...nodes, shape: [] }], /first dimension.*scalar/);
      expect(() => resolveAttrs(def, { numSegments: -1 }, 'seg')).toThrow(/minimum 0/);
    });

    it('fails at run time on float ids or a row-count mismatch', async () => {
      const x = tf.zeros([3, 2]);
      const floatIds = tf.zeros([3]);
      const short = tf.tensor1d([0, 1], 'int32');
      await expect(runOp(def, { attrs: { numSegments: 2 }, inputs: [x, floatIds] })).rejects.toThrow(
        /needs int32 segment ids, got float32\[3\]/,
      );
      await expect(runOp(def, { attrs: { numSegments: 2 }, inputs: [x, short] })).rejects.toThrow(
        /one segment id per row of data \[3, 2\], got ids \[2\]/,
      );
      tf.dispose([x, floatIds, short]);
    });

    it('ties the row axes of data to the output; ids and the third input hold no channels', () => {
      const rank3: ValueInfo = { name: 'data', dtype: 'float32', shape: ['tokens', 4, 'w'] };
      const [out] = def.inferShape(fromInput, [rank3, ids, nodes]);
      expect(def.channels!(fromInput, [rank3, ids, nodes], [{ name: 'y', ...out! }])).toEqual({
        spaces: { axis1: 4 },
        axes: [
          { tensor: inputTensor(0), axis: 1, space: 'axis1' },
          { tensor: outputTensor(0), axis: 1, space: 'axis1' },
        ],
      });
    });

    it('counts its arithmetic', () => {
      const expected = { sum: 7 * 3, mean: 7 * 3 + 6 * 3, max: 3 * 7 * 3 }[kind];
      expect(def.flops(fixed, [[7, 3], [7]], [[6, 3]])).toBe(expected);
      expect(def.flops(fixed, [[0, 3], [0]], [[6, 3]])).toBe(kind === 'mean' ? 18 : 0);
    });
  });
}
