import { describeEachBackend, expectClose, guardLeaks, seededInts, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { forwardForTraining } from './executor.js';
import type { Graph } from './ir.js';
import { createModel, type Model } from './model.js';
import { createRuntime } from './runtime.js';
import { Trainer } from './train.js';

const runtime = createRuntime();
const [VOCAB, LENGTH] = [7, 8];

/** A one-block causal language model: token and position embeddings, causal attention, a head. */
function tinyLm(): Graph {
  const b = new GraphBuilder(runtime);
  const tokens = b.input('tokens', 'int32', ['batch', 'time']);
  const embedded = b.add('core.Embedding', tokens, { inputDim: VOCAB, outputDim: 8 }, { name: 'embed' });
  const h = b.add('core.PositionEmbedding', embedded, { maxLength: LENGTH }, { name: 'pos' });
  const attended = b.add(
    'core.MultiHeadAttention',
    [h, h],
    { numHeads: 2, keyDim: 4, causal: true },
    { name: 'attn' },
  );
  const mixed = b.add('core.Add', [h, attended]);
  return b.build({ logits: b.add('core.Dense', mixed, { units: VOCAB }, { name: 'head' }) });
}

/** A tanh RNN as a Scan, its per-step readout and its last state as outputs. */
function rnn(): Graph {
  const body = new GraphBuilder(runtime);
  const h = body.input('h', 'float32', ['batch', 4]);
  const x = body.input('x', 'float32', ['batch', 3]);
  const next = body.add(
    'core.Dense',
    body.add('core.Concat', [h, x]),
    { units: 4, activation: 'tanh' },
    { name: 'cell' },
  );
  const y = body.add('core.Dense', next, { units: 2 }, { name: 'readout' });
  const b = new GraphBuilder(runtime);
  const h0 = b.input('h0', 'float32', ['batch', 4]);
  const xs = b.input('xs', 'float32', ['batch', 'time', 3]);
  const [last, ys] = b.addMulti('core.Scan', [h0, xs], { body: body.subGraph({ next, y }) }, { name: 'rnn' });
  return b.build({ ys: ys!, last: last! });
}

/** Greedy decoding of `steps` tokens after `prompt`: in a session (one position per run) or recomputing the whole prefix. */
async function greedy(
  model: Model,
  prompt: number[],
  steps: number,
  incremental: boolean,
): Promise<number[]> {
  const tokens = [...prompt];
  const session = incremental ? model.session() : undefined;
  let next = tokens;
  for (let s = 0; s < steps; s++) {
    const input = tf.tensor2d(
      incremental ? next : tokens,
      [1, incremental ? next.length : tokens.length],
      'int32',
    );
    const logits = incremental ? await session!.predict(input) : await model.predict(input);
    const last = tf.tidy(() =>
      tf.argMax(tf.squeeze(tf.slice(logits, [0, logits.shape[1]! - 1, 0], [1, 1, VOCAB])), -1),
    );
    const token = (await last.data())[0]!;
    tf.dispose([input, logits, last]);
    tokens.push(token);
    next = [token];
  }
  session?.dispose();
  return tokens;
}

describeEachBackend('sessions', () => {
  guardLeaks();

  it('decodes incrementally with a KV cache exactly as a run over the whole sequence', async () => {
    const model = createModel(runtime, tinyLm(), { seed: 3 });
    const tokens = seededInts([2, 6], VOCAB, { seed: 4 });
    const full = await model.predict(tokens);
    const session = model.session();
    // A prompt of 3 positions, then one position per run.
    for (const [start, size] of [
      [0, 3],
      [3, 1],
      [4, 1],
      [5, 1],
    ] as const) {
      const chunk = tf.slice(tokens, [0, start], [2, size]);
      const got = await session.predict(chunk);
      const want = tf.slice(full, [0, start, 0], [2, size, VOCAB]);
      await expectClose(got, want);
      tf.dispose([chunk, got, want]);
    }
    // The cache grew along time, one entry per position.
    expect((session.values.get('attn/keys') as tf.Tensor).shape).toEqual([2 * 2, 4, 6]);
    expect(session.values.get('pos/offset')).toBe(6);
    session.dispose();
    expect(await greedy(model, [1, 2], 5, true)).toEqual(await greedy(model, [1, 2], 5, false));
    tf.dispose([tokens, full]);
    model.dispose();
  });

  it('carries a Scan state from one chunk of a sequence to the next', async () => {
    const model = createModel(runtime, rnn(), { seed: 5 });
    const h0 = tf.zeros([2, 4]);
    const xs = seededUniform([2, 6, 3], { seed: 6 });
    const whole = await model.run({ h0, xs }, { report: false });
    const session = model.session();
    const pieces: tf.Tensor[] = [];
    let last: tf.Tensor | undefined;
    for (const [start, size] of [
      [0, 2],
      [2, 3],
      [5, 1],
    ] as const) {
      const chunk = tf.slice(xs, [0, start, 0], [2, size, 3]);
      const { outputs } = await session.run({ h0, xs: chunk }, { report: false });
      pieces.push(outputs.ys!);
      last?.dispose();
      last = outputs.last!;
      chunk.dispose();
    }
    const joined = tf.concat(pieces, 1);
    await expectClose(joined, whole.outputs.ys!);
    await expectClose(last!, whole.outputs.last!);
    session.reset();
    // After a reset the next run starts from h0 again.
    const again = await session.run({ h0, xs }, { report: false });
    await expectClose(again.outputs.ys!, whole.outputs.ys!);
    tf.dispose([
      h0,
      xs,
      joined,
      last!,
      ...pieces,
      ...Object.values(whole.outputs),
      ...Object.values(again.outputs),
    ]);
    session.dispose();
    model.dispose();
  });

  it('trains over windows in one tape: what window t stores is what window t+1 reads', async () => {
    const windows = [0, 1, 2].map((w) => ({
      xs: seededUniform([2, 3, 3], { seed: 10 + w }),
      ys: seededUniform([2, 3, 2], { seed: 20 + w }),
    }));
    const h0 = tf.zeros([2, 4]);
    const lr = 0.5;

    // Truncated backprop through the 3 windows, the state carried by the session.
    const model = createModel(runtime, rnn(), { seed: 7 });
    const optimizer = tf.train.sgd(lr);
    const trainer = new Trainer(model, { loss: 'meanSquaredError', output: 'ys', optimizer });
    const session = model.session();
    const { loss } = await trainer.stepWindows(
      windows.map((w) => ({ x: { h0, xs: w.xs }, y: { ys: w.ys } })),
      { session },
    );

    // The unrolled reference: the same windows on one tape, each window's initial state fed by hand.
    const reference = createModel(runtime, rnn(), { seed: 7 });
    const variables = [...reference.params.values()];
    const { value, grads } = tf.variableGrads(() => {
      let h = h0;
      const losses = windows.map((w) => {
        const forward = forwardForTraining(
          reference,
          new Map([
            ['h0', h],
            ['xs', w.xs],
          ]),
          {},
          0,
        );
        h = forward.outputs.last!;
        return tf.mean(tf.square(tf.sub(forward.outputs.ys!, w.ys)));
      });
      return tf.div(tf.addN(losses), losses.length) as tf.Scalar;
    }, variables);
    expect(loss).toBeCloseTo((await value.data())[0]!, 4);
    for (const [name, variable] of reference.params) {
      const stepped = tf.tidy(() => tf.sub(variable, tf.mul(grads[variable.name]!, lr)));
      await expectClose(model.params.get(name)!, stepped, { label: name });
      stepped.dispose();
    }
    // The session holds the last window's state, for the next step.
    expect((session.values.get('rnn/carry0') as tf.Tensor).shape).toEqual([2, 4]);
    tf.dispose([value, ...Object.values(grads), h0, ...windows.flatMap((w) => [w.xs, w.ys])]);
    session.dispose();
    trainer.dispose();
    optimizer.dispose();
    reference.dispose();
    model.dispose();
  });

  it('refuses a session past maxLength, of another model, or disposed, naming what to do', async () => {
    const model = createModel(runtime, tinyLm(), { seed: 1 });
    const other = createModel(runtime, tinyLm(), { seed: 1 });
    const session = model.session();
    const tokens = tf.zeros([1, 5], 'int32');
    (await session.predict(tokens)).dispose();
    const error = await session.predict(tokens).catch((e: unknown) => e);
    expect(
      isDynnError(error) &&
        /Node 'pos'.*reached position 10 but maxLength is 8; reset the session/.test(
          (error as Error).message,
        ),
    ).toBe(true);
    const foreign = await other.run(tokens, { session }).catch((e: unknown) => e);
    expect((foreign as Error).message).toMatch(/belongs to another model/);
    session.dispose();
    await expect(session.predict(tokens)).rejects.toThrow(/session was disposed/);
    tokens.dispose();
    other.dispose();
    model.dispose();
  });
});
