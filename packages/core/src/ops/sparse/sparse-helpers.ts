import * as tf from '@tensorflow/tfjs-core';
import { type ChannelAxis, inputTensor, type OpChannels, outputTensor } from '../../channel-axes.js';
import type { Dim, ValueInfo } from '../../ir.js';
import { formatShape } from '../basic/shape-helpers.js';

/**
 * Throws unless `indices` hold int32: a value's info at graph-build time, or a tensor at run time.
 */
export function checkIndices(
  opName: string,
  what: string,
  indices: { dtype: string; shape: readonly Dim[] },
): void {
  if (indices.dtype !== 'int32') {
    throw new Error(
      `${opName} needs int32 ${what}, got ${indices.dtype}${formatShape(indices.shape)}; cast them with tf.cast(${what}, 'int32')`,
    );
  }
}

/** Throws unless `a` and `b` are the same dimension (equal numbers or equal names). */
export function checkSameDim(opName: string, a: Dim, b: Dim, what: string): void {
  if (a !== b) throw new Error(`${opName}: ${what} (${a} against ${b})`);
}

/**
 * Channels of an op whose output rows are its first input's rows, moved: every axis from 1 of
 * each listed input is tied to the same axis of the output (`outputShift` more for the output,
 * e.g. the extra index axes of a gather). Symbolic axes hold no channels.
 */
export function rowChannels(
  inputs: readonly ValueInfo[],
  tied: readonly number[],
  output: ValueInfo,
  outputShift = 0,
): OpChannels {
  const source = inputs[tied[0]!]!;
  const spaces: Record<string, number> = {};
  const axes: ChannelAxis[] = [];
  for (let axis = 1; axis < source.shape.length; axis++) {
    const size = source.shape[axis];
    const outAxis = axis + outputShift;
    if (typeof size !== 'number' || outAxis < 1) continue;
    const space = `axis${axis}`;
    spaces[space] = size;
    for (const index of tied) axes.push({ tensor: inputTensor(index), axis, space });
    if (output.shape[outAxis] === size) axes.push({ tensor: outputTensor(0), axis: outAxis, space });
  }
  return { spaces, axes };
}

/** `[n, 1, 1, ...]` of rank `rank`: a per-row factor that broadcasts over the row's axes. */
export function rowBroadcastShape(n: number, rank: number): number[] {
  return [n, ...new Array<number>(Math.max(0, rank - 1)).fill(1)];
}

/**
 * For each of `values` (`[m]`), the number of entries of the ascending `sorted` (`[k]`, k >= 1)
 * below it (`'left'`) or at most it (`'right'`): a binary search on the device. Returns int32
 * `[m]` (`tf.searchSorted` returns `[1, m]` for a 1-D sequence).
 */
export function bound(sorted: tf.Tensor, values: tf.Tensor, side: 'left' | 'right'): tf.Tensor {
  return tf.tidy(() => tf.reshape(tf.searchSorted(sorted, values, side), [values.size]));
}
