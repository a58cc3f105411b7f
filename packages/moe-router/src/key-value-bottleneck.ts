import {
  createRng,
  DynnError,
  defineOp,
  gatherRows,
  type Model,
  type OpContext,
  seedFor,
  shuffledIndices,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { MOE_ROUTER_PLUGIN } from './identity.js';
import { kmeans } from './kmeans.js';

/** The op type of the discrete key-value bottleneck. */
export const KEY_VALUE_BOTTLENECK_OP = `${MOE_ROUTER_PLUGIN.domain}.KeyValueBottleneck`;

/** Resolved attributes of {@link keyValueBottleneckOp}. */
export type KeyValueBottleneckAttrs = {
  /** Codebooks (`C` in the paper), each reading its own random projection of the features. */
  heads: number;
  /** Keys in each codebook (`K`). */
  keysPerHead: number;
  /** Size of a key (`dk`): each head projects the `d` features to `keySize` dimensions. */
  keySize: number;
  /** Size of a value (`dv`): the output's last dimension, the classes when the output is logits. */
  valueSize: number;
};

/** The feature size `d` of the bottleneck's input; throws a plain `Error` when it cannot feed one. */
function featureSize(x: ValueInfo | undefined): number {
  if (x === undefined) throw new Error('KeyValueBottleneck needs one input, the features [batch, d]');
  const d = x.shape[x.shape.length - 1];
  if (x.shape.length < 2 || typeof d !== 'number') {
    throw new Error(
      `KeyValueBottleneck needs features of rank >= 2 ([batch, d]) whose last dimension d is a number, ` +
        `got [${x.shape.join(', ')}]`,
    );
  }
  if (x.dtype !== 'float32') {
    throw new Error(`KeyValueBottleneck needs float32 features, got ${x.dtype}: cast them first`);
  }
  return d;
}

/**
 * The nearest key of every row in every head, as indices into the heads' keys laid end to end
 * (`head * keysPerHead + key`), int32 `[rows, heads]`. Distances are squared L2 in each head's
 * projection; the row's own norm, the same for every key, is left out. Ties go to the lowest key.
 */
function nearestKeys(
  attrs: KeyValueBottleneckAttrs,
  z: tf.Tensor,
  projection: tf.Tensor,
  keys: tf.Tensor,
): tf.Tensor2D {
  return tf.tidy(() => {
    const { heads, keysPerHead, keySize } = attrs;
    const d = projection.shape[1]!;
    const rows = z.size / d;
    const flat = tf.reshape(z, [rows, d]);
    // [d, heads * dk]: every head's projection side by side, one matMul for all of them.
    const side = tf.reshape(tf.transpose(projection, [1, 0, 2]), [d, heads * keySize]);
    const projected = tf.transpose(tf.reshape(tf.matMul(flat, side), [rows, heads, keySize]), [1, 0, 2]);
    // Explicitly transposed keys: wasm's transposed matMul is many times slower than a plain one.
    const dots = tf.matMul(projected as tf.Tensor3D, tf.transpose(keys, [0, 2, 1]) as tf.Tensor3D);
    const norms = tf.reshape(tf.sum(tf.square(keys), -1), [heads, 1, keysPerHead]);
    const scores = tf.sub(norms, tf.mul(dots, 2));
    const nearest = tf.transpose(tf.argMin(scores, -1)); // [rows, heads]
    const offsets = tf.range(0, heads * keysPerHead, keysPerHead, 'int32');
    return tf.add(nearest, tf.reshape(offsets, [1, heads])) as tf.Tensor2D;
  });
}

/** Distinct keys each head's rows selected, from the flat indices `[rows, heads]`. */
function keysUsed(indices: Int32Array, heads: number): number[] {
  const seen = Array.from({ length: heads }, () => new Set<number>());
  for (let i = 0; i < indices.length; i++) seen[i % heads]!.add(indices[i]!);
  return seen.map((s) => s.size);
}

/** The selection of an inference call, made by the decide step: flat key indices, rows by heads. */
interface KeySelection {
  /** Flat key indices (`head * keysPerHead + key`), `rows * heads`, row after row. */
  indices: Int32Array;
}

function selectionOf(ctx: OpContext<KeyValueBottleneckAttrs>, rows: number): KeySelection | undefined {
  const decision = ctx.decision as KeySelection | undefined;
  if (decision?.indices instanceof Int32Array && decision.indices.length === rows * ctx.attrs.heads) {
    return decision;
  }
  return undefined;
}

/**
 * `moe-router.KeyValueBottleneck`: the discrete key-value bottleneck of Träuble et al. (2023,
 * "Discrete Key-Value Bottleneck"), with its non-parametric decoder. Features `z` (from a frozen
 * encoder) are read by `heads` codebooks: head `c` projects `z` with its own fixed random matrix
 * to `keySize` dimensions, finds its nearest key (squared L2, ties to the lowest index) among
 * `keysPerHead`, and reads that key's value. The output is the mean over heads of the selected
 * values, `[batch, valueSize]`: with `valueSize` the number of classes it is the logits.
 *
 * Only the selected values receive a gradient (a gather's), so training changes the values of
 * the keys the batch's inputs fall on and no other: the localised updates that make the
 * bottleneck forget little when trained on one task after another. The selection is discrete,
 * so no gradient reaches the features (the encoder stays as it is). Train it with a plain
 * optimizer (SGD): momentum or weight decay would move values no input selected.
 *
 * - input: `z`, float32 `[batch, d]` (or `[batch, ..., d]`: every position is read alike)
 * - output: `[batch, valueSize]` (`[batch, ..., valueSize]`)
 * - state `projection` `[heads, d, keySize]`: the fixed random projections, normal with standard
 *   deviation `1 / sqrt(d)` (seeded by the model's seed and the node's name). Never trained.
 * - state `keys` `[heads, keysPerHead, keySize]`: the codebooks, in projected space. Frozen: set
 *   them before training with {@link initKeyValueKeys} (k-means on the projected features of
 *   unlabelled data, as the paper initialises them); until then they are standard normal draws.
 * - param `values` `[heads, keysPerHead, valueSize]`: trainable, zeros at first.
 *
 * In inference the op decides first (one readback of the selected keys) and records `keysUsed`
 * in the compute report: how many distinct keys each head's rows selected. Training runs the
 * selection on the backend and records nothing. FLOPs per row: the projections
 * `2 * d * heads * keySize`, the distances `2 * heads * keysPerHead * keySize`, the mean
 * `heads * valueSize`.
 *
 * @example
 * ```ts
 * const b = new GraphBuilder(runtime);
 * const z = b.input('z', 'float32', ['batch', 64]);
 * const logits = b.add('moe-router.KeyValueBottleneck', z,
 *   { heads: 32, keysPerHead: 128, keySize: 8, valueSize: 10 }, { name: 'kv' });
 * const model = createModel(runtime, b.build({ logits }));
 * await initKeyValueKeys(model, 'kv', unlabelledFeatures);
 * await fit(model, { x: features, y: labels }, { optimizer: tf.train.sgd(1) });
 * ```
 */
export const keyValueBottleneckOp = defineOp<KeyValueBottleneckAttrs>({
  type: KEY_VALUE_BOTTLENECK_OP,
  version: 1,
  description:
    'Discrete key-value bottleneck: per head, the value of the nearest frozen key to a fixed random projection of the features, averaged over heads.',
  attrs: {
    heads: { kind: 'int', min: 1, doc: 'codebooks (C), each with its own random projection' },
    keysPerHead: { kind: 'int', min: 1, doc: 'keys in each codebook (K)' },
    keySize: { kind: 'int', min: 1, doc: 'size of a key (dk): each head projects the features to it' },
    valueSize: { kind: 'int', min: 1, doc: 'size of a value (dv): the output features, e.g. the classes' },
  },
  inputs: { min: 1 },
  state(attrs, [z]) {
    const d = featureSize(z);
    return [
      {
        name: 'projection',
        shape: [attrs.heads, d, attrs.keySize],
        init: { kind: 'normal', mean: 0, std: 1 / Math.sqrt(d) },
      },
      {
        name: 'keys',
        shape: [attrs.heads, attrs.keysPerHead, attrs.keySize],
        init: { kind: 'normal', mean: 0, std: 1 },
      },
    ];
  },
  params: (attrs) => [
    { name: 'values', shape: [attrs.heads, attrs.keysPerHead, attrs.valueSize], init: { kind: 'zeros' } },
  ],
  inferShape(attrs, [z]) {
    featureSize(z);
    return [{ shape: [...z!.shape.slice(0, -1), attrs.valueSize], dtype: 'float32' }];
  },
  async decide(ctx, [z]) {
    const indices = nearestKeys(ctx.attrs, z!, ctx.state.projection!, ctx.state.keys!);
    try {
      const host = (await indices.data()) as Int32Array;
      ctx.record('keysUsed', keysUsed(host, ctx.attrs.heads));
      return { indices: Int32Array.from(host) } satisfies KeySelection;
    } finally {
      indices.dispose();
    }
  },
  forward(ctx, [z]) {
    const { heads, keysPerHead, valueSize } = ctx.attrs;
    const d = z!.shape[z!.rank - 1]!;
    const rows = z!.size / d;
    const selection = selectionOf(ctx, rows);
    const indices =
      selection === undefined
        ? nearestKeys(ctx.attrs, z!, ctx.state.projection!, ctx.state.keys!)
        : tf.tensor2d(selection.indices, [rows, heads], 'int32');
    try {
      return [
        tf.tidy(() => {
          const table = tf.reshape(ctx.params.values!, [heads * keysPerHead, valueSize]);
          const selected = gatherRows(table, indices); // [rows, heads, dv]
          const mean = tf.mean(selected, 1);
          return z!.rank === 2 ? mean : tf.reshape(mean, [...z!.shape.slice(0, -1), valueSize]);
        }),
      ];
    } finally {
      indices.dispose();
    }
  },
  flops(attrs, [z]) {
    const d = z![z!.length - 1]!;
    const rows = z!.reduce((a, b) => a * b, 1) / d;
    const { heads, keysPerHead, keySize, valueSize } = attrs;
    return rows * (2 * d * heads * keySize + 2 * heads * keysPerHead * keySize + heads * valueSize);
  },
});

/** Options of {@link initKeyValueKeys}. */
export interface KeyInitOptions {
  /** The most k-means iterations per head (default 25). */
  iterations?: number;
  /** k-means convergence tolerance (default 1e-4), relative to the projected features' variance. */
  tolerance?: number;
  /** Seed of the row sample and of each head's k-means++ seeding (default 0). */
  seed?: number;
  /**
   * Rows k-means runs on (default: all): a seeded random sample of the features when there are
   * more. k-means costs `rows * keysPerHead * keySize` per iteration and head, on the host.
   */
  sampleRows?: number;
}

/** What {@link initKeyValueKeys} did, per head. */
export interface KeyInitResult {
  /** Feature rows k-means ran on. */
  rows: number;
  /** k-means inertia of each head: the summed squared distance of the rows to their keys. */
  inertia: number[];
  /** Lloyd iterations each head ran. */
  iterations: number[];
}

/** Rows per backend call when features are projected or keys selected outside a model run. */
const CHUNK_ROWS = 1024;

/** The tensors and sizes of the bottleneck `node` of `model`; throws naming the fix when it is none. */
function bottleneckOf(
  model: Model,
  node: string,
  caller: string,
): {
  projection: tf.Variable;
  keys: tf.Variable;
  heads: number;
  d: number;
  keySize: number;
  keysPerHead: number;
} {
  const found = model.graph.nodes.find((n) => n.name === node);
  if (found?.op !== KEY_VALUE_BOTTLENECK_OP) {
    const candidates = model.graph.nodes.filter((n) => n.op === KEY_VALUE_BOTTLENECK_OP).map((n) => n.name);
    const what =
      found === undefined ? 'is not in the model' : `is a ${found.op}, not a ${KEY_VALUE_BOTTLENECK_OP}`;
    throw new DynnError(
      'INVALID_OPTION',
      `${caller}: node '${node}' ${what}. Key-value bottlenecks of the model: ${candidates.map((c) => `'${c}'`).join(', ') || 'none'}.`,
      { node, op: KEY_VALUE_BOTTLENECK_OP },
    );
  }
  const projection = model.state.get(`${node}/projection`)!;
  const keys = model.state.get(`${node}/keys`)!;
  const [heads, d, keySize] = projection.shape as [number, number, number];
  return { projection, keys, heads, d, keySize, keysPerHead: keys.shape[1]! };
}

/**
 * Features as host rows of `d` values, checked: a tensor `[rows, d]` (read back; the caller keeps
 * it) or `rows * d` values, every one finite. Throws naming the node and the fix.
 */
async function hostFeatures(
  features: tf.Tensor | Float32Array,
  d: number,
  node: string,
  caller: string,
): Promise<{ values: Float32Array; rows: number }> {
  const isTensor = features instanceof tf.Tensor;
  if (
    !(isTensor || features instanceof Float32Array) ||
    (isTensor && (features.rank !== 2 || features.shape[1] !== d)) ||
    (!isTensor && features.length % d !== 0)
  ) {
    const what = isTensor
      ? `a tensor of shape [${features.shape}]`
      : features instanceof Float32Array
        ? `${features.length} values`
        : 'no Float32Array or tensor';
    throw new DynnError(
      'INVALID_OPTION',
      `${caller}: node '${node}' reads ${d} features per row; got ${what}. Give features [rows, ${d}].`,
      { node, op: KEY_VALUE_BOTTLENECK_OP },
    );
  }
  const values = isTensor ? ((await features.data()) as Float32Array) : features;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new DynnError(
        'INVALID_INPUT',
        `${caller}: feature row ${Math.floor(i / d)} holds ${values[i]} (node '${node}'); every feature must be finite.`,
        { node, op: KEY_VALUE_BOTTLENECK_OP },
      );
    }
  }
  return { values, rows: values.length / d };
}

