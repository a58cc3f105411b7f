import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import { samplerFor } from './initializers.js';
import type { Initializer } from './ir.js';
import { createRng, type Rng } from './random.js';

/** Bytes of one float32. */
const FLOAT_BYTES = 4;

/** Default {@link HostTableOptions.maxChunkBytes}: 256 MiB, which every browser allocates in one piece. */
const DEFAULT_CHUNK_BYTES = 2 ** 28;

/** Options of a {@link HostTable}. */
export interface HostTableOptions {
  /** Number of rows; the ids are `0..rows-1` (at most 2^31 - 1, so they fit an Int32Array). */
  rows: number;
  /** Floats per row. */
  dim: number;
  /**
   * How the rows start (default zeros). Random initialisers draw from a generator seeded by
   * `seed`, row by row, exactly as `initTensor(init, [rows, dim], 'float32', createRng(seed))`
   * does, so a table equals the tensor a model of the same seed would create; but the values
   * never pass through the backend.
   */
  init?: Initializer;
  /** Seed of a random `init` (default 0). */
  seed?: number;
  /** Name used in error messages (default `'table'`). */
  name?: string;
  /**
   * Largest typed array the table allocates, in bytes (default 2^28 = 256 MiB). The rows are kept
   * in chunks of whole rows of at most this size, so a table may exceed what one typed array can
   * hold (2^32 bytes in Node 20, less in some browsers); a 10^6 x 64 table (256 MB) is one chunk.
   */
  maxChunkBytes?: number;
}

/** Options of {@link HostTable.read}. */
export interface HostReadOptions {
  /**
   * Return the rows as a trainable `tf.Variable`, so `tf.variableGrads(f, [rows.values, ...])`
   * gives their gradient next to the model's (default false: a plain tensor).
   */
  trainable?: boolean;
}

/**
 * Rows read from a {@link HostTable}: each distinct row once, and how to rebuild the batch from
 * them. The caller disposes `values`.
 */
export interface HostRows<T extends tf.Tensor2D = tf.Tensor2D> {
  /** `[unique.length, dim]` float32: the distinct rows, in the order of `unique`. */
  values: T;
  /** The distinct row ids, in order of first appearance in the indices read. */
  unique: Int32Array;
  /**
   * For each index read, its position in `unique`: `gatherRows(values, tf.tensor1d(inverse,
   * 'int32'))` (or `tf.gather`) gives the batch's rows, `[indices.length, dim]`.
   */
  inverse: Int32Array;
}

/**
 * A host-side optimizer step for {@link HostTable.applyGradients}: the update touches only the
 * rows given, as sparse optimizers of embedding tables do.
 *
 * - `sgd`: `row -= learningRate * grad`.
 * - `adagrad`: element-wise, as `tf.train.adagrad(learningRate, initialAccumulatorValue)`:
 *   `acc += grad^2; row -= learningRate * grad / sqrt(acc + epsilon)`, one accumulator per
 *   element (doubling the table's host memory). With `rowwise: true`, one accumulator per row
 *   (FBGEMM's row-wise Adagrad, 4 bytes a row): `acc += mean(grad^2)` over the row, then the same
 *   update. Rows without a gradient keep their values and accumulators, so a sparse step equals a
 *   dense Adagrad step whose gradient is zero on the other rows.
 */
export type HostOptimizer =
  | {
      /** Plain stochastic gradient descent. */
      kind: 'sgd';
      /** Step size (positive). */
      learningRate: number;
    }
  | {
      /** Adagrad with accumulators kept on the host next to the rows. */
      kind: 'adagrad';
      /** Step size (positive). */
      learningRate: number;
      /** Starting value of every accumulator (default 0.1, as tfjs); read when they are created, by the first Adagrad step. */
      initialAccumulatorValue?: number;
      /** Added to the accumulator under the square root (default 1e-7, tfjs's float32 epsilon). */
      epsilon?: number;
      /** One accumulator per row instead of per element (default false). */
      rowwise?: boolean;
    };

/** Adagrad accumulators, chunked as the rows are. */
interface AdagradState {
  rowwise: boolean;
  chunks: Float32Array[];
}

