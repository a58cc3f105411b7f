import {
  checkOpGradients,
  describeEachBackend,
  expectClose,
  guardLeaks,
  isGpuBackend,
  opParams,
  runOp,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor, paramTensor, stateTensor } from '../../channel-axes.js';
import { BATCH } from '../../ir.js';
import { resolveAttrs } from '../../op.js';
import { batchNormOp, batchNormTraining } from './batch-norm.js';
import { gradientCheckOptions, layerOutput, onCpu } from './spatial-test-utils.js';

/** Weights in tfjs-layers' order: gamma, beta (when present), moving mean, moving variance. */
function kerasWeights(params: Record<string, tf.Tensor>): tf.Tensor[] {
  return ['gamma', 'beta', 'movingMean', 'movingVariance'].flatMap((name) =>
    params[name] ? [params[name]] : [],
  );
}

/** Channel index of each flat element of a tensor of `shape`, normalised over `axis`. */
function channelIndex(shape: number[], axis: number): (i: number) => number {
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return (i) => Math.floor(i / inner) % shape[axis]!;
}

/** Biased per-channel mean and variance, by plain loops over the values. */
function naiveMoments(x: ArrayLike<number>, shape: number[], axis: number) {
  const channelOf = channelIndex(shape, axis);
  const channels = shape[axis]!;
  const count = x.length / channels;
  const mean = new Float64Array(channels);
  const variance = new Float64Array(channels);
  for (let i = 0; i < x.length; i++) mean[channelOf(i)]! += x[i]! / count;
  for (let i = 0; i < x.length; i++) variance[channelOf(i)]! += (x[i]! - mean[channelOf(i)]!) ** 2 / count;
  return { mean, variance };
}

/** `(x - mean) / sqrt(variance + epsilon) * gamma + beta` per channel, by plain loops. */
function naiveNormalize(
  x: ArrayLike<number>,
  shape: number[],
  axis: number,
  stats: { mean: ArrayLike<number>; variance: ArrayLike<number> },
  gamma: ArrayLike<number> | undefined,
  beta: ArrayLike<number> | undefined,
  epsilon: number,
): Float32Array {
  const channelOf = channelIndex(shape, axis);
  return Float32Array.from(x, (v, i) => {
    const c = channelOf(i);
    const normalized = (v - stats.mean[c]!) / Math.sqrt(stats.variance[c]! + epsilon);
    return normalized * (gamma?.[c] ?? 1) + (beta?.[c] ?? 0);
  });
}

