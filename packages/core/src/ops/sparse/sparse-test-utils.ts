// Shared by this folder's tests only (not exported by the package).
import * as tf from '@tensorflow/tfjs-core';
import type { Attrs } from '../../ir.js';
import { type OpDef, resolveAttrs } from '../../op.js';
import { createOpContext } from '../../op-context.js';

/** Which segment reduction a reference computes. */
export type SegmentKind = 'sum' | 'mean' | 'max';

/**
 * Plain-loop segment reduction of `data` (`k` rows of `rowSize` values) by `ids` into `segments`
 * rows: sum, mean, or max; an empty segment is 0.
 */
export function referenceSegment(
  kind: SegmentKind,
  data: ArrayLike<number>,
  rowSize: number,
  ids: readonly number[],
  segments: number,
): Float32Array {
  const out = new Float32Array(segments * rowSize);
  const counts = new Array<number>(segments).fill(0);
  if (kind === 'max') out.fill(Number.NEGATIVE_INFINITY);
  ids.forEach((s, row) => {
    counts[s]!++;
    for (let j = 0; j < rowSize; j++) {
      const v = data[row * rowSize + j]!;
      const at = s * rowSize + j;
      out[at] = kind === 'max' ? Math.max(out[at]!, v) : out[at]! + v;
    }
  });
  for (let s = 0; s < segments; s++) {
    for (let j = 0; j < rowSize; j++) {
      const at = s * rowSize + j;
      if (counts[s] === 0) out[at] = 0;
      else if (kind === 'mean') out[at] = out[at]! / counts[s]!;
    }
  }
  return out;
}

/**
 * Plain-loop gradient of `sum(segmentReduce(data) * weights)` with respect to `data`: sum gives
 * each row its segment's weight, mean divides it by the segment's count, max splits it equally
 * among the elements equal to the segment's max.
 */
export function referenceSegmentGrad(
  kind: SegmentKind,
  data: ArrayLike<number>,
  rowSize: number,
  ids: readonly number[],
  segments: number,
  weights: ArrayLike<number>,
): Float32Array {
  const out = referenceSegment(kind, data, rowSize, ids, segments);
  const counts = new Array<number>(segments).fill(0);
  for (const s of ids) counts[s]!++;
  const ties = new Float32Array(segments * rowSize);
  ids.forEach((s, row) => {
    for (let j = 0; j < rowSize; j++) {
      if (data[row * rowSize + j] === out[s * rowSize + j]) ties[s * rowSize + j]!++;
    }
  });
  const grad = new Float32Array(ids.length * rowSize);
  ids.forEach((s, row) => {
    for (let j = 0; j < rowSize; j++) {
      const at = s * rowSize + j;
      const w = weights[at]!;
      if (kind === 'sum') grad[row * rowSize + j] = w;
      else if (kind === 'mean') grad[row * rowSize + j] = w / counts[s]!;
      else grad[row * rowSize + j] = data[row * rowSize + j] === out[at] ? w / ties[at]! : 0;
    }
  });
  return grad;
}

/** A context for calling `def`'s forward directly (no parameters), as a training call or not. */
function contextFor(
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  def: OpDef<any>,
  attrs: Attrs,
  inputs: readonly tf.Tensor[],
  training: boolean,
) {
  const batch = inputs[0]!.shape[0]!;
  return createOpContext({
    node: { name: 'op', op: def.type, inputs: [], outputs: [], attrs },
    attrs: resolveAttrs(def, attrs, 'op'),
    params: {},
    state: {},
    training,
    options: {},
    rows: { batchSize: batch, indices: Int32Array.from({ length: batch }, (_, i) => i) },
    seed: 0,
  }).context;
}

/**
 * Runs `def`'s forward on `inputs` (inference) and returns its first output. For inputs whose
 * first dimensions differ (the op harness names each input's first dimension `batch`).
 */
export function forwardOnce(
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  def: OpDef<any>,
  attrs: Attrs,
  inputs: readonly tf.Tensor[],
): tf.Tensor {
  const outputs = def.forward(contextFor(def, attrs, inputs, false), inputs.slice()) as tf.Tensor[];
  return outputs[0]!;
}

/**
 * Runs `def`'s forward on `inputs` (as a training call) and returns the gradients of
 * `sum(output * weights)` with respect to the inputs at positions `wrt`. The caller owns them.
 */
export function opInputGrads(
  // biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
  def: OpDef<any>,
  attrs: Attrs,
  inputs: readonly tf.Tensor[],
  weights: tf.Tensor,
  wrt: readonly number[],
): tf.Tensor[] {
  const context = contextFor(def, attrs, inputs, true);
  return tf.grads((...xs: tf.Tensor[]) => {
    const args = inputs.slice();
    wrt.forEach((position, k) => {
      args[position] = xs[k]!;
    });
    const [out] = def.forward(context, args) as tf.Tensor[];
    return tf.sum(tf.mul(out!, weights));
  })(wrt.map((position) => inputs[position]!));
}
