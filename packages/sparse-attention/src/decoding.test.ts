import { type Graph, GraphBuilder, type Model } from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, seededInts, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { SparseAttentionOptions } from './sparse-attention-layer.js';
import { addSparseAttention } from './sparse-attention-layer.js';
import { attentionModel, runtime, shapeUniformsOnWebgl } from './test-models.js';

const VOCAB = 7;
const WIDTH = 8;
const LENGTH = 24;
const WINDOW = 5;

/**
 * A tiny causal character model: embedding, learned positions, one sparse-attention layer with a
 * residual, a head. `documents` / `prefix` add those inputs and wire them to the layer.
 */
function charModel(
  options: Omit<SparseAttentionOptions, 'padding' | 'documents' | 'prefix'>,
  wire: { padding?: boolean; documents?: boolean; prefix?: boolean } = {},
): Graph {
  const b = new GraphBuilder(runtime);
  const tokens = b.input('tokens', 'int32', ['batch', 'time']);
  const embedded = b.add('core.Embedding', tokens, { inputDim: VOCAB, outputDim: WIDTH }, { name: 'embed' });
  const h = b.add('core.PositionEmbedding', embedded, { maxLength: LENGTH }, { name: 'pos' });
  const attended = addSparseAttention(b, h, {
    name: 'attn',
    ...options,
    ...(wire.padding ? { padding: b.input('padding', 'float32', ['batch', 'time']) } : {}),
    ...(wire.documents ? { documents: b.input('documents', 'int32', ['batch', 'time']) } : {}),
    ...(wire.prefix ? { prefix: b.input('prefix', 'int32', ['batch']) } : {}),
  });
  const mixed = b.add('core.Add', [h, attended]);
  return b.build({ logits: b.add('core.Dense', mixed, { units: VOCAB }, { name: 'head' }) });
}

/** The feeds of positions `[from, to)` of a sequence: tokens, and the documents / prefix the model reads. */
type Feeds = (tokens: number[], from: number, to: number) => Record<string, tf.Tensor>;

const tokenFeeds: Feeds = (tokens, from, to) => ({
  tokens: tf.tensor2d(tokens.slice(from, to), [1, to - from], 'int32'),
});

/**
 * Greedy generation of `steps` tokens after `prompt` in a session (the prompt in one run, then one
 * position per run), checked against recomputing the whole prefix at each step: one run over the
 * generated sequence gives, at each position, the logits a recomputation of the prefix up to it
 * would (causal layers), so each step's logits must agree with them and greedy decoding of them
 * gives the same tokens. Returns both token sequences.
 */
async function greedyBothWays(
  model: Model,
  prompt: number[],
  steps: number,
  feeds: Feeds,
  check?: (model: Model, session: ReturnType<Model['session']>) => void,
): Promise<{ session: number[]; full: number[] }> {
  const session = model.session();
  const tokens = [...prompt];
  const stepLogits: tf.Tensor[] = [];
  for (let s = 0; s < steps; s++) {
    const start = s === 0 ? 0 : tokens.length - 1;
    const incremental = feeds(tokens, start, tokens.length);
    const logits = await session.predict(incremental);
    const last = tf.slice(logits, [0, logits.shape[1]! - 1, 0], [1, 1, VOCAB]);
    const next = tf.tidy(() => tf.argMax(tf.reshape(last, [VOCAB])));
    tokens.push((await next.data())[0]!);
    stepLogits.push(last);
    check?.(model, session);
    tf.dispose([...Object.values(incremental), logits, next]);
  }
  session.dispose();
  // The positions whose logits chose a generated token: the last of the prompt, then each but the last generated.
  const whole = feeds(tokens, 0, tokens.length - 1);
  const recomputed = await model.predict(whole);
  const chosen = tf.slice(recomputed, [0, prompt.length - 1, 0], [1, steps, VOCAB]);
  const stepped = tf.concat(stepLogits, 1);
  await expectClose(stepped, chosen, { label: 'logits of the steps' });
  const greedy = tf.tidy(() => tf.argMax(tf.reshape(chosen, [steps, VOCAB]), 1));
  const full = [...prompt, ...(await greedy.data())];
  tf.dispose([...Object.values(whole), recomputed, chosen, stepped, greedy, ...stepLogits]);
  return { session: tokens, full };
}

