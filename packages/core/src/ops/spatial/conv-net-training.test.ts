import {
  describeEachBackend,
  guardLeaks,
  isGpuBackend,
  opParams,
  seededInts,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { Attrs } from '../../ir.js';
import { type OpDef, resolveAttrs } from '../../op.js';
import { createOpContext } from '../../op-context.js';
import { avgPool2dOp } from './avg-pool2d.js';
import { batchNormOp } from './batch-norm.js';
import { conv2dOp } from './conv2d.js';
import { depthwiseConv2dOp } from './depthwise-conv2d.js';
import { globalAvgPool2dOp } from './global-avg-pool2d.js';
import { maxPool2dOp } from './max-pool2d.js';
import { separableConv2dOp } from './separable-conv2d.js';
import { zeroPadding2dOp } from './zero-padding2d.js';

// biome-ignore lint/suspicious/noExplicitAny: layers of every attribute type.
type Layer = { def: OpDef<any>; attrs: Attrs };

/** A tiny convnet using every op of this folder, with strides, dilations and both paddings. */
const LAYERS: Layer[] = [
  { def: zeroPadding2dOp, attrs: { padding: [1, 0, 1, 0] } },
  { def: conv2dOp, attrs: { filters: 4, kernelSize: [3, 3], padding: 'same', activation: 'relu' } },
  { def: batchNormOp, attrs: {} },
  { def: maxPool2dOp, attrs: { poolSize: [2, 2], padding: 'same' } },
  {
    def: conv2dOp,
    attrs: { filters: 4, kernelSize: [2, 2], dilations: [2, 2], padding: 'same', activation: 'tanh' },
  },
  {
    def: depthwiseConv2dOp,
    attrs: { kernelSize: [3, 3], strides: [2, 2], padding: 'same', depthMultiplier: 2 },
  },
  { def: avgPool2dOp, attrs: { poolSize: [2, 2], strides: [1, 1], padding: 'same' } },
  { def: separableConv2dOp, attrs: { filters: 3, kernelSize: [2, 2], activation: 'linear' } },
  { def: globalAvgPool2dOp, attrs: {} },
];

describeEachBackend('a convnet of the spatial ops', (backend) => {
  guardLeaks();

  // GPU backends run the same gradient code, checked against tfjs's cpu gradients op by op in
  // conv-gradients.test.ts; a whole net there costs seconds of software shader compilation.
  it.skipIf(isGpuBackend(backend))(
    'trains with tf.variableGrads: every parameter gets a gradient and the loss falls',
    async () => {
      const x = seededUniform([4, 9, 9, 2], { seed: 1 });
      const labels = seededInts([4], 3, { seed: 2 });
      const targets = tf.oneHot(labels, 3);
      // Build each layer's parameters (variables) and state on the shapes it sees.
      const layers: {
        layer: Layer;
        params: Record<string, tf.Variable>;
        state: Record<string, tf.Tensor>;
      }[] = [];
      let shape = x.shape;
      for (const [i, layer] of LAYERS.entries()) {
        const probe = tf.zeros(shape);
        const drawn = opParams(layer.def, layer.attrs, [probe], 20 + i);
        probe.dispose();
        const attrs = resolveAttrs(layer.def, layer.attrs, `l${i}`);
        const infos = [{ name: 'x', dtype: 'float32' as const, shape }];
        const stateNames = new Set((layer.def.state?.(attrs, infos) ?? []).map((s) => s.name));
        const params: Record<string, tf.Variable> = {};
        const state: Record<string, tf.Tensor> = {};
        for (const [name, t] of Object.entries(drawn)) {
          if (stateNames.has(name)) state[name] = t;
          else {
            params[name] = tf.variable(t);
            t.dispose();
          }
        }
        layers.push({ layer, params, state });
        const info = layer.def.inferShape(attrs, infos)[0]!;
        shape = info.shape as number[];
      }

      const step = () => {
        const updates: tf.Tensor[] = [];
        const { value, grads } = tf.variableGrads(() => {
          let h: tf.Tensor = x;
          for (const [i, { layer, params, state }] of layers.entries()) {
            const { context, effects } = createOpContext({
              node: { name: `l${i}`, op: layer.def.type, inputs: [], outputs: [], attrs: layer.attrs },
              attrs: resolveAttrs(layer.def, layer.attrs, `l${i}`),
              params,
              state,
              training: true,
              options: {},
              rows: { batchSize: 4, indices: Int32Array.from([0, 1, 2, 3]) },
              seed: 1,
            });
            h = (layer.def.forward(context, [h]) as tf.Tensor[])[0]!;
            for (const update of effects.stateUpdates.values()) updates.push(tf.keep(update));
          }
          // Softmax cross-entropy from plain ops (tfjs's own runs a customGrad that trips the
          // per-kernel leak check on wasm when IS_TEST is set).
          const logProbs = tf.sub(h, tf.log(tf.sum(tf.exp(h), 1, true)));
          return tf.neg(tf.mean(tf.sum(tf.mul(targets, logProbs), 1))) as tf.Scalar;
        });
        tf.dispose(updates);
        return { value, grads };
      };

      const losses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { value, grads } = step();
        losses.push((await value.data())[0]!);
        if (i === 0) {
          for (const [name, grad] of Object.entries(grads)) {
            const total = tf.tidy(() => tf.sum(tf.abs(grad)));
            const norm = (await total.data())[0]!;
            total.dispose();
            expect(Number.isFinite(norm) && norm > 0, `gradient of ${name} on ${backend}`).toBe(true);
          }
          expect(Object.keys(grads)).toHaveLength(
            layers.reduce((n, l) => n + Object.keys(l.params).length, 0),
          );
        }
        tf.tidy(() => {
          for (const { params } of layers) {
            for (const v of Object.values(params)) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.2)));
          }
        });
        tf.dispose([value, ...Object.values(grads)]);
      }
      expect(losses[2]!, `losses ${losses}`).toBeLessThan(losses[0]!);
      tf.dispose([
        x,
        labels,
        targets,
        ...layers.flatMap((l) => [...Object.values(l.params), ...Object.values(l.state)]),
      ]);
    },
  );

  if (backend === 'wasm') {
    it("needs these gradients: wasm registers none of tfjs's conv backprop-filter or depthwise backprop kernels", () => {
      for (const kernel of [
        'Conv2DBackpropFilter',
        'DepthwiseConv2dNativeBackpropFilter',
        'DepthwiseConv2dNativeBackpropInput',
      ]) {
        expect(tf.getKernel(kernel, 'wasm'), kernel).toBeUndefined();
      }
    });
  }
});
