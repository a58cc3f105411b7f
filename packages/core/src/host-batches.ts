import * as tf from '@tensorflow/tfjs-core';
import { DynnError, notATensor } from './errors.js';
import { checkFinite } from './validate.js';

/** Tensors by name, or one tensor. */
export type TensorOrMap = tf.Tensor | Record<string, tf.Tensor>;

/** One tensor of a {@link HostBatches}, as it lies in host memory. */
export interface HostTensor {
  /** Its elements, row-major. */
  values: Float32Array | Int32Array | Uint8Array;
  /** Its shape (rows first). */
  shape: number[];
  /** Its dtype. */
  dtype: tf.DataType;
  /** Elements per row. */
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

  /**
   * Reads `data` to the host (async readback). The caller keeps ownership of `data`. `what` names
   * it in errors (`x`, `validationData.y`); a value that is not a tensor is named as such.
   */
  static async from(data: TensorOrMap, what: string): Promise<HostBatches> {
    const single = data instanceof tf.Tensor;
    if (!single) {
      if (data === undefined || data === null) {
        throw new DynnError('INVALID_INPUT', `${what} is missing: pass a tf.Tensor, or tensors by name.`);
      }
      if (typeof data !== 'object' || Array.isArray(data) || ArrayBuffer.isView(data))
        throw notATensor(what, data);
    }
    const entries: [string, tf.Tensor][] = single ? [['', data]] : Object.entries(data);
    if (entries.length === 0) {
      throw new DynnError(
        'INVALID_INPUT',
        `${what} is an empty object: pass a tf.Tensor, or tensors by name.`,
      );
    }
    const tensors = new Map<string, HostTensor>();
    let size: number | undefined;
    for (const [name, t] of entries) {
      if (!(t instanceof tf.Tensor)) throw notATensor(`${what} '${name}'`, t);
      if (t.isDisposed)
        throw new DynnError('INVALID_INPUT', `${what}${name ? ` '${name}'` : ''} was already disposed.`);
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

  /** Names of the tensors (`''` for data given as one tensor). */
  get names(): string[] {
    return [...this.tensors.keys()];
  }

  /** The host copy of one tensor: the only one for data given as one tensor, else by name. */
  get(name?: string): Readonly<HostTensor> | undefined {
    return this.single ? this.tensors.get('') : name === undefined ? undefined : this.tensors.get(name);
  }

  /**
   * Throws an `INVALID_INPUT` error naming the first NaN or infinite value (which tensor, which
   * row and element), with `fix` appended. One pass over the host copy; no readback.
   */
  checkFinite(what: string, fix: string): void {
    for (const [name, host] of this.tensors) {
      if (host.dtype !== 'float32') continue;
      checkFinite(host.values, host.shape, `${what}${name ? ` '${name}'` : ''}`, fix);
    }
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