describeEachBackend('core.BatchNorm', (backend) => {
  guardLeaks();

  const inferenceCases: { shape: number[]; axis: number; attrs: Record<string, number | boolean> }[] = [
    { shape: [2, 3, 4, 5], axis: 3, attrs: {} },
    { shape: [2, 3, 4, 5], axis: 1, attrs: { axis: 1, epsilon: 0.01 } },
    { shape: [4, 6], axis: 1, attrs: { scale: false } },
    { shape: [3, 2, 4], axis: 1, attrs: { axis: -2, center: false } },
  ];
  for (const { shape, axis, attrs } of inferenceCases) {
    it(`normalises with the moving statistics in inference (${JSON.stringify({ shape, ...attrs })})`, async () => {
      const x = seededUniform(shape, { seed: 3 });
      const all = opParams(batchNormOp, attrs, [x]);
      const { movingMean, movingVariance, ...params } = all;
      const state = { movingMean: movingMean!, movingVariance: movingVariance! };
      const { outputs, effects } = await runOp(batchNormOp, { attrs, inputs: [x], params, state });
      expect(effects.stateUpdates.size).toBe(0);
      const stats = { mean: await movingMean!.data(), variance: await movingVariance!.data() };
      const gamma = await params.gamma?.data();
      const beta = await params.beta?.data();
      const epsilon = (attrs.epsilon as number | undefined) ?? 1e-3;
      const expected = naiveNormalize(await x.data(), shape, axis, stats, gamma, beta, epsilon);
      await expectClose(outputs[0]!, expected, { label: 'BatchNorm' });
      tf.dispose([x, ...outputs, ...Object.values(all)]);
    });
  }

  it("matches tfjs-layers' BatchNormalization in inference (channels last)", async () => {
    const x = seededUniform([2, 3, 4, 5], { seed: 12 });
    const all = opParams(batchNormOp, {}, [x]);
    const { movingMean, movingVariance, ...params } = all;
    const expected = layerOutput(tfl.layers.batchNormalization({}), kerasWeights(all), x);
    const state = { movingMean: movingMean!, movingVariance: movingVariance! };
    const { outputs } = await runOp(batchNormOp, { inputs: [x], params, state });
    await expectClose(outputs[0]!, expected, { label: 'BatchNorm' });
    tf.dispose([x, expected, ...outputs, ...Object.values(all)]);
  });

  it("matches tfjs-layers' BatchNormalization in training: output and moving statistics", async () => {
    const x = seededUniform([3, 2, 3, 4], { seed: 4, min: -2, max: 3 });
    const attrs = { momentum: 0.8 };
    const all = opParams(batchNormOp, attrs, [x]);
    const { movingMean, movingVariance, ...params } = all;
    const layer = tfl.layers.batchNormalization({ momentum: 0.8 });
    tf.dispose(layer.apply(x) as tf.Tensor);
    layer.setWeights(kerasWeights(all));
    const expected = layer.apply(x, { training: true }) as tf.Tensor;
    const [, , expectedMean, expectedVariance] = layer.getWeights();
    const state = { movingMean: movingMean!, movingVariance: movingVariance! };
    const { outputs, effects } = await runOp(batchNormOp, {
      attrs,
      inputs: [x],
      params,
      state,
      training: true,
    });
    await expectClose(outputs[0]!, expected, { label: 'output' });
    await expectClose(effects.stateUpdates.get('movingMean')!, expectedMean!, { label: 'movingMean' });
    await expectClose(effects.stateUpdates.get('movingVariance')!, expectedVariance!, {
      label: 'movingVariance',
    });
    layer.dispose();
    tf.dispose([x, expected, ...outputs, ...effects.stateUpdates.values(), ...Object.values(all)]);
  });

  it('normalises with batch statistics over every axis but axis 1, without scale (naive loops)', async () => {
    const shape = [3, 4, 2, 3];
    const x = seededUniform(shape, { seed: 5, min: -1, max: 2 });
    const attrs = { axis: 1, scale: false, momentum: 0.5, epsilon: 0.01 };
    const all = opParams(batchNormOp, attrs, [x]);
    const { movingMean, movingVariance, ...params } = all;
    const state = { movingMean: movingMean!, movingVariance: movingVariance! };
    const { outputs, effects } = await runOp(batchNormOp, {
      attrs,
      inputs: [x],
      params,
      state,
      training: true,
    });
    const values = await x.data();
    const naive = naiveMoments(values, shape, 1);
    const expected = naiveNormalize(values, shape, 1, naive, undefined, await params.beta!.data(), 0.01);
    await expectClose(outputs[0]!, expected, { label: 'output' });
    const oldMean = await movingMean!.data();
    const oldVariance = await movingVariance!.data();
    const mix = (old: ArrayLike<number>, batch: ArrayLike<number>) =>
      Array.from(old, (v, c) => 0.5 * v + 0.5 * batch[c]!);
    await expectClose(effects.stateUpdates.get('movingMean')!, mix(oldMean, naive.mean), {
      label: 'movingMean',
    });
    await expectClose(effects.stateUpdates.get('movingVariance')!, mix(oldVariance, naive.variance), {
      label: 'movingVariance',
    });
    tf.dispose([x, ...outputs, ...effects.stateUpdates.values(), ...Object.values(all)]);
  });

  it("batchNormTraining's value and gradients equal tfjs's native autodiff on cpu", async () => {
    const tolerance = isGpuBackend(backend) ? 1e-3 : 1e-4;
    const compute = (normalize: (x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor) =>
      tf.tidy(() => {
        const inputs = [
          seededUniform([12, 3], { seed: 6, min: -1, max: 2 }),
          seededUniform([3], { seed: 7, min: 0.5, max: 1.5 }),
          seededUniform([3], { seed: 8 }),
        ];
        const r = seededUniform([12, 3], { seed: 9 });
        const { value, grads } = tf.valueAndGrads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(normalize(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D), r)),
        )(inputs);
        return [value, ...grads];
      });
    const expected = await onCpu(backend, () =>
      compute((x, gamma, beta) => {
        const { mean, variance } = tf.moments(x, 0);
        return tf.batchNorm(x, mean, variance, beta, gamma, 1e-3);
      }),
    );
    const actual = compute((x, gamma, beta) => batchNormTraining(x, gamma, beta, 1e-3).y);
    for (const [i, name] of ['value', 'dx', 'dgamma', 'dbeta'].entries()) {
      await expectClose(actual[i]!, expected[i]!, { tolerance, label: name });
    }
    tf.dispose(actual);
  });

  it('has finite-difference gradients in training (batch statistics) for input, gamma and beta', async () => {
    const x = seededUniform([4, 2, 3], { seed: 10, min: -1, max: 2 });
    await checkOpGradients(
      batchNormOp,
      { attrs: { axis: 1 }, inputs: [x], training: true },
      gradientCheckOptions(backend),
    );
    x.dispose();
  });

  it('has finite-difference gradients in inference (moving statistics)', async () => {
    const x = seededUniform([2, 3, 2, 4], { seed: 11 });
    await checkOpGradients(batchNormOp, { inputs: [x] }, gradientCheckOptions(backend));
    x.dispose();
  });
});

