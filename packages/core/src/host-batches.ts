import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';

/** Tensors by name, or one tensor. */
export type TensorOrMap = tf.Tensor | Record<string, tf.Tensor>;

interface HostTensor {
  values: Float32Array | Int32Array | Uint8Array;
  shape: number[];
  dtype: tf.DataType;
  rowSize: number;
}

/**
 * A data set read once into host memory, from which batches of any rows are built by block
 * copies. Batches are uploaded fresh each step, which is what every backend needs anyway, and
 * avoids `tf.gather`, which is slow on wasm.
 */
export class HostBatches {
  /** Number of rows. */
  readonly size: number;
  private readonly tensors: Map<string, HostTensor>;
  private readonly single: boolean;

  private constructor(tensors: Map<string, HostTensor>, single: boolean, size: number) {
    this.tensors = tensors;
    this.single = single;
    this.size = size;
  }

  /** Reads `data` to the host (async readback). The caller keeps ownership of `data`. */
  static async from(data: TensorOrMap, what: string): Promise<HostBatches> {
    const single = data instanceof tf.Tensor;
    const entries: [string, tf.Tensor][] = single ? [['', data]] : Object.entries(data);
    const tensors = new Map<string, HostTensor>();
    let size: number | undefined;
    for (const [name, t] of entries) {
      if (t.rank === 0)
        throw new DynnError('INVALID_INPUT', `${what}${name ? ` '${name}'` : ''} needs a batch axis.`);
      if (size !== undefined && t.shape[0] !== size) {
        throw new DynnError(
          'INVALID_INPUT',
          `${what} tensors disagree on the number of rows (${size} vs ${t.shape[0]}).`,
        );
      }
      size = t.shape[0]!;
      const values = (await t.data()) as HostTensor['values'];
      tensors.set(name, { values, shape: t.shape, dtype: t.dtype, rowSize: t.size / size || 0 });
    }
    return new HostBatches(tensors, single, size ?? 0);
  }

  /** A batch of the given rows, as new tensors (the caller disposes them). */
  batch(rows: ArrayLike<number>): TensorOrMap {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, host] of this.tensors) {
      const values = new (host.values.constructor as Float32ArrayConstructor)(rows.length * host.rowSize);
      for (let i = 0; i < rows.length; i++) {
        const start = rows[i]! * host.rowSize;
        values.set(host.values.subarray(start, start + host.rowSize), i * host.rowSize);
      }
      out[name] = tf.tensor(values, [rows.length, ...host.shape.slice(1)], host.dtype);
    }
    return this.single ? out['']! : out;
  }
}