/**
 * A table of `rows x dim` float32 values kept in host memory (typed arrays), far larger than a
 * WebGL or WebGPU backend could hold: node memories of temporal graph models (TGN), embeddings of
 * recommenders. Only the rows a batch touches move to the backend, and updated rows come back:
 *
 * - {@link HostTable.read} uploads each distinct row of a batch once: `unique rows x dim x 4`
 *   bytes per batch, whatever the table's size;
 * - {@link HostTable.write} reads updated rows back (async, so it works on every backend) and
 *   stores them;
 * - {@link HostTable.applyGradients} applies a sparse SGD or Adagrad step to the rows given, on
 *   the host (the optimizer state stays on the host too).
 *
 * Host memory is {@link HostTable.memoryBytes}: `rows x dim x 4` bytes, plus the Adagrad
 * accumulators once used. Backend memory only holds the tensors of the batch in flight.
 *
 * To train rows under a dynn model, run the model with `forwardForTraining(model, feeds, options,
 * seed, { inputGradients: true })` inside `tf.variableGrads`, the rows' variable in its list:
 * without `inputGradients` the ops skip their inputs' gradient and the rows get zeros. The model's
 * own gradients go to a tfjs optimizer as usual. ({@link Trainer} takes gradients of the model's
 * parameters only.)
 *
 * @example
 * ```ts
 * // Node memory (TGN-like): read the batch's rows, update them with tf ops, write them back.
 * const memory = new HostTable({ rows: 1_000_000, dim: 16 });
 * const { values, unique } = memory.read(nodeIds);
 * const updated = tf.tidy(() => tf.add(tf.mul(values, 0.9), messages));
 * await memory.write(unique, updated);
 * tf.dispose([values, updated]);
 *
 * // Trainable embeddings under a model: the rows' gradient is applied on the host.
 * const rows = table.read(ids, { trainable: true });
 * const inverse = tf.tensor1d(rows.inverse, 'int32');
 * const params = [...model.params.values()];
 * const { value, grads } = tf.variableGrads(() => {
 *   // gatherRows rather than tf.gather: its gradient works on wasm too.
 *   const x = gatherRows(rows.values, inverse);
 *   const { outputs } = forwardForTraining(model, new Map([['x', x]]), {}, step, { inputGradients: true });
 *   return lossFunction('sparseCategoricalCrossentropy')(outputs.logits!, labels);
 * }, [rows.values, ...params]);
 * await table.applyGradients(rows.unique, grads[rows.values.name]!, { kind: 'adagrad', learningRate: 0.1 });
 * optimizer.applyGradients(Object.fromEntries(params.map((p) => [p.name, grads[p.name]!])));
 * tf.dispose([rows.values, inverse, value, ...Object.values(grads)]);
 * ```
 */
export class HostTable {
  /** Name used in error messages. */
  readonly name: string;
  /** Number of rows. */
  readonly rows: number;
  /** Floats per row. */
  readonly dim: number;
  /** Rows per chunk (every chunk but the last holds this many). */
  readonly chunkRows: number;
  private readonly chunks: Float32Array[];
  private adagrad: AdagradState | undefined;

  /** A table of `options.rows x options.dim` floats, initialised on the host from `options.init`. */
  constructor(options: HostTableOptions) {
    const { rows, dim, name = 'table', maxChunkBytes = DEFAULT_CHUNK_BYTES } = options;
    this.name = name;
    if (!Number.isInteger(rows) || rows < 1 || rows > 2 ** 31 - 1) {
      throw new DynnError(
        'INVALID_OPTION',
        `HostTable '${name}': rows must be an integer in [1, 2^31 - 1], got ${rows}.`,
      );
    }
    if (!Number.isInteger(dim) || dim < 1) {
      throw new DynnError(
        'INVALID_OPTION',
        `HostTable '${name}': dim must be a positive integer, got ${dim}.`,
      );
    }
    if (!Number.isInteger(maxChunkBytes) || maxChunkBytes < dim * FLOAT_BYTES) {
      throw new DynnError(
        'INVALID_OPTION',
        `HostTable '${name}': maxChunkBytes must be an integer of at least one row (${dim * FLOAT_BYTES} bytes), got ${maxChunkBytes}.`,
      );
    }
    this.rows = rows;
    this.dim = dim;
    this.chunkRows = Math.min(rows, Math.floor(maxChunkBytes / (dim * FLOAT_BYTES)));
    this.chunks = [];
    for (let start = 0; start < rows; start += this.chunkRows) {
      this.chunks.push(new Float32Array(Math.min(this.chunkRows, rows - start) * dim));
    }
    fillInit(
      this.chunks,
      options.init ?? { kind: 'zeros' },
      { name, dim, from: 0, to: dim },
      createRng(options.seed ?? 0),
    );
  }