describe('core.BatchNorm shapes, params, state and FLOPs', () => {
  const input = (shape: (number | string)[]) => [{ name: 'x', dtype: 'float32' as const, shape }];

  it('keeps the input shape, symbolic dims included', () => {
    const attrs = resolveAttrs(batchNormOp, {}, 'bn');
    expect(batchNormOp.inferShape(attrs, input([BATCH, 'h', 5, 3]))).toEqual([
      { shape: [BATCH, 'h', 5, 3], dtype: 'float32' },
    ]);
  });

  it('declares gamma and beta only with scale and center, and both moving statistics as state', () => {
    const attrs = resolveAttrs(batchNormOp, { axis: 1, center: false }, 'bn');
    expect(batchNormOp.params!(attrs, input([BATCH, 4, 7]))).toEqual([
      { name: 'gamma', shape: [4], init: { kind: 'ones' } },
    ]);
    expect(batchNormOp.state!(attrs, input([BATCH, 4, 7]))).toEqual([
      { name: 'movingMean', shape: [4], init: { kind: 'zeros' } },
      { name: 'movingVariance', shape: [4], init: { kind: 'ones' } },
    ]);
  });

  it('rejects the batch axis, an axis out of range, a symbolic channel axis and rank 1', () => {
    const at = (axis: number) => resolveAttrs(batchNormOp, { axis }, 'bn');
    expect(() => batchNormOp.inferShape(at(0), input([BATCH, 4]))).toThrow(/non-batch axis/);
    expect(() => batchNormOp.inferShape(at(3), input([BATCH, 4, 5]))).toThrow(/non-batch axis/);
    expect(() => batchNormOp.inferShape(at(-1), input([BATCH, 'c']))).toThrow(/concrete size/);
    expect(() => batchNormOp.inferShape(at(-1), input([BATCH]))).toThrow(/rank 2 or more/);
  });

  it('counts a multiply and an add per element', () => {
    expect(batchNormOp.flops(resolveAttrs(batchNormOp, {}, 'bn'), [[2, 3, 4, 5]], [[2, 3, 4, 5]])).toBe(240);
  });

  it('ties its normalised axis to every per-channel tensor, none mixing', () => {
    const attrs = resolveAttrs(batchNormOp, { axis: 1, center: false }, 'bn');
    const x = input([BATCH, 4, 7]);
    expect(batchNormOp.channels!(attrs, x, [{ name: 'y', ...batchNormOp.inferShape(attrs, x)[0]! }])).toEqual(
      {
        spaces: { c: 4 },
        axes: [
          { tensor: inputTensor(0), axis: 1, space: 'c' },
          { tensor: outputTensor(0), axis: 1, space: 'c' },
          { tensor: paramTensor('gamma'), axis: 0, space: 'c' },
          { tensor: stateTensor('movingMean'), axis: 0, space: 'c' },
          { tensor: stateTensor('movingVariance'), axis: 0, space: 'c' },
        ],
      },
    );
  });

  it('gives its moving statistics the variants it names, selected by the run option core.stateVariant', () => {
    const attrs = resolveAttrs(batchNormOp, { stateVariants: ['w25', 'w50'] }, 'bn');
    expect(batchNormOp.state!(attrs, input([BATCH, 3]))).toEqual([
      { name: 'movingMean', shape: [3], init: { kind: 'zeros' }, variants: ['w25', 'w50'] },
      { name: 'movingVariance', shape: [3], init: { kind: 'ones' }, variants: ['w25', 'w50'] },
    ]);
    expect(batchNormOp.stateVariant!(attrs, { core: { stateVariant: 'w50' } })).toBe('w50');
    expect(batchNormOp.stateVariant!(attrs, {})).toBeUndefined();
  });
});
