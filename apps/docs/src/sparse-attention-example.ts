import {
  activeBackend,
  type ComputeReport,
  createRuntime,
  DynnError,
  type Model,
  type Runtime,
  resolveAttrs,
} from '@dynn/core';
import {
  type Pattern,
  pairKept,
  patternScope,
  planRouting,
  type RoutingAttrs,
  type RoutingPlan,
  SPARSE_ATTENTION_OP,
  type SparseAttentionAttrs,
  sparseAttention,
  unitNormalize,
} from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';
import { fetchJson } from './fetch-json.js';

/** The runtime the sparse-attention example's model needs: the core ops and the sparse-attention op. */
export function sparseAttentionRuntime(): Runtime {
  return createRuntime({ plugins: [sparseAttention()] });
}

/** Where the site serves the sparse-attention example's files, as absolute URLs. */
export interface SparseAttentionAssets {
  /** model.json of the character model. */
  model: string;
  /** How it was trained, and its vocabulary. */
  info: string;
}

/**
 * The sparse-attention example's files under a site root (`siteRoot`: the absolute URL of the
 * site's base, as `exampleAssets` takes it). They come from
 * `apps/docs/public/models/austen-sparse-attention/`.
 */
export function sparseAttentionAssets(siteRoot: string): SparseAttentionAssets {
  const at = (path: string) => new URL(`models/austen-sparse-attention/${path}`, siteRoot).href;
  return { model: at('model.json'), info: at('training.json') };
}

/** The tfjs flag that compiles WebGL shaders with shapes as uniforms instead of constants. */
const SHAPE_UNIFORMS_FLAG = 'WEBGL_USE_SHAPES_UNIFORMS';

/**
 * On WebGL, compiles shaders with shapes as uniforms: the example runs at every length the
 * visitor types and decodes one character per run, and with shapes compiled in, each new length
 * compiles every op's shaders again (about 100 ms each under a software GL). Other backends are
 * left as they are.
 */
export function shapesAsUniformsOnWebgl(): void {
  if (activeBackend() === 'webgl') tf.env().set(SHAPE_UNIFORMS_FLAG, true);
}

/** Characters the page runs the model on at most. */
export const MAX_CHARS = 512;
/** Characters the page generates after the text, in a session. */
export const CONTINUATION = 32;
/** Next characters listed for a position. */
export const TOP_NEXT = 5;

/** The file the training script writes beside the model. */
export interface ModelInfo {
  /** The characters the model knows, in id order. */
  vocab: string[];
  /** Characters per training window. */
  context: number;
  /** Training steps, windows per step. */
  steps: number;
  batchSize: number;
  /** Seconds the training took, and on which backend. */
  trainSeconds: number;
  backend: string;
  /** Trainable parameters. */
  params: number;
  /** Bits per character on held-out windows of `context` characters. */
  bitsPerChar: number;
}

const REGENERATE =
  'Regenerate it with `npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-sparse-attention-model.ts`.';

function corrupt(file: string, problem: string): DynnError {
  return new DynnError('DATA_CORRUPT', `${file}: ${problem}. ${REGENERATE}`, { file });
}

/**
 * Checks a parsed `training.json` (`file` names it in errors) and returns it typed: a vocabulary
 * of distinct single characters, positive counts, bits per character above 0. Throws
 * `DATA_CORRUPT` naming the field.
 */