  /** Bytes of host memory the table holds: its rows, plus the Adagrad accumulators once created. */
  get memoryBytes(): number {
    const sum = (chunks: Float32Array[]) => chunks.reduce((total, c) => total + c.byteLength, 0);
    return sum(this.chunks) + (this.adagrad ? sum(this.adagrad.chunks) : 0);
  }

  /**
   * A live view of one row (`dim` floats): writing to it changes the table. For host-side
   * initialisation (pretrained vectors) and inspection; throws like {@link HostTable.read} for an
   * id out of range.
   */
  row(index: number): Float32Array {
    this.checkIndex(index, undefined, 'row');
    return this.view(index);
  }

  /**
   * Uploads the rows of `indices` to the backend, each distinct row once. Throws an `INVALID_INPUT`
   * `DynnError` naming the table, the bad index and its position when an index is not an integer
   * in `[0, rows)`. Moves `unique.length x dim x 4` bytes to the backend. The caller disposes
   * `values` (a `tf.Variable` when `options.trainable`).
   */
  read(
    indices: ArrayLike<number>,
    options: HostReadOptions & { trainable: true },
  ): HostRows<tf.Variable<tf.Rank.R2>>;
  /** Uploads the rows of `indices`, each distinct row once, as a plain tensor (see the overload above). */
  read(indices: ArrayLike<number>, options?: HostReadOptions): HostRows;
  read(
    indices: ArrayLike<number>,
    options: HostReadOptions = {},
  ): HostRows<tf.Tensor2D | tf.Variable<tf.Rank.R2>> {
    this.checkIds(indices, 'indices');
    const count = indices.length;
    const slots = new Map<number, number>();
    const inverse = new Int32Array(count);
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      const id = indices[i]!;
      let slot = slots.get(id);
      if (slot === undefined) {
        slot = ids.length;
        slots.set(id, slot);
        ids.push(id);
      }
      inverse[i] = slot;
    }
    const unique = Int32Array.from(ids);
    const { dim } = this;
    const host = new Float32Array(unique.length * dim);
    for (let k = 0; k < unique.length; k++) host.set(this.view(unique[k]!), k * dim);
    const tensor = tf.tensor2d(host, [unique.length, dim]);
    if (!options.trainable) return { values: tensor, unique, inverse };
    const variable = tf.variable(tensor, true);
    tensor.dispose();
    return { values: variable, unique, inverse };
  }

  /**
   * Stores `values` (`[unique.length, dim]`: a float32 tensor, read back asynchronously so it works
   * on WebGL and WebGPU, or a host Float32Array) into the rows `unique`. Checks everything before
   * changing any row: ids in range and distinct (pass {@link HostRows.unique}), the shape, and
   * finite values (a NaN would spread through every later batch), throwing an `INVALID_INPUT`
   * `DynnError` otherwise. The caller keeps ownership of `values`.
   */
  async write(unique: ArrayLike<number>, values: tf.Tensor | Float32Array): Promise<void> {
    const host = await this.hostRows(unique, values, 'values');
    const { dim } = this;
    for (let k = 0; k < unique.length; k++) this.view(unique[k]!).set(host.subarray(k * dim, (k + 1) * dim));
  }

  /**
   * A sparse optimizer step on the host: `grads` (`[unique.length, dim]`, a float32 tensor read
   * back asynchronously or a Float32Array) is the loss's gradient for the rows `unique`, and only
   * those rows (and their Adagrad accumulators) change. Checked as {@link HostTable.write}
   * checks its values, and `optimizer` too (`INVALID_OPTION`). The element-wise and row-wise Adagrad
   * keep different state: a table uses one of them. The caller keeps ownership of `grads`.
   */
  async applyGradients(
    unique: ArrayLike<number>,
    grads: tf.Tensor | Float32Array,
    optimizer: HostOptimizer,
  ): Promise<void> {
    this.checkOptimizer(optimizer);
    const host = await this.hostRows(unique, grads, 'grads');
    const { dim } = this;
    const { learningRate } = optimizer;
    if (optimizer.kind === 'sgd') {
      for (let k = 0; k < unique.length; k++) {
        const row = this.view(unique[k]!);
        const offset = k * dim;
        for (let j = 0; j < dim; j++) row[j]! -= learningRate * host[offset + j]!;
      }
      return;
    }
    const epsilon = optimizer.epsilon ?? 1e-7;
    const state = this.adagradState(optimizer);
    for (let k = 0; k < unique.length; k++) {
      const id = unique[k]!;
      const row = this.view(id);
      const offset = k * dim;
      const chunk = Math.floor(id / this.chunkRows);
      const local = id - chunk * this.chunkRows;
      const acc = state.chunks[chunk]!;
      if (state.rowwise) {
        let squares = 0;
        for (let j = 0; j < dim; j++) squares += host[offset + j]! ** 2;
        acc[local] = acc[local]! + squares / dim;
        const scale = learningRate / Math.sqrt(acc[local]! + epsilon);
        for (let j = 0; j < dim; j++) row[j]! -= scale * host[offset + j]!;
      } else {
        const base = local * dim;
        for (let j = 0; j < dim; j++) {
          const g = host[offset + j]!;
          acc[base + j] = acc[base + j]! + g * g;
          row[j]! -= (learningRate * g) / Math.sqrt(acc[base + j]! + epsilon);
        }
      }
    }
  }

  /** The row's subarray of its chunk; `index` is checked by the caller. */
  private view(index: number): Float32Array {
    const chunk = Math.floor(index / this.chunkRows);
    const start = (index - chunk * this.chunkRows) * this.dim;
    return this.chunks[chunk]!.subarray(start, start + this.dim);
  }

  /** Throws unless `value` is a row id; `position` is its place in the ids given, if any. */
  private checkIndex(value: number, position: number | undefined, what: string): void {
    if (!Number.isInteger(value) || value < 0 || value >= this.rows) {
      const where = position === undefined ? '' : ` at position ${position}`;
      throw new DynnError(
        'INVALID_INPUT',
        `HostTable '${this.name}': ${what} ${value}${where} is not a row id; ids are integers in [0, ${this.rows}).`,
      );
    }
  }

  /** Checks that `ids` is a host array of row ids (a tensor is refused: ids must be on the host). */
  private checkIds(ids: ArrayLike<number>, what: string): void {
    if (ids instanceof tf.Tensor) {
      throw new DynnError(
        'INVALID_INPUT',
        `HostTable '${this.name}': ${what} is a tf.Tensor; pass ids on the host (an Int32Array or number[]), e.g. await ids.data().`,
      );
    }
    if (typeof ids !== 'object' || ids === null || typeof ids.length !== 'number') {
      throw new DynnError(
        'INVALID_INPUT',
        `HostTable '${this.name}': ${what} must be an Int32Array or an array of row ids, got ${String(ids)}.`,
      );
    }
    for (let i = 0; i < ids.length; i++) this.checkIndex(ids[i]!, i, 'index');
  }

  /** Checks `unique` and the matching `[unique.length, dim]` values, and returns them on the host. */
  private async hostRows(
    unique: ArrayLike<number>,
    values: tf.Tensor | Float32Array,
    what: string,
  ): Promise<Float32Array> {
    this.checkIds(unique, 'unique');
    const seen = new Map<number, number>();
    for (let k = 0; k < unique.length; k++) {
      const id = unique[k]!;
      const first = seen.get(id);
      if (first !== undefined) {
        throw new DynnError(
          'INVALID_INPUT',
          `HostTable '${this.name}': row ${id} appears twice in unique (positions ${first} and ${k}); pass read()'s unique, which holds each row once.`,
        );
      }
      seen.set(id, k);
    }
    const { dim } = this;
    const shape = `[${unique.length}, ${dim}]`;
    let host: Float32Array;
    if (values instanceof Float32Array) {
      if (values.length !== unique.length * dim) {
        throw new DynnError(
          'INVALID_INPUT',
          `HostTable '${this.name}': ${what} holds ${values.length} floats; ${shape} needs ${unique.length * dim}.`,
        );
      }
      host = values;
    } else if (values instanceof tf.Tensor) {
      if (values.isDisposed) {
        throw new DynnError('INVALID_INPUT', `HostTable '${this.name}': ${what} was already disposed.`);
      }
      if (values.rank !== 2 || values.shape[0] !== unique.length || values.shape[1] !== dim) {
        throw new DynnError(
          'INVALID_INPUT',
          `HostTable '${this.name}': ${what} has shape [${values.shape.join(', ')}]; ${unique.length} rows of dim ${dim} need ${shape}.`,
        );
      }
      if (values.dtype !== 'float32') {
        throw new DynnError(
          'INVALID_INPUT',
          `HostTable '${this.name}': ${what} is ${values.dtype}; the table holds float32 (tf.cast it).`,
        );
      }
      host = (await values.data()) as Float32Array;
    } else {
      throw new DynnError(
        'INVALID_INPUT',
        `HostTable '${this.name}': ${what} must be a tf.Tensor or a Float32Array, got ${String(values)}.`,
      );
    }
    for (let i = 0; i < host.length; i++) {
      if (!Number.isFinite(host[i]!)) {
        const k = Math.floor(i / dim);
        throw new DynnError(
          'INVALID_INPUT',
          `HostTable '${this.name}': ${what} holds ${host[i]} for row ${unique[k]} (position ${k}, element ${i - k * dim}); nothing was changed.`,
        );
      }
    }
    return host;
  }

  /** Checks an optimizer's fields, and that an Adagrad one fits the accumulators the table keeps. */
  private checkOptimizer(optimizer: HostOptimizer): void {
    const fail = (message: string): never => {
      throw new DynnError('INVALID_OPTION', `HostTable '${this.name}': ${message}`);
    };
    if (typeof optimizer !== 'object' || optimizer === null || !['sgd', 'adagrad'].includes(optimizer.kind)) {
      fail(`optimizer must be { kind: 'sgd' | 'adagrad', learningRate }, got ${JSON.stringify(optimizer)}.`);
    }
    if (!(optimizer.learningRate > 0) || !Number.isFinite(optimizer.learningRate)) {
      fail(`learningRate must be a positive number, got ${optimizer.learningRate}.`);
    }
    if (optimizer.kind === 'sgd') return;
    const initial = optimizer.initialAccumulatorValue ?? 0.1;
    const epsilon = optimizer.epsilon ?? 1e-7;
    if (!(initial >= 0) || !Number.isFinite(initial)) {
      fail(`initialAccumulatorValue must be a number >= 0, got ${initial}.`);
    }
    if (!(epsilon >= 0) || !Number.isFinite(epsilon)) fail(`epsilon must be a number >= 0, got ${epsilon}.`);
    if (initial === 0 && epsilon === 0) {
      fail('initialAccumulatorValue and epsilon are both 0: the first step would divide by zero.');
    }
    const rowwise = optimizer.rowwise ?? false;
    if (this.adagrad !== undefined && this.adagrad.rowwise !== rowwise) {
      fail(
        `it keeps ${this.adagrad.rowwise ? 'row-wise' : 'element-wise'} Adagrad accumulators; this step asks for ` +
          `${rowwise ? 'row-wise' : 'element-wise'} ones. Use one Adagrad setting per table.`,
      );
    }
  }

  /** The Adagrad accumulators, created by the first Adagrad step (`optimizer` is checked). */
  private adagradState(optimizer: Extract<HostOptimizer, { kind: 'adagrad' }>): AdagradState {
    if (this.adagrad === undefined) {
      const rowwise = optimizer.rowwise ?? false;
      const chunks = this.chunks.map((c) => new Float32Array(rowwise ? c.length / this.dim : c.length));
      for (const chunk of chunks) chunk.fill(optimizer.initialAccumulatorValue ?? 0.1);
      this.adagrad = { rowwise, chunks };
    }
    return this.adagrad;
  }
}