describeEachBackend('decoding with a session', (backend) => {
  shapeUniformsOnWebgl(backend);
  guardLeaks();

  it('generates with a bounded KV cache what recomputing the whole prefix generates', async () => {
    const model = attentionModel(
      charModel({
        numHeads: 2,
        keyDim: 4,
        blockSize: 4,
        pattern: { type: 'window', before: WINDOW, after: 0 },
        scoreMods: [{ type: 'alibi' }],
      }),
      3,
    );
    const cached: number[] = [];
    const { session, full } = await greedyBothWays(model, [1, 4, 2], 5, tokenFeeds, (_, s) => {
      cached.push((s.values.get('attn/keys') as tf.Tensor).shape[2]!);
    });
    expect(session).toEqual(full);
    // The cache never holds more than the window reaches: memory bounded, not growing with n.
    expect(Math.max(...cached)).toBe(WINDOW);
    expect(cached.slice(0, 3)).toEqual([3, 4, 5]);
    model.dispose();
  });

  it('decodes chunks of several positions as one run over the whole sequence computes them', async () => {
    const model = attentionModel(
      charModel({
        numHeads: 4,
        numKvHeads: 2,
        keyDim: 4,
        blockSize: 3,
        pattern: {
          type: 'and',
          of: [{ type: 'causal' }, { type: 'dilated', before: 8, after: 0, dilation: 2 }],
        },
        scoreMods: [
          { type: 'relative-bias', buckets: 6, maxDistance: 12, bidirectional: false },
          { type: 'softcap', cap: 3 },
        ],
      }),
      4,
    );
    const tokens = seededInts([2, 14], VOCAB, { seed: 5 });
    const whole = await model.predict(tokens);
    const session = model.session();
    for (const [start, size] of [
      [0, 5],
      [5, 1],
      [6, 4],
      [10, 4],
    ] as const) {
      const chunk = tf.slice(tokens, [0, start], [2, size]);
      const got = await session.predict(chunk);
      const want = tf.slice(whole, [0, start, 0], [2, size, VOCAB]);
      await expectClose(got, want, { tolerance: toleranceFor(backend) });
      tf.dispose([chunk, got, want]);
    }
    expect(session.values.get('attn/offset')).toBe(14);
    expect((session.values.get('attn/keys') as tf.Tensor).shape).toEqual([2, 2, 8, 4]);
    session.dispose();
    tf.dispose([tokens, whole]);
    model.dispose();
  });

  it('decodes left-padded rows: padded keys stay masked in the cache', async () => {
    const model = attentionModel(
      charModel(
        { numHeads: 2, keyDim: 4, blockSize: 4, pattern: { type: 'window', before: 6, after: 0 } },
        { padding: true },
      ),
      9,
    );
    const tokens = seededInts([2, 10], VOCAB, { seed: 10 });
    const padding = tf.tensor2d(
      Array.from({ length: 20 }, (_, i) => (i >= 10 && i < 13 ? 0 : 1)),
      [2, 10],
    );
    const whole = await model.predict({ tokens, padding });
    const session = model.session();
    for (const [start, size] of [
      [0, 4],
      [4, 1],
      [5, 5],
    ] as const) {
      const feeds = {
        tokens: tf.slice(tokens, [0, start], [2, size]),
        padding: tf.slice(padding, [0, start], [2, size]),
      };
      const got = await session.predict(feeds);
      const want = tf.slice(whole, [0, start, 0], [2, size, VOCAB]);
      await expectClose(got, want, { tolerance: toleranceFor(backend) });
      tf.dispose([...Object.values(feeds), got, want]);
    }
    expect((session.values.get('attn/padding') as tf.Tensor).shape).toEqual([2, 6]);
    session.dispose();
    tf.dispose([tokens, padding, whole]);
    model.dispose();
  });

  it('decodes documents and a prefix-LM whose prefix is the prompt', async () => {
    const documents = (from: number, to: number) =>
      tf.tensor2d(
        Array.from({ length: to - from }, (_, i) => (from + i < 6 ? 0 : 1)),
        [1, to - from],
        'int32',
      );
    const docModel = attentionModel(
      charModel(
        {
          numHeads: 2,
          keyDim: 4,
          blockSize: 4,
          pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'document' }] },
        },
        { documents: true },
      ),
      6,
    );
    const docs = await greedyBothWays(docModel, [2, 3], 6, (tokens, from, to) => ({
      ...tokenFeeds(tokens, from, to),
      documents: documents(from, to),
    }));
    expect(docs.session).toEqual(docs.full);
    docModel.dispose();

    const prompt = [5, 1, 3, 3];
    const prefixFeeds: Feeds = (tokens, from, to) => ({
      ...tokenFeeds(tokens, from, to),
      prefix: tf.tensor1d([prompt.length], 'int32'),
    });
    const lm = attentionModel(
      charModel({ numHeads: 2, keyDim: 4, blockSize: 4, pattern: { type: 'prefix-lm' } }, { prefix: true }),
      7,
    );
    const generated = await greedyBothWays(lm, prompt, 5, prefixFeeds);
    expect(generated.session).toEqual(generated.full);
    // A prefix longer than the first run would need keys of later runs: refused.
    const session = lm.session();
    const first = prefixFeeds(prompt, 0, 2);
    (await session.predict(first)).dispose();
    const second = prefixFeeds(prompt, 2, 3);
    await expect(session.predict(second)).rejects.toThrow(/'attn'.*give the whole prefix in the first run/s);
    tf.dispose([...Object.values(first), ...Object.values(second)]);
    session.dispose();
    lm.dispose();
  });

  it('decodes causal routing heads beside window heads as the full computation does', async () => {
    const model = attentionModel(
      charModel({
        numHeads: 3,
        keyDim: 4,
        blockSize: 4,
        pattern: { type: 'window', before: 4, after: 0 },
        routing: { heads: 1, clusters: 2, window: 3, causal: true, decay: 0.9, commitment: 0 },
      }),
      8,
    );
    const { session, full } = await greedyBothWays(model, [3, 0, 6, 2], 5, tokenFeeds);
    expect(session).toEqual(full);
    model.dispose();
  });
});
