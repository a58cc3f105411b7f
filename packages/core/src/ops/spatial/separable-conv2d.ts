import * as tf from '@tensorflow/tfjs-core';
import { inputTensor, paramTensor } from '../../channel-axes.js';
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
  filterAxes,
} from './conv-attrs.js';
import { paddingAttr, type WindowOptions, windowOutputShape } from './conv-geometry.js';
import { biasAddFastGrad, conv2dFastGrad, depthwiseConv2dFastGrad } from './conv-gradients.js';

/** Resolved attributes of {@link separableConv2dOp}. */
export interface SeparableConv2DAttrs extends ConvWindowAttrs {
  filters: number;
  depthMultiplier: number;
}

/** The pointwise step: a 1x1 convolution, stride 1, no padding. */
const POINTWISE: WindowOptions = { strides: [1, 1], dilations: [1, 1], padding: 'valid' };

/**
 * `core.SeparableConv2D`: a depthwise convolution (strides, padding and dilations apply here)
 * followed by a 1x1 pointwise convolution, like Keras `SeparableConv2D`.
 *
 * - attrs: `filters`, `kernelSize` ([kh, kw]), `strides` ([1, 1]), `padding` ('valid'),
 *   `dilations` ([1, 1]), `depthMultiplier` (1), `useBias` (true), `activation` ('linear')
 * - input: `[batch, height, width, cin]`; output: `[batch, outHeight, outWidth, filters]`
 * - params: `depthwiseKernel` `[kh, kw, cin, depthMultiplier]`, `pointwiseKernel`
 *   `[1, 1, cin * depthMultiplier, filters]` (both Glorot uniform), `bias` `[filters]` (zeros)
 * - channels: space `in` (input axis 3, `depthwiseKernel` axis 2, and `pointwiseKernel` axis 2 in
 *   blocks of `depthMultiplier`: intermediate channel `c * depthMultiplier + m` comes from input
 *   channel `c`) and space `out` (`pointwiseKernel` axis 3, `bias`, output axis 3); resizing sets
 *   `filters`
 */
export const separableConv2dOp = defineOp<SeparableConv2DAttrs>({
  type: 'core.SeparableConv2D',
  version: 1,
  description:
    'A depthwise then 1x1 pointwise convolution over NHWC images with optional bias and activation (Keras SeparableConv2D).',
  attrs: {
    filters: { kind: 'int', min: 1, doc: 'number of output channels' },
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
      {
        name: 'pointwiseKernel',
        shape: [1, 1, channels * multiplier, attrs.filters],
        init: { kind: 'glorotUniform', fanIn: channels * multiplier, fanOut: attrs.filters },
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
        { tensor: paramTensor('depthwiseKernel'), axis: 2, space: 'in' },
        { tensor: paramTensor('pointwiseKernel'), axis: 2, space: 'in', block: attrs.depthMultiplier },
        ...filterAxes('pointwiseKernel', attrs.useBias),
      ],
    };
  },
  resize: (attrs, _inputs, _outputs, spaces) => ({ ...attrs, filters: spaces.out ?? attrs.filters }),
  forward(ctx, [x]) {
    const { options } = convWindow(ctx.attrs);
    return [
      tf.tidy(() => {
        const { depthwiseKernel, pointwiseKernel, bias } = ctx.params;
        const depthwise = depthwiseConv2dFastGrad(x as tf.Tensor4D, depthwiseKernel as tf.Tensor4D, options);
        let y: tf.Tensor = conv2dFastGrad(depthwise, pointwiseKernel as tf.Tensor4D, POINTWISE);
        if (ctx.attrs.useBias) y = biasAddFastGrad(y, bias as tf.Tensor1D);
        return applyActivation(ctx.attrs.activation, y);
      }),
    ];
  },
  flops(attrs, [input], [output]) {
    const [kh, kw] = convWindow(attrs).kernel;
    const [batch, outHeight, outWidth] = output!;
    const depthwiseChannels = input![3]! * attrs.depthMultiplier;
    const positions = batch! * outHeight! * outWidth!;
    const depthwise = 2 * kh * kw * depthwiseChannels * positions;
    const pointwise = 2 * depthwiseChannels * attrs.filters * positions;
    const perOutput = (attrs.useBias ? 1 : 0) + activationFlops(attrs.activation);
    return depthwise + pointwise + product(output!) * perOutput;
  },
});
