import * as tf from '@tensorflow/tfjs-core';
import type { Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape, normalizeAxis } from './shape-helpers.js';

/** Attributes of {@link concatOp}. */
export type ConcatAttrs = { axis: number };

/** `core.Concat`: joins 2+ inputs along one axis (Keras' Concatenate). */
export const concatOp = defineOp<ConcatAttrs>({
  type: 'core.Concat',
  version: 1,
  description: 'Concatenates two or more inputs along an axis; the other dimensions must match.',
  attrs: { axis: { kind: 'int', default: -1, doc: 'axis to join along (negative counts from the end)' } },
  inputs: { min: 2, max: Number.POSITIVE_INFINITY },
  inferShape(attrs, inputs) {
    const first = inputs[0]!;
    const rank = first.shape.length;
    const axis = normalizeAxis(attrs.axis, rank, 'Concat axis');
    const shapes = inputs.map((x) => formatShape(x.shape)).join(', ');
    const out: Dim[] = [...first.shape];
    let joined = 0;
    for (const x of inputs) {
      if (x.dtype !== first.dtype) {
        throw new Error(`Concat needs inputs of one dtype, got ${first.dtype} and ${x.dtype}`);
      }
      const mismatch = x.shape.length !== rank || x.shape.some((d, i) => i !== axis && d !== first.shape[i]);
      if (mismatch) throw new Error(`Concat on axis ${attrs.axis}: shapes ${shapes} differ off that axis`);
      const size = x.shape[axis];
      if (typeof size !== 'number') {
        throw new Error(`Concat cannot join along the symbolic dimension '${size}' (shapes ${shapes})`);
      }
      joined += size;
    }
    out[axis] = joined;
    return [{ shape: out, dtype: first.dtype }];
  },
  forward: (ctx, inputs) => [tf.concat(inputs, normalizeAxis(ctx.attrs.axis, inputs[0]!.rank))],
  // Data movement only: no arithmetic.
  flops: () => 0,
});
