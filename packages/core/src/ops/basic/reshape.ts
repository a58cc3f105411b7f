import * as tf from '@tensorflow/tfjs-core';
import type { Dim } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape, product } from './shape-helpers.js';

/** Attributes of {@link reshapeOp}. */
export type ReshapeAttrs = { shape: number[] };

/** Checks a target shape: sizes >= 1 and at most one -1. Returns the position of the -1 (or -1). */
function inferredAxis(target: readonly number[]): number {
  if (target.some((d) => d === 0 || d < -1)) {
    throw new Error(`Reshape target ${formatShape(target)} may hold sizes >= 1 and one -1 only`);
  }
  const free = target.indexOf(-1);
  if (free !== target.lastIndexOf(-1)) {
    throw new Error(`Reshape target ${formatShape(target)} has more than one -1`);
  }
  return free;
}

/**
 * `core.Reshape`: gives each row a new shape, like Keras' Reshape: `shape` excludes the batch
 * dimension, which is kept; one entry may be -1 (inferred from the row size).
 */
export const reshapeOp = defineOp<ReshapeAttrs>({
  type: 'core.Reshape',
  version: 1,
  description: 'Reshapes each row (the batch dimension is kept) to a target shape; one -1 is inferred.',
  attrs: {
    shape: { kind: 'ints', min: -1, doc: 'target shape without the batch dimension; one -1 allowed' },
  },
  inputs: { min: 1 },
  inferShape(attrs, [x]) {
    const target = attrs.shape;
    const free = inferredAxis(target);
    if (x!.shape.length < 1) throw new Error('Reshape needs an input with a batch dimension, got a scalar');
    const [batch, ...rest] = x!.shape;
    const known = product(target.filter((d) => d !== -1));
    const symbolic = rest.filter((d) => typeof d !== 'number');
    const rowSize = product(rest.filter((d): d is number => typeof d === 'number'));
    const out: Dim[] = [...target];
    if (symbolic.length === 0) {
      const inferred = rowSize / known;
      if (free >= 0 ? !Number.isInteger(inferred) : rowSize !== known) {
        throw new Error(
          `Reshape cannot turn rows of shape ${formatShape(rest)} (${rowSize} values) ` +
            `into ${formatShape(target)}`,
        );
      }
      if (free >= 0) out[free] = inferred;
    } else if (symbolic.length === 1 && free >= 0 && rowSize === known) {
      // [batch, time, 64] -> [-1, 8, 8]: the -1 is exactly the symbolic dimension.
      out[free] = symbolic[0]!;
    } else {
      throw new Error(
        `Reshape cannot map rows of shape ${formatShape(rest)} with symbolic dimensions ` +
          `to ${formatShape(target)}; use one -1 standing for exactly one symbolic dimension`,
      );
    }
    return [{ shape: [batch!, ...out], dtype: x!.dtype }];
  },
  forward(ctx, [x]) {
    const target = [...ctx.attrs.shape];
    const free = target.indexOf(-1);
    // The -1 is resolved here so that an empty batch (every row retired) reshapes too.
    if (free >= 0) target[free] = product(x!.shape.slice(1)) / product(target.filter((d) => d !== -1));
    return [tf.reshape(x!, [x!.shape[0]!, ...target])];
  },
  // Reinterprets the same values: no arithmetic.
  flops: () => 0,
});
