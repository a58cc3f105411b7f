import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, paramTensor } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import {
  activationAttr,
  activationFlops,
  applyActivation,
  canFuse,
  fusedActivation,
} from '../basic/activation.js';
import { product } from '../basic/shape-helpers.js';
import { type ConvWindowAttrs, convAttrs, convInput, convWindow, filterAxes } from './conv-attrs.js';
import { paddingAttr, windowOutputShape } from './conv-geometry.js';
import { biasAddFastGrad, conv2dFastGrad } from './conv-gradients.js';

/** Resolved attributes of {@link conv2dOp}. */
export interface Conv2DAttrs extends ConvWindowAttrs {
  filters: number;
}

/**
 * `core.Conv2D`: a 2-D convolution over NHWC images, like Keras `Conv2D`.
 *
 * - attrs: `filters`, `kernelSize` ([kh, kw]), `strides` ([1, 1]), `padding` ('valid'),
 *   `dilations` ([1, 1]), `useBias` (true), `activation` ('linear')
 * - input: `[batch, height, width, cin]`; output: `[batch, outHeight, outWidth, filters]`
 * - params: `kernel` `[kh, kw, cin, filters]` (Glorot uniform), `bias` `[filters]` (zeros)
 * - channels: space `in` (input axis 3, `kernel` axis 2) and space `out` (`kernel` axis 3, `bias`,
 *   output axis 3); resizing sets `filters`
 *
 * Its gradients are written with forward convolutions (see `conv-gradients.ts`), so it trains
 * on the wasm backend, which has no `Conv2DBackpropFilter` kernel.
 */
export const conv2dOp = defineOp<Conv2DAttrs>({
  type: 'core.Conv2D',
  version: 1,
  description: 'A 2-D convolution over NHWC images with optional bias and activation (Keras Conv2D).',
  attrs: {
    filters: { kind: 'int', min: 1, doc: 'number of output channels' },
    ...convAttrs,
    padding: paddingAttr,
    activation: activationAttr,
  },
  inputs: { min: 1 },
  params(attrs, inputs) {
    const { channels } = convInput(inputs);
    const [kh, kw] = convWindow(attrs).kernel;
    const receptive = kh * kw;
    return [
      {
        name: 'kernel',
        shape: [kh, kw, channels, attrs.filters],
        init: { kind: 'glorotUniform', fanIn: receptive * channels, fanOut: receptive * attrs.filters },
      },
      ...(attrs.useBias ? [{ name: 'bias', shape: [attrs.filters], init: { kind: 'zeros' as const } }] : []),
    ];
  },
  inferShape(attrs, inputs) {
    const image = convInput(inputs);
    const { kernel, options } = convWindow(attrs);
    return [{ shape: windowOutputShape(image, kernel, options, attrs.filters), dtype: 'float32' }];
  },
  channels(attrs, inputs) {
    const { channels } = convInput(inputs);
    return {
      spaces: { in: channels, out: attrs.filters },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'in' },
        { tensor: paramTensor('kernel'), axis: 2, space: 'in' },
        ...filterAxes('kernel', attrs.useBias),
      ],
    };
  },
  resize: (attrs, _inputs, _outputs, spaces) => ({ ...attrs, filters: spaces.out ?? attrs.filters }),
  forward(ctx, [x]) {
    const { options } = convWindow(ctx.attrs);
    const fused = fusedActivation(ctx.attrs.activation);
    if (fused && canFuse(ctx.training)) {
      return [
        tf.fused.conv2d({
          x: x as tf.Tensor4D,
          filter: ctx.params.kernel as tf.Tensor4D,
          strides: options.strides,
          pad: options.padding,
          dilations: options.dilations,
          ...(ctx.attrs.useBias ? { bias: ctx.params.bias } : {}),
          ...fused,
        }),
      ];
    }
    return [
      tf.tidy(() => {
        let y: tf.Tensor = conv2dFastGrad(
          x as tf.Tensor4D,
          ctx.params.kernel as tf.Tensor4D,
          options,
          ctx.inputGradients[0],
        );
        if (ctx.attrs.useBias) y = biasAddFastGrad(y, ctx.params.bias as tf.Tensor1D);
        return applyActivation(ctx.attrs.activation, y);
      }),
    ];
  },
  flops(attrs, [input], [output]) {
    const [kh, kw] = convWindow(attrs).kernel;
    const outputs = product(output!);
    const perOutput = 2 * kh * kw * input![3]! + (attrs.useBias ? 1 : 0) + activationFlops(attrs.activation);
    return outputs * perOutput;
  },
});
