import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, outputTensor, paramTensor } from '../../channel-axes.js';
import { defineOp } from '../../op.js';
import { activationAttr, activationFlops, applyActivation } from '../basic/activation.js';
import { product } from '../basic/shape-helpers.js';
import {
  type ConvWindowAttrs,
  convAttrs,
  convInput,
  convWindow,
  depthMultiplierAttr,
  depthwiseKernelSpec,
} from './conv-attrs.js';
import { paddingAttr, windowOutputShape } from './conv-geometry.js';
import { biasAddFastGrad, depthwiseConv2dFastGrad } from './conv-gradients.js';

/** Resolved attributes of {@link depthwiseConv2dOp}. */
export interface DepthwiseConv2DAttrs extends ConvWindowAttrs {
  depthMultiplier: number;
}

/**
 * `core.DepthwiseConv2D`: a depthwise 2-D convolution over NHWC images (each input channel
 * convolved with its own `depthMultiplier` kernels), like Keras `DepthwiseConv2D`.
 *
 * - attrs: `kernelSize` ([kh, kw]), `strides` ([1, 1]), `padding` ('valid'), `dilations`
 *   ([1, 1]), `depthMultiplier` (1), `useBias` (true), `activation` ('linear')
 * - input: `[batch, height, width, cin]`; output: `[batch, outHeight, outWidth, cin * depthMultiplier]`
 *   (output channel `c * depthMultiplier + m` comes from input channel `c`)
 * - params: `depthwiseKernel` `[kh, kw, cin, depthMultiplier]` (Glorot uniform),
 *   `bias` `[cin * depthMultiplier]` (zeros)
 * - channels: one space `c` of the input channels: input axis 3, `depthwiseKernel` axis 2, and
 *   output axis 3 and `bias` in blocks of `depthMultiplier` (removing input channel `c` removes its
 *   `depthMultiplier` outputs); no attribute holds a channel count
 *
 * Its gradients are written with forward depthwise convolutions (see `conv-gradients.ts`): the
 * wasm backend has no depthwise backprop kernels.
 */
export const depthwiseConv2dOp = defineOp<DepthwiseConv2DAttrs>({
  type: 'core.DepthwiseConv2D',
  version: 1,
  description:
    'A depthwise 2-D convolution over NHWC images with optional bias and activation (Keras DepthwiseConv2D).',
  attrs: {
    ...convAttrs,
    padding: paddingAttr,
    depthMultiplier: depthMultiplierAttr,
    activation: activationAttr,
  },
  inputs: { min: 1 },
  params(attrs, inputs) {
    const { channels } = convInput(inputs);
    const [kh, kw] = convWindow(attrs).kernel;
    const multiplier = attrs.depthMultiplier;
    return [
      depthwiseKernelSpec([kh, kw], channels, multiplier),
      ...(attrs.useBias
        ? [{ name: 'bias', shape: [channels * multiplier], init: { kind: 'zeros' as const } }]
        : []),
    ];
  },
  inferShape(attrs, inputs) {
    const image = convInput(inputs);
    const { kernel, options } = convWindow(attrs);
    const channels = image.channels * attrs.depthMultiplier;
    return [{ shape: windowOutputShape(image, kernel, options, channels), dtype: 'float32' }];
  },
  channels(attrs, inputs) {
    const { channels } = convInput(inputs);
    const block = attrs.depthMultiplier;
    return {
      spaces: { c: channels },
      axes: [
        { tensor: inputTensor(0), axis: 3, space: 'c' },
        { tensor: paramTensor('depthwiseKernel'), axis: 2, space: 'c' },
        ...(attrs.useBias ? [{ tensor: paramTensor('bias'), axis: 0, space: 'c', block }] : []),
        { tensor: outputTensor(0), axis: 3, space: 'c', block },
      ],
    };
  },
  forward(ctx, [x]) {
    const { options } = convWindow(ctx.attrs);
    return [
      tf.tidy(() => {
        const kernel = ctx.params.depthwiseKernel as tf.Tensor4D;
        let y: tf.Tensor = depthwiseConv2dFastGrad(x as tf.Tensor4D, kernel, options);
        if (ctx.attrs.useBias) y = biasAddFastGrad(y, ctx.params.bias as tf.Tensor1D);
        return applyActivation(ctx.attrs.activation, y);
      }),
    ];
  },
  flops(attrs, _inputs, [output]) {
    const [kh, kw] = convWindow(attrs).kernel;
    const perOutput = 2 * kh * kw + (attrs.useBias ? 1 : 0) + activationFlops(attrs.activation);
    return product(output!) * perOutput;
  },
});