/**
 * Fills columns `[from, to)` of every row from `init`, drawing random values in row-major order
 * over those columns (a `concat` initializer fills its parts one after another, as `initTensor`
 * does), so the table equals the tensor `initTensor` would make from the same generator.
 */
function fillInit(
  chunks: readonly Float32Array[],
  init: Initializer,
  columns: { name: string; dim: number; from: number; to: number },
  rng: Rng,
): void {
  const { name, dim, from, to } = columns;
  const fillConstant = (value: number) => {
    for (const chunk of chunks) {
      if (from === 0 && to === dim) chunk.fill(value);
      else
        for (let start = 0; start < chunk.length; start += dim) chunk.fill(value, start + from, start + to);
    }
  };
  switch (init.kind) {
    case 'zeros':
      return; // new arrays are zeros
    case 'ones':
      fillConstant(1);
      return;
    case 'constant':
      fillConstant(init.value);
      return;
    case 'concat': {
      const total = init.parts.reduce((sum, part) => sum + part.size, 0);
      if (total !== to - from) {
        throw new DynnError(
          'INVALID_OPTION',
          `HostTable '${name}': the concat initializer's parts sum to ${total}, not ${to - from} columns.`,
        );
      }
      let start = from;
      for (const part of init.parts) {
        fillInit(chunks, part.init, { name, dim, from: start, to: start + part.size }, rng);
        start += part.size;
      }
      return;
    }
    default: {
      const sample = samplerFor(init, rng);
      for (const chunk of chunks) {
        for (let start = 0; start < chunk.length; start += dim) {
          for (let j = start + from; j < start + to; j++) chunk[j] = sample();
        }
      }
    }
  }
}
