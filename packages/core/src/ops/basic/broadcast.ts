import type * as tf from '@tensorflow/tfjs-core';
import type { Dim, ValueInfo } from '../../ir.js';
import type { OutputInfo } from '../../op.js';
import { formatShape } from './shape-helpers.js';

/**
 * The numpy broadcast of shapes, with symbolic dimensions: shapes align at their last axis, a 1
 * stretches to the other size, equal sizes (numbers or equal names such as `'batch'`) match.
 * Anything else (3 against 4, `'batch'` against 5) throws a plain `Error`.
 */
export function broadcastShapes(shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let axis = 0; axis < rank; axis++) {
    let dim: Dim = 1;
    for (const shape of shapes) {
      const d = shape[axis - rank + shape.length] ?? 1;
      if (d === 1 || d === dim) continue;
      if (dim !== 1) {
        throw new Error(
          `shapes ${shapes.map(formatShape).join(', ')} do not broadcast: ` +
            `${dim} against ${d} on axis ${axis - rank} (counting from the end)`,
        );
      }
      dim = d;
    }
    out.push(dim);
  }
  return out;
}

/** inferShape of an elementwise op on 2+ inputs: one dtype, broadcast shapes. */
export function inferElementwise(opName: string, inputs: readonly ValueInfo[]): OutputInfo[] {
  const dtype = inputs[0]!.dtype;
  const other = inputs.find((x) => x.dtype !== dtype);
  if (other !== undefined) {
    throw new Error(`${opName} needs inputs of one dtype, got ${dtype} and ${other.dtype}`);
  }
  if (dtype === 'bool') throw new Error(`${opName} needs float32 or int32 inputs, got bool`);
  try {
    return [{ shape: broadcastShapes(inputs.map((x) => x.shape)), dtype }];
  } catch (error) {
    throw new Error(`${opName}: ${(error as Error).message}`);
  }
}

/** Folds 2+ tensors with a broadcasting binary op, left to right. */
export function foldInputs(
  inputs: readonly tf.Tensor[],
  combine: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
): tf.Tensor {
  let result = combine(inputs[0]!, inputs[1]!);
  for (const x of inputs.slice(2)) result = combine(result, x);
  return result;
}
