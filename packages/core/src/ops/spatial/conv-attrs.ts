import {
  type ChannelAxis,
  inputTensor,
  type OpChannels,
  outputTensor,
  paramTensor,
} from '../../channel-axes.js';
import type { Attrs, ValueInfo } from '../../ir.js';
import type { AttrSpec, ParamSpec } from '../../op.js';
import type { ActivationName } from '../basic/activation.js';
import {
  checkStridesOrDilations,
  type ImageInfo,
  type ImageShape,
  imageInfo,
  imageShape,
  type PaddingMode,
  type Pair,
  spatialPair,
  type WindowOptions,
} from './conv-geometry.js';

/** Attribute schema entries shared by the convolution ops (`Conv2D`, `DepthwiseConv2D`, `SeparableConv2D`). */
export const convAttrs = {
  kernelSize: {
    kind: 'ints',
    min: 1,
    doc: 'kernel [height, width] (one value: square)',
  },
  strides: { kind: 'ints', min: 1, default: [1, 1], doc: 'step [height, width] between windows' },
  dilations: {
    kind: 'ints',
    min: 1,
    default: [1, 1],
    doc: 'spacing [height, width] between kernel taps; cannot exceed 1 together with strides',
  },
  useBias: { kind: 'bool', default: true, doc: 'adds a learned bias per output channel' },
} satisfies Record<string, AttrSpec>;

/** The attribute schema entry for `depthMultiplier`: output channels per input channel of a depthwise step. */
export const depthMultiplierAttr: AttrSpec = {
  kind: 'int',
  min: 1,
  default: 1,
  doc: 'output channels per input channel of the depthwise step',
};

/** The resolved attributes every convolution op has. */
export interface ConvWindowAttrs extends Attrs {
  kernelSize: number[];
  strides: number[];
  padding: PaddingMode;
  dilations: number[];
  useBias: boolean;
  activation: ActivationName;
}

/** A convolution's kernel size and window options, read from its attributes and checked. */
export interface ConvWindow {
  kernel: Pair;
  options: WindowOptions;
}

/**
 * Reads the kernel size, strides, dilations and padding of a convolution op, throwing a clear
 * error when a pair has the wrong length or strides and dilations both exceed 1.
 */
export function convWindow(attrs: ConvWindowAttrs): ConvWindow {
  const kernel = spatialPair(attrs.kernelSize, 'kernelSize');
  const strides = spatialPair(attrs.strides, 'strides');
  const dilations = spatialPair(attrs.dilations, 'dilations');
  checkStridesOrDilations(strides, dilations);
  return { kernel, options: { strides, dilations, padding: attrs.padding } };
}

/** Checks a convolution's single float32 NHWC input and returns its dimensions. */
export function convInput(inputs: readonly ValueInfo[]): ImageInfo {
  return imageInfo(float32Input(inputs));
}

/**
 * Checks the single float32 NHWC input of an op without parameters (a pool, padding) and returns
 * its dimensions; its channel count may be symbolic.
 */
export function poolInput(inputs: readonly ValueInfo[]): ImageShape {
  return imageShape(float32Input(inputs));
}

function float32Input(inputs: readonly ValueInfo[]): ValueInfo | undefined {
  const input = inputs[0];
  if (input !== undefined && input.dtype !== 'float32') {
    throw new Error(`expects a float32 input, got ${input.dtype}`);
  }
  return input;
}

/** The `depthwiseKernel` parameter of depthwise and separable convs: [kh, kw, channels, multiplier], Glorot-initialised as Keras does. */
export function depthwiseKernelSpec(
  [kh, kw]: readonly [number, number],
  channels: number,
  multiplier: number,
): ParamSpec {
  return {
    name: 'depthwiseKernel',
    shape: [kh, kw, channels, multiplier],
    init: { kind: 'glorotUniform', fanIn: kh * kw * channels, fanOut: kh * kw * multiplier },
  };
}

/**
 * The output-channel axes of a convolution whose `kernel` param ends in its filters (`Conv2D`'s
 * `kernel`, `SeparableConv2D`'s `pointwiseKernel`): that kernel's last axis, the bias and the
 * output's channel axis, all in space `out`.
 */
export function filterAxes(kernel: string, useBias: boolean): ChannelAxis[] {
  return [
    { tensor: paramTensor(kernel), axis: 3, space: 'out' },
    ...(useBias ? [{ tensor: paramTensor('bias'), axis: 0, space: 'out' }] : []),
    { tensor: outputTensor(0), axis: 3, space: 'out' },
  ];
}

/**
 * The channel declaration of an op whose output channel `c` is its input channel `c` (a pool, a
 * padding, a global pool): one space `c` tying the input's axis 3 to the output's last axis. The
 * spatial axes stay unmapped (barriers): a window or a padding couples neighbouring positions
 * and changes their count, so positions are not channels here.
 */
export function passThroughChannels(inputs: readonly ValueInfo[], outputs: readonly ValueInfo[]): OpChannels {
  const { channels } = convInput(inputs);
  return {
    spaces: { c: channels },
    axes: [
      { tensor: inputTensor(0), axis: 3, space: 'c' },
      { tensor: outputTensor(0), axis: outputs[0]!.shape.length - 1, space: 'c' },
    ],
  };
}