/**
 * Sets the keys of the key-value bottleneck `node` of `model` by k-means, as the paper
 * initialises its codebooks on unlabelled data: the features (what the node reads, no labels)
 * are projected with each head's fixed projection, and each head's keys become the
 * `keysPerHead` centroids of {@link kmeans} on its projected rows. The model's `keys` state is
 * assigned in place; the values are left as they are. `features` is a tensor `[rows, d]` (the
 * caller keeps it) or `rows * d` values, row after row. Projects on the backend (async
 * readbacks, so any backend), then clusters on the host. Deterministic given the seed.
 *
 * Throws an `INVALID_OPTION` {@link DynnError} naming the node when it is not a key-value
 * bottleneck of the model, the features are not `d` wide, or there are fewer rows than keys per
 * head; an `INVALID_INPUT` one when a feature is NaN or infinite.
 *
 * @example
 * ```ts
 * const { inertia } = await initKeyValueKeys(model, 'kv', trainFeatures, { iterations: 20, seed: 1 });
 * ```
 */
export async function initKeyValueKeys(
  model: Model,
  node: string,
  features: tf.Tensor | Float32Array,
  options: KeyInitOptions = {},
): Promise<KeyInitResult> {
  const caller = 'initKeyValueKeys';
  const { projection, keys, heads, d, keySize, keysPerHead } = bottleneckOf(model, node, caller);
  const { values, rows } = await hostFeatures(features, d, node, caller);
  const fail = (message: string) =>
    new DynnError('INVALID_OPTION', `${caller}: ${message}`, { node, op: KEY_VALUE_BOTTLENECK_OP });
  if (rows < keysPerHead) {
    throw fail(
      `node '${node}' has ${keysPerHead} keys per head but the features have only ${rows} rows: ` +
        'give at least as many rows as keys, or use fewer keys.',
    );
  }
  const seed = options.seed ?? 0;
  const sampleRows = options.sampleRows ?? rows;
  if (!Number.isInteger(sampleRows) || sampleRows < keysPerHead) {
    throw fail(`sampleRows must be an integer >= keysPerHead (${keysPerHead}), got ${sampleRows}.`);
  }
  // The sample (sorted, so rows keep their order), projected chunk by chunk: [used, heads * dk].
  const chosen =
    sampleRows >= rows
      ? undefined
      : shuffledIndices(rows, createRng(seed))
          .subarray(0, sampleRows)
          .sort((a, b) => a - b);
  const used = chosen?.length ?? rows;
  const projected = new Float32Array(used * heads * keySize);
  const side = tf.tidy(() => tf.reshape(tf.transpose(projection, [1, 0, 2]), [d, heads * keySize]));
  try {
    for (let start = 0; start < used; start += CHUNK_ROWS) {
      const count = Math.min(CHUNK_ROWS, used - start);
      const chunk = new Float32Array(count * d);
      for (let r = 0; r < count; r++) {
        const row = chosen === undefined ? start + r : chosen[start + r]!;
        chunk.set(values.subarray(row * d, (row + 1) * d), r * d);
      }
      const out = tf.tidy(() => tf.matMul(tf.tensor2d(chunk, [count, d]), side));
      try {
        projected.set(await out.data(), start * heads * keySize);
      } finally {
        out.dispose();
      }
    }
  } finally {
    side.dispose();
  }
  const all = new Float32Array(heads * keysPerHead * keySize);
  const result: KeyInitResult = { rows: used, inertia: [], iterations: [] };
  for (let h = 0; h < heads; h++) {
    const slice = new Float32Array(used * keySize);
    for (let r = 0; r < used; r++) {
      const from = (r * heads + h) * keySize;
      slice.set(projected.subarray(from, from + keySize), r * keySize);
    }
    const clusters = kmeans(slice, keySize, {
      k: keysPerHead,
      iterations: options.iterations ?? 25,
      tolerance: options.tolerance ?? 1e-4,
      seed: seedFor(seed, `${node}/${h}`),
    });
    all.set(clusters.centroids, h * keysPerHead * keySize);
    result.inertia.push(clusters.inertia);
    result.iterations.push(clusters.iterations);
  }
  const value = tf.tensor3d(all, [heads, keysPerHead, keySize]);
  keys.assign(value);
  value.dispose();
  return result;
}

