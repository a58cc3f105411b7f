// Incremental decoding with a session: a small causal character transformer is trained on Jane
// Austen's novels (bits per character on held-out text), then generates text two ways side by
// side: recomputing the whole prefix for every new character, and in a session where causal
// attention keeps a KV cache and the position embedding its offset, one character per run. Both
// give the same text; the session computes one position per character instead of the prefix.
// CI runs `main()` (examples/core.node.test.ts).
import {
  type BackendName,
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  type Model,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

const CONTEXT = 32;
const WIDTH = 48;

/** Embedding, learned positions, one causal attention block with a feed-forward layer, a head. */
function charTransformer(vocab: number): Graph {
  const b = new GraphBuilder(createRuntime());
  const chars = b.input('chars', 'int32', ['batch', 'time']);
  const embedded = b.add('core.Embedding', chars, { inputDim: vocab, outputDim: WIDTH }, { name: 'embed' });
  const h = b.add('core.PositionEmbedding', embedded, { maxLength: 2 * CONTEXT }, { name: 'positions' });
  const attended = b.add(
    'core.MultiHeadAttention',
    [h, h],
    { numHeads: 4, keyDim: 12, causal: true },
    { name: 'attention' },
  );
  const mixed = b.add('core.Add', [h, attended]);
  const hidden = b.add('core.Dense', mixed, { units: 2 * WIDTH, activation: 'relu' }, { name: 'ffn' });
  const ffn = b.add('core.Add', [mixed, b.add('core.Dense', hidden, { units: WIDTH }, { name: 'ffn_out' })]);
  return b.build({ logits: b.add('core.Dense', ffn, { units: vocab }, { name: 'head' }) });
}

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

/** Greedy generation of `count` characters after `prompt`, timing each way. */
async function generate(model: Model, prompt: number[], count: number, session: boolean) {
  const ids = [...prompt];
  const run = session ? model.session() : undefined;
  let flops = 0;
  const start = performance.now();
  let fed = ids;
  for (let k = 0; k < count; k++) {
    const input = tf.tensor2d(fed, [1, fed.length], 'int32');
    const { outputs, report } = run ? await run.run(input) : await model.run(input);
    flops += report!.flops;
    const logits = outputs.logits!;
    const next = tf.tidy(() =>
      tf.argMax(tf.reshape(tf.slice(logits, [0, fed.length - 1, 0], [1, 1, -1]), [-1])),
    );
    const id = (await next.data())[0]!;
    tf.dispose([input, logits, next]);
    ids.push(id);
    fed = run ? [id] : ids;
  }
  const ms = performance.now() - start;
  run?.dispose();
  return { ids, ms, flops };
}

export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
  steps = 1000,
) {
  await useBackend(backend);
  const austen = await loadAusten();
  const split = Math.floor(austen.ids.length * 0.9);
  const model = createModel(createRuntime(), charTransformer(austen.vocab.length), { seed: 1 });

  const optimizer = tf.train.adam(3e-3);
  const trainer = new Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer });
  for (let step = 0; step < steps; step++) {
    const batch = windows(austen.ids, 0, split, 32, CONTEXT, step + 1);
    await trainer.step(batch.x, batch.y, step);
    tf.dispose([batch.x, batch.y]);
  }
  trainer.dispose();
  optimizer.dispose();

  // Bits per character on held-out text: mean cross-entropy over every position, in bits.
  const test = windows(austen.ids, split, austen.ids.length, 256, CONTEXT, 7);
  const logits = await model.predict(test.x);
  const nats = tf.tidy(() =>
    tf.mean(tf.losses.softmaxCrossEntropy(tf.oneHot(test.y, austen.vocab.length), logits)),
  );
  const bitsPerChar = (await nats.data())[0]! / Math.LN2;
  tf.dispose([test.x, test.y, logits, nats]);
  log(`trained ${steps} steps on Austen: ${bitsPerChar.toFixed(2)} bits per character on held-out text`);

  // #region generate
  const prompt = Array.from(austen.encode('It is a truth universally'));
  const full = await generate(model, prompt, CONTEXT, false);
  const cached = await generate(model, prompt, CONTEXT, true);
  // #endregion generate
  const text = austen.decode(cached.ids);
  log(`generated: ${JSON.stringify(text)}`);
  log(`recomputing the prefix: ${full.ms.toFixed(0)} ms, ${full.flops} FLOPs for ${CONTEXT} characters`);
  log(
    `session with a KV cache: ${cached.ms.toFixed(0)} ms, ${cached.flops} FLOPs (x${(full.flops / cached.flops).toFixed(1)} fewer)`,
  );
  model.dispose();
  return {
    bitsPerChar,
    same: full.ids.join(',') === cached.ids.join(','),
    text,
    flops: { full: full.flops, session: cached.flops },
    ms: { full: full.ms, session: cached.ms },
  };
}