export function readModelInfo(json: unknown, file: string): ModelInfo {
  const t = json as Partial<Record<keyof ModelInfo, unknown>> | null;
  if (t === null || typeof t !== 'object' || Array.isArray(t)) throw corrupt(file, 'is not a JSON object');
  const vocab = t.vocab;
  if (
    !Array.isArray(vocab) ||
    vocab.length === 0 ||
    !vocab.every((c) => typeof c === 'string' && c.length === 1) ||
    new Set(vocab).size !== vocab.length
  ) {
    throw corrupt(file, "'vocab' is not a list of distinct single characters");
  }
  for (const field of ['context', 'steps', 'batchSize', 'params'] as const) {
    const v = t[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw corrupt(file, `'${field}' is not a positive integer`);
    }
  }
  for (const field of ['trainSeconds', 'bitsPerChar'] as const) {
    const v = t[field];
    if (typeof v !== 'number' || !(v > 0)) throw corrupt(file, `'${field}' is not a positive number`);
  }
  if (typeof t.backend !== 'string') throw corrupt(file, "'backend' is not a string");
  return {
    vocab: vocab as string[],
    context: t.context as number,
    steps: t.steps as number,
    batchSize: t.batchSize as number,
    trainSeconds: t.trainSeconds as number,
    backend: t.backend,
    params: t.params as number,
    bitsPerChar: t.bitsPerChar as number,
  };
}

/**
 * Fetches and checks the model's `training.json` at `url` (an absolute URL). Throws
 * `DATA_MISSING` when it cannot be fetched and `DATA_CORRUPT` when it is malformed.
 */
