// Sparse attention end to end on Jane Austen's novels: a small causal character model whose
// attention layer has two heads that look back over a sliding window of 32 characters and two
// routing heads that attend within clusters of similar characters, trained briefly; then it
// generates text in a session (a KV cache bounded by the window, the routing heads' cluster
// windows) and checks that equals recomputing the whole prefix each step; and it reads, from the
// compute report of a 1,024-character run, the FLOPs the layer computed against dense attention
// at that length. docs/sparse-attention.md and docs/packages/sparse-attention.md quote its
// regions; examples/sparse-attention.node.test.ts runs `main()`.
import {
  type BackendName,
  createModel,
  createRuntime,
  GraphBuilder,
  type Model,
  type Runtime,
  resolveAttrs,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import { addSparseAttention, SPARSE_ATTENTION_OP, sparseAttention } from '@dynn/sparse-attention';
import * as tf from '@tensorflow/tfjs-core';

/** Characters per training window. */
export const CONTEXT = 128;
/** Width of the model, attention heads and their size. */
const WIDTH = 64;
const HEADS = 4;
const KEY_DIM = 16;
/** Length of the held-out run whose compute report is compared with dense attention. */
export const REPORT_LENGTH = 1024;

/** `count` windows of `length + 1` characters from `ids[from, to)`: inputs and next-character targets. */
function windows(
  ids: ArrayLike<number>,
  from: number,
  to: number,
  count: number,
  length: number,
  seed: number,
) {
  const x = new Int32Array(count * length);
  const y = new Int32Array(count * length);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const start = from + (state % (to - from - length - 1));
    for (let t = 0; t < length; t++) {
      x[i * length + t] = ids[start + t]!;
      y[i * length + t] = ids[start + t + 1]!;
    }
  }
  return { x: tf.tensor2d(x, [count, length], 'int32'), y: tf.tensor2d(y, [count, length], 'int32') };
}

/** FLOPs of core's dense causal `core.MultiHeadAttention` of the same heads on `time` positions. */
function denseAttentionFlops(runtime: Runtime, time: number): number {
  const dense = runtime.op('core.MultiHeadAttention');
  const attrs = resolveAttrs(dense, { numHeads: HEADS, keyDim: KEY_DIM, causal: true }, 'dense');
  const shape = [1, time, WIDTH];
  return dense.flops(attrs, [shape, shape], [shape]);
}

/** Greedy generation of `count` characters after `prompt`: in a session, or recomputing the prefix. */
async function generate(model: Model, prompt: number[], count: number, inSession: boolean) {
  const ids = [...prompt];
  // #region generate
  // A session keeps each layer's KV cache between runs: the prompt in one run, then one
  // character per run. The window heads keep only the last 32 keys, the routing heads each
  // cluster's current and previous window.
  const session = inSession ? model.session() : undefined;
  let fed = ids;
  for (let k = 0; k < count; k++) {
    const input = tf.tensor2d(fed, [1, fed.length], 'int32');
    const logits = session ? await session.predict(input) : await model.predict(input);
    const next = tf.tidy(() =>
      tf.argMax(tf.reshape(tf.slice(logits, [0, fed.length - 1, 0], [1, 1, -1]), [-1])),
    );
    const id = (await next.data())[0]!;
    tf.dispose([input, logits, next]);
    ids.push(id);
    fed = session ? [id] : ids;
  }
  session?.dispose();
  // #endregion generate
  return ids;
}

/** What the example measured. */
export interface AustenSparseResult {
  /** Bits per character on held-out windows of {@link CONTEXT} characters. */
  bitsPerChar: number;
  /** The generated text (prompt included). */
  text: string;
  /** Whether the session generated what recomputing the prefix generated. */
  same: boolean;
  /** FLOPs of the sparse-attention node on {@link REPORT_LENGTH} characters, from the compute report. */
  attentionFlops: number;
  /** FLOPs of dense causal attention of the same heads at that length. */
  denseFlops: number;
  /** Tiles the window heads computed, and the tiles of dense attention at that length. */
  keptTiles: number;
  denseTiles: number;
  /** Query-key pairs the routing heads computed that count. */
  routingPairs: number;
  /** Tokens each routing head sent to each cluster. */
  clusterSizes: number[];
}