/**
 * The key each row of `features` selects in each head of the key-value bottleneck `node` of
 * `model`, as a run would: `rows * heads` key indices in `[0, keysPerHead)`, row after row. For
 * analysis (which keys a data set uses, how many rows share one, which keys two tasks share).
 * `features` as for {@link initKeyValueKeys}; computed on the backend in chunks, read back async.
 *
 * @example
 * ```ts
 * const selected = await selectKeys(model, 'kv', testFeatures); // selected[row * heads + head]
 * ```
 */
export async function selectKeys(
  model: Model,
  node: string,
  features: tf.Tensor | Float32Array,
): Promise<Int32Array> {
  const caller = 'selectKeys';
  const { projection, keys, heads, d, keySize, keysPerHead } = bottleneckOf(model, node, caller);
  const { values, rows } = await hostFeatures(features, d, node, caller);
  const attrs: KeyValueBottleneckAttrs = { heads, keysPerHead, keySize, valueSize: 1 };
  const out = new Int32Array(rows * heads);
  for (let start = 0; start < rows; start += CHUNK_ROWS) {
    const count = Math.min(CHUNK_ROWS, rows - start);
    const chunk = tf.tensor2d(values.subarray(start * d, (start + count) * d), [count, d]);
    const flat = nearestKeys(attrs, chunk, projection, keys);
    chunk.dispose();
    try {
      const selected = await flat.data();
      for (let i = 0; i < selected.length; i++)
        out[start * heads + i] = selected[i]! - (i % heads) * keysPerHead;
    } finally {
      flat.dispose();
    }
  }
  return out;
}