export async function fetchModelInfo(
  url: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<ModelInfo> {
  return readModelInfo(await fetchJson(url, fetchFunction), url);
}

/** Text as the model's character ids. */
export interface EncodedText {
  /** The text run: the characters the model knows, the first {@link MAX_CHARS}. */
  text: string;
  /** One id per character of `text`. */
  ids: number[];
  /** Characters left out because the model does not know them, each once, in order of appearance. */
  unknown: string[];
  /** Whether the text was cut to {@link MAX_CHARS} characters. */
  cut: boolean;
}

/**
 * Encodes `text` with the model's vocabulary: characters it does not know are left out (curly
 * quotes, accents outside Austen's), and the text is cut to {@link MAX_CHARS} characters.
 */
export function encodeText(vocab: readonly string[], text: string): EncodedText {
  const index = new Map(vocab.map((c, i) => [c, i]));
  const kept: string[] = [];
  const unknown: string[] = [];
  for (const c of text) {
    if (c.length === 1 && index.has(c)) kept.push(c);
    else if (!unknown.includes(c)) unknown.push(c);
  }
  const cut = kept.length > MAX_CHARS;
  const run = kept.slice(0, MAX_CHARS);
  return { text: run.join(''), ids: run.map((c) => index.get(c)!), unknown, cut };
}

/** One sparse-attention layer of the model, as the page shows it. */
export interface AttentionLayerView {
  /** The node's name. */
  name: string;
  /** Heads in all, of which the first `patternHeads` follow the pattern and the rest route. */
  numHeads: number;
  patternHeads: number;
  /** The pattern heads' pattern and the block size of their plan. */
  pattern: Pattern;
  blockSize: number;
  /** The routing heads' attributes, or null. */
  routing: RoutingAttrs | null;
  /** Per routing head, each position's cluster (its nearest centroid). */
  clusters: Int32Array[];
  /** Per routing head and query position, the key positions it attends to, ascending. */
  routed: number[][][];
  /** Whether the routing read here gave the cluster sizes the layer recorded in the compute report. */
  routingAgrees: boolean;
  /** FLOPs the node computed (compute report), and dense causal attention of its heads at this length. */
  flops: number;
  denseFlops: number;
  /** Tiles its pattern heads computed, of the score matrix's tiles (compute report). */
  keptTiles: number;
  denseTiles: number;
  /** Query-key pairs its routing heads computed that count (compute report). */
  routingPairs: number;
}

/** What the sparse-attention example shows for one run. */
export interface SparseAttentionResult {
  /** The backend tfjs reports in use. */
  backend: string;
  /** The text run and its ids. */
  text: string;
  ids: number[];
  /** The model's vocabulary. */
  vocab: readonly string[];
  /** The attention layers, in graph order. */
  layers: AttentionLayerView[];
  /** `[length, vocab]`: the probability of each next character after each position. */
  probabilities: Float32Array;
  /** Greedy continuation of the text, generated one character per run in a session (KV cache). */
  continuation: string;
  /** FLOPs of the attention layers, and of dense causal attention of the same heads, at this length. */
  attentionFlops: number;
  denseAttentionFlops: number;
  /** The compute report of the timed run. */
  report: ComputeReport;
  /** Milliseconds of the first run (on WebGL and WebGPU, compiles the GPU programs) and the second. */
  firstMs: number;
  ms: number;
}

/** FLOPs of core's dense causal `core.MultiHeadAttention` with the heads of `attrs`, for `[1, time, width]`. */
function denseFlops(runtime: Runtime, attrs: SparseAttentionAttrs, time: number, width: number): number {
  const dense = runtime.op('core.MultiHeadAttention');
  const resolved = resolveAttrs(
    dense,
    { numHeads: attrs.numHeads, keyDim: attrs.keyDim, valueDim: attrs.valueDim, causal: true },
    'dense',
  );
  const shape = [1, time, width];
  return dense.flops(resolved, [shape, shape], [shape]);
}

/** Per routing head (rows of a batch of 1) and query position, the key positions its plan attends to. */
function routedKeys(plan: RoutingPlan): number[][][] {
  const { heads, time } = plan.shape;
  const sets = Array.from({ length: heads }, () => Array.from({ length: time }, () => new Set<number>()));
  for (let w = 0; w < plan.windows; w++) {
    for (let q = 0; q < plan.queriesPerWindow; q++) {
      const slot = w * plan.queriesPerWindow + q;
      const token = plan.slotToken[slot]!;
      if (token < 0) continue;
      const set = sets[Math.floor(token / time)]![token % time]!;
      for (let k = 0; k < plan.keysPerWindow; k++) {
        if (plan.mask !== undefined && plan.mask[slot * plan.keysPerWindow + k] !== 0) continue;
        set.add(plan.keyIndex[w * plan.keysPerWindow + k]! % time);
      }
    }
  }
  return sets.map((head) => head.map((set) => [...set].sort((a, b) => a - b)));
}

/** The key positions head `head` of `layer` attends to from query `position` of a text of `length`. */
export function attendedPositions(
  layer: AttentionLayerView,
  head: number,
  position: number,
  length: number,
): number[] {
  if (head >= layer.patternHeads) return layer.routed[head - layer.patternHeads]![position] ?? [];
  const scope = patternScope({ blockSize: layer.blockSize, length, start: 0 });
  const keys: number[] = [];
  for (let j = 0; j < length; j++) if (pairKept(layer.pattern, scope, position, j)) keys.push(j);
  return keys;
}

/** The `count` most probable next characters after `position`, most probable first. */
export function topNext(
  result: Pick<SparseAttentionResult, 'probabilities' | 'vocab'>,
  position: number,
  count = TOP_NEXT,
): { char: string; probability: number }[] {
  const v = result.vocab.length;
  const row = Array.from(result.probabilities.subarray(position * v, (position + 1) * v));
  return row
    .map((probability, id) => ({ char: result.vocab[id]!, probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, count);
}

async function timedRun(model: Model, input: tf.Tensor) {
  const started = performance.now();
  const { outputs, report } = await model.run(input);
  const logits = outputs[model.graph.outputs[0]!.name]!;
  const probabilities = tf.tidy(() => tf.softmax(tf.squeeze(logits, [0])));
  try {
    // The time includes reading the probabilities back: GPU work is only done once they arrive.
    const values = (await probabilities.data()) as Float32Array;
    return { probabilities: values, report: report!, ms: performance.now() - started };
  } finally {
    tf.dispose([probabilities, ...Object.values(outputs)]);
  }
}

/**
 * Runs the character model on `ids` twice (the second timed, its compute report kept), then once
 * more in a session, which keeps each layer's routing vectors: from them and the layer's
 * centroids, `planRouting` gives the windows each routing head attended to (the plan the layer
 * made, checked against the cluster sizes it recorded). The session then generates
 * {@link CONTINUATION} characters greedily, one per run. Leaves no tensor behind.
 */
export async function runSparseAttentionExample(
  model: Model,
  vocab: readonly string[],
  ids: readonly number[],
): Promise<SparseAttentionResult> {
  if (ids.length === 0) throw new DynnError('INVALID_INPUT', 'Type at least one character the model knows.');
  const length = ids.length;
  const input = tf.tensor2d([...ids], [1, length], 'int32');
  const session = model.session();
  try {
    const first = await timedRun(model, input);
    const run = await timedRun(model, input);
    const nodes = model.compiled.nodes.filter((c) => c.def.type === SPARSE_ATTENTION_OP);
    const prompt = await session.predict(input);
    tf.dispose(prompt);
    const layers: AttentionLayerView[] = [];
    for (const c of nodes) {
      const attrs = c.attrs as SparseAttentionAttrs;
      const reported = run.report.nodes.find((n) => n.name === c.path);
      const stats = reported?.stats ?? {};
      const routingHeads = attrs.routing?.heads ?? 0;
      let clusters: Int32Array[] = [];
      let routed: number[][][] = [];
      let routingAgrees = true;
      if (attrs.routing !== null) {
        // The session keeps the routing heads' unit query-key vectors `[routingHeads, time, keyDim]`
        // (batch 1): what the layer routed with.
        const vectors = (await (
          session.values.get(`${c.path}/routingKeys`) as tf.Tensor
        ).data()) as Float32Array;
        const centroidsT = unitNormalize(model.state.get(`${c.path}/centroids`)!);
        const centroids = (await centroidsT.data()) as Float32Array;
        centroidsT.dispose();
        const shape = { batch: 1, heads: routingHeads, time: length, dim: attrs.keyDim };
        const plan = planRouting(vectors, centroids, shape, attrs.routing);
        clusters = Array.from({ length: routingHeads }, (_, h) =>
          plan.assignment.slice(h * length, (h + 1) * length),
        );
        routed = routedKeys(plan);
        routingAgrees =
          JSON.stringify(Array.from(plan.clusterSizes)) === JSON.stringify(stats.clusterSizes ?? null);
      }
      layers.push({
        name: c.path,
        numHeads: attrs.numHeads,
        patternHeads: attrs.numHeads - routingHeads,
        pattern: attrs.pattern,
        blockSize: attrs.blockSize,
        routing: attrs.routing,
        clusters,
        routed,
        routingAgrees,
        flops: reported?.flops ?? 0,
        denseFlops: denseFlops(model.runtime, attrs, length, c.inputs[0]!.shape[2] as number),
        keptTiles: (stats.keptTiles as number | undefined) ?? 0,
        denseTiles: (stats.denseTiles as number | undefined) ?? 0,
        routingPairs: (stats.routingPairs as number | undefined) ?? 0,
      });
    }
    const continuation: number[] = [];
    let last = argMax(run.probabilities.subarray((length - 1) * vocab.length, length * vocab.length));
    for (let k = 0; k < CONTINUATION; k++) {
      continuation.push(last);
      const step = tf.tensor2d([last], [1, 1], 'int32');
      const logits = await session.predict(step);
      const values = await logits.data();
      tf.dispose([step, logits]);
      last = argMax(values);
    }
    return {
      backend: activeBackend(),
      text: ids.map((id) => vocab[id]!).join(''),
      ids: [...ids],
      vocab,
      layers,
      probabilities: run.probabilities,
      continuation: continuation.map((id) => vocab[id]!).join(''),
      attentionFlops: layers.reduce((s, l) => s + l.flops, 0),
      denseAttentionFlops: layers.reduce((s, l) => s + l.denseFlops, 0),
      report: run.report,
      firstMs: first.ms,
      ms: run.ms,
    };
  } finally {
    session.dispose();
    input.dispose();
  }
}

function argMax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
