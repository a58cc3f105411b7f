// State carried across training windows: a character-level GRU learns Jane Austen's text in
// windows of 16 characters. Trained with `Trainer.stepWindows` in a session, each window starts
// from the state the previous one left (truncated backprop through 4 windows on one tape), so the
// network learns to use context beyond a window; trained window by window from a zero state, it
// cannot. Both are scored the same way, streaming the held-out text through a session (bits per
// character). CI runs `main()` (examples/core.node.test.ts).
import {
  type BackendName,
  createModel,
  createRuntime,
  type Graph,
  GraphBuilder,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

const [HIDDEN, EMBED, WINDOW, STREAMS] = [64, 16, 16, 16];

/** Embedding, a GRU as a Scan over time (its state carried), a dense head per position. */
function charGru(vocab: number): Graph {
  const body = new GraphBuilder(createRuntime());
  const h = body.input('h', 'float32', ['batch', HIDDEN]);
  const x = body.input('x', 'float32', ['batch', EMBED]);
  const next = body.add('core.GRUCell', [x, h], { units: HIDDEN }, { name: 'gru' });
  const b = new GraphBuilder(createRuntime());
  const h0 = b.input('h0', 'float32', ['batch', HIDDEN]);
  const chars = b.input('chars', 'int32', ['batch', 'time']);
  const embedded = b.add('core.Embedding', chars, { inputDim: vocab, outputDim: EMBED }, { name: 'embed' });
  const [, states] = b.addMulti(
    'core.Scan',
    [h0, embedded],
    { body: body.subGraph({ next, out: next }) },
    { name: 'rnn' },
  );
  return b.build({ logits: b.add('core.Dense', states!, { units: vocab }, { name: 'head' }) });
}

/**
 * Window `w` of `STREAMS` parallel streams through `ids[from, to)`: stream s reads its own slice
 * of the text, so consecutive windows of a stream are consecutive text (what a carried state needs).
 */
function window(ids: ArrayLike<number>, from: number, to: number, w: number) {
  const span = Math.floor((to - from) / STREAMS);
  const x = new Int32Array(STREAMS * WINDOW);
  const y = new Int32Array(STREAMS * WINDOW);
  for (let s = 0; s < STREAMS; s++) {
    const start = from + s * span + ((w * WINDOW) % (span - WINDOW - 1));
    for (let t = 0; t < WINDOW; t++) {
      x[s * WINDOW + t] = ids[start + t]!;
      y[s * WINDOW + t] = ids[start + t + 1]!;
    }
  }
  return { x: tf.tensor2d(x, [STREAMS, WINDOW], 'int32'), y: tf.tensor2d(y, [STREAMS, WINDOW], 'int32') };
}

/** Trains a fresh GRU for `steps` steps of 4 windows each; carried: in one session across all of them. */
async function train(ids: ArrayLike<number>, split: number, vocab: number, steps: number, carried: boolean) {
  const model = createModel(createRuntime(), charGru(vocab), { seed: 1 });
  const optimizer = tf.train.adam(1e-2);
  const trainer = new Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer, clipNorm: 1 });
  const session = model.session();
  const h0 = tf.zeros([STREAMS, HIDDEN]);
  const perStep = 4;
  for (let step = 0; step < steps; step++) {
    const batches = Array.from({ length: perStep }, (_, k) => window(ids, 0, split, step * perStep + k));
    // #region windows
    // 4 consecutive windows of each stream on one tape, one update for them all. In the session,
    // what window k leaves in the GRU's state is what window k+1 starts from, and the last
    // window's state starts the next step; without it, every window starts from h0 = 0.
    await trainer.stepWindows(
      batches.map((b) => ({ x: { h0, chars: b.x }, y: b.y })),
      carried ? { session, seed: step } : { seed: step },
    );
    // #endregion windows
    tf.dispose(batches.flatMap((b) => [b.x, b.y]));
  }
  session.dispose();
  trainer.dispose();
  optimizer.dispose();
  h0.dispose();
  return model;
}

/**
 * Bits per character over `windows` consecutive held-out windows, each model as it was trained:
 * streamed through a session (state carried), or every window from h0 = 0.
 */
async function bitsPerChar(
  model: ReturnType<typeof createModel>,
  ids: ArrayLike<number>,
  from: number,
  to: number,
  vocab: number,
  windows: number,
  carried: boolean,
) {
  const session = carried ? model.session() : undefined;
  const h0 = tf.zeros([STREAMS, HIDDEN]);
  let nats = 0;
  for (let w = 0; w < windows; w++) {
    const { x, y } = window(ids, from, to, w);
    const logits = session ? await session.predict({ h0, chars: x }) : await model.predict({ h0, chars: x });
    const loss = tf.tidy(() => tf.losses.softmaxCrossEntropy(tf.oneHot(y, vocab), logits));
    nats += (await loss.data())[0]!;
    tf.dispose([x, y, logits, loss]);
  }
  session?.dispose();
  h0.dispose();
  return nats / windows / Math.LN2;
}

export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
  steps = 200,
) {
  await useBackend(backend);
  const austen = await loadAusten();
  const vocab = austen.vocab.length;
  const split = Math.floor(austen.ids.length * 0.9);
  const results: Record<'carried' | 'reset', number> = { carried: 0, reset: 0 };
  for (const carried of [true, false]) {
    const model = await train(austen.ids, split, vocab, steps, carried);
    const bits = await bitsPerChar(model, austen.ids, split, austen.ids.length, vocab, 20, carried);
    results[carried ? 'carried' : 'reset'] = bits;
    log(
      `${carried ? 'state carried across windows (4 per tape)' : 'each window from a zero state   '}: ${bits.toFixed(2)} bits per character`,
    );
    model.dispose();
  }
  return results;
}