/** Trains the model for `steps` steps, then generates and reads its compute report. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
  steps = 150,
): Promise<AustenSparseResult> {
  await useBackend(backend);
  const austen = await loadAusten();
  const split = Math.floor(austen.ids.length * 0.9);

  // #region build
  const runtime = createRuntime({ plugins: [sparseAttention()] });
  const b = new GraphBuilder(runtime);
  // `time` is symbolic: the model runs on any length, and a session feeds one character per run.
  const chars = b.input('chars', 'int32', ['batch', 'time']);
  const h = b.add(
    'core.Embedding',
    chars,
    { inputDim: austen.vocab.length, outputDim: WIDTH },
    { name: 'embed' },
  );
  const attended = addSparseAttention(b, b.add('core.LayerNorm', h, {}, { name: 'norm1' }), {
    name: 'attention',
    numHeads: HEADS,
    keyDim: KEY_DIM,
    blockSize: 16,
    // The pattern heads: each character sees itself and the 31 before it, and ALiBi tells them
    // how far back a key is (the model has no position embedding, so it runs on any length).
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 31, after: 0 }] },
    scoreMods: [{ type: 'alibi' }],
    // The last 2 heads route: each character goes to the nearest of 4 centroids (learned by
    // online k-means) and attends, causally, within its cluster's windows of 16 characters.
    routing: { heads: 2, clusters: 4, window: 16, causal: true, decay: 0.99, commitment: 1e-4 },
  });
  const mixed = b.add('core.Add', [h, attended]);
  const hidden = b.add(
    'core.Dense',
    b.add('core.LayerNorm', mixed, {}, { name: 'norm2' }),
    { units: 2 * WIDTH, activation: 'relu' },
    { name: 'ffn' },
  );
  const out = b.add('core.Add', [mixed, b.add('core.Dense', hidden, { units: WIDTH }, { name: 'ffn_out' })]);
  const logits = b.add('core.Dense', out, { units: austen.vocab.length }, { name: 'head' });
  const model = createModel(runtime, b.build({ logits }), { seed: 1 });
  // #endregion build

  try {
    // #region train
    // An ordinary training loop: the layer plans each batch on the host, computes only the kept
    // pairs on the tape, moves its centroids and adds its commitment loss.
    const optimizer = tf.train.adam(3e-3);
    const trainer = new Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer });
    for (let step = 0; step < steps; step++) {
      const batch = windows(austen.ids, 0, split, 16, CONTEXT, step + 1);
      await trainer.step(batch.x, batch.y, step);
      tf.dispose([batch.x, batch.y]);
    }
    trainer.dispose();
    optimizer.dispose();
    // #endregion train

    // Bits per character on held-out text: mean cross-entropy over every position, in bits.
    const test = windows(austen.ids, split, austen.ids.length, 64, CONTEXT, 7);
    const predicted = await model.predict(test.x);
    const nats = tf.tidy(() =>
      tf.mean(tf.losses.softmaxCrossEntropy(tf.oneHot(test.y, austen.vocab.length), predicted)),
    );
    const bitsPerChar = (await nats.data())[0]! / Math.LN2;
    tf.dispose([test.x, test.y, predicted, nats]);
    log(`trained ${steps} steps on Austen: ${bitsPerChar.toFixed(2)} bits per character on held-out text`);

    const prompt = Array.from(austen.encode('It is a truth universally acknowledged, that a single man'));
    const cached = await generate(model, prompt, 48, true);
    const full = await generate(model, prompt, 48, false);
    const text = austen.decode(cached);
    const same = cached.join(',') === full.join(',');
    log(`generated in a session: ${JSON.stringify(text)}`);
    log(`recomputing the prefix for every character gives ${same ? 'the same text' : 'another text'}`);

    // #region report
    // One held-out run of 1,024 characters: the attention node's FLOPs and what its plan kept.
    const long = windows(austen.ids, split, austen.ids.length, 1, REPORT_LENGTH, 11);
    const { outputs, report } = await model.run(long.x);
    tf.dispose([long.x, long.y, ...Object.values(outputs)]);
    const node = report!.nodes.find((n) => n.op === SPARSE_ATTENTION_OP)!;
    const { keptTiles, denseTiles, routingPairs, clusterSizes } = node.stats as {
      keptTiles: number;
      denseTiles: number;
      routingPairs: number;
      clusterSizes: number[];
    };
    const denseFlops = denseAttentionFlops(runtime, REPORT_LENGTH);
    log(
      `attention on ${REPORT_LENGTH} characters: ${(node.flops / 1e6).toFixed(2)} MFLOPs, ` +
        `dense causal attention ${(denseFlops / 1e6).toFixed(2)} MFLOPs (${((100 * node.flops) / denseFlops).toFixed(0)}%)`,
    );
    log(`window heads: ${keptTiles} of ${denseTiles} tiles; routing heads: ${routingPairs} query-key pairs`);
    // #endregion report
    return {
      bitsPerChar,
      text,
      same,
      attentionFlops: node.flops,
      denseFlops,
      keptTiles,
      denseTiles,
      routingPairs,
      clusterSizes,
    };
  } finally {
    model.dispose();
  }
}
