import { describeEachBackend, expectClose, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { loadModel } from './io/load-model.js';
import { saveModel } from './io/save-model.js';
import { createModel, type Model } from './model.js';
import { applyPass } from './run-pass.js';
import { createRuntime } from './runtime.js';
import { Trainer } from './train.js';

const runtime = createRuntime();

/** Dense, batch norm, dense head: the batch norm holds the state that varies. */
function normalised(): Model {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3]);
  const hidden = b.add('core.Dense', x, { units: 4 }, { name: 'fc' });
  const normed = b.add('core.BatchNorm', hidden, { momentum: 0.5 }, { name: 'bn' });
  return createModel(runtime, b.build({ y: b.add('core.Dense', normed, { units: 2 }, { name: 'head' }) }), {
    seed: 1,
  });
}

/** The largest absolute difference between two tensors, read back asynchronously (GPU backends). */
async function largestDifference(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const max = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const [value] = await max.data();
  max.dispose();
  return value!;
}

const variant = (name: string) => ({ core: { stateVariant: name } });

async function roundTrip(model: Model): Promise<Model> {
  let saved: tf.io.ModelArtifacts | undefined;
  await saveModel(
    model,
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return loadModel(runtime, tf.io.fromMemory(saved!));
}

describeEachBackend('state variants', () => {
  guardLeaks();

  it('keeps batch-norm statistics per variant: trained, selected by run option, saved', async () => {
    const base = normalised();
    const model = applyPass(base, 'core.add-state-variants', { variants: ['w50', 'w100'] });
    base.dispose();
    expect(model.graph.state.map((t) => t.name)).toEqual([
      'bn/movingMean',
      'bn/movingMean@w50',
      'bn/movingMean@w100',
      'bn/movingVariance',
      'bn/movingVariance@w50',
      'bn/movingVariance@w100',
    ]);
    // Each variant starts as a copy of the default statistics.
    await expectClose(model.state.get('bn/movingMean@w50')!, model.state.get('bn/movingMean')!, {
      tolerance: 0,
    });

    const x = seededUniform([8, 3], { seed: 2, min: 1, max: 3 });
    const y = seededUniform([8, 2], { seed: 3 });
    const optimizer = tf.train.sgd(0.1);
    const trainer = new Trainer(model, {
      loss: 'meanSquaredError',
      optimizer,
      options: variant('w50'),
    });
    await trainer.step(x, y);
    trainer.dispose();
    optimizer.dispose();
    // Training with w50 selected moved w50's statistics only.
    const w50 = model.state.get('bn/movingMean@w50')!;
    const mean = model.state.get('bn/movingMean')!;
    expect(await largestDifference(w50, mean)).toBeGreaterThan(0.1);
    await expectClose(model.state.get('bn/movingMean@w100')!, mean, { tolerance: 0 });

    const withW50 = await model.predict(x, { options: variant('w50') });
    const withDefault = await model.predict(x);
    expect(await largestDifference(withW50, withDefault)).toBeGreaterThan(1e-3);

    const loaded = await roundTrip(model);
    const again = await loaded.predict(x, { options: variant('w50') });
    await expectClose(again, withW50);
    tf.dispose([x, y, withW50, withDefault, again]);
    loaded.dispose();
    model.dispose();
  });

  it('refuses a variant a node does not declare, naming the node and the pass that adds it', async () => {
    const model = normalised();
    const x = tf.ones([2, 3]);
    const error = await model.predict(x, { options: variant('w25') }).catch((e: unknown) => e);
    expect(isDynnError(error) && error.code === 'INVALID_OPTION').toBe(true);
    expect((error as Error).message).toMatch(
      /Node 'bn' \(core.BatchNorm\) has no state variant 'w25'.*core.add-state-variants/,
    );
    const bad = await model.predict(x, { options: { core: { stateVariant: 3 } } }).catch((e: unknown) => e);
    expect((bad as Error).message).toMatch(/core.stateVariant is 3/);
    expect(() => applyPass(model, 'core.add-state-variants', { variants: ['a/b'] })).toThrow(
      /letters, digits/,
    );
    expect(() => applyPass(model, 'core.add-state-variants', { variants: ['w'], nodes: ['fc'] })).toThrow(
      /node 'fc' \(core.Dense\) declares no state variants/,
    );
    x.dispose();
    model.dispose();
  });
});
