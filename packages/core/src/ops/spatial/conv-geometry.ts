import type { Dim, ValueInfo } from '../../ir.js';
import type { AttrSpec } from '../../op.js';

/*
 * Output-size and padding arithmetic shared by the convolution and pooling ops. It follows
 * TensorFlow's (and tfjs's) rules exactly, including the asymmetric split of `'same'` padding,
 * so gradients written against it line up with the forward kernels.
 */

/** The padding modes of the conv and pool ops, as in Keras and tfjs. */
export const PADDING_MODES = ['same', 'valid'] as const;

/** `'same'`: the output has `ceil(input / stride)` positions; `'valid'`: no padding at all. */
export type PaddingMode = (typeof PADDING_MODES)[number];

/** The attribute schema entry for `padding` on conv and pool ops (default `'valid'`, as in Keras). */
export const paddingAttr: AttrSpec = {
  kind: 'enum',
  values: PADDING_MODES,
  default: 'valid',
  doc: "'same' keeps ceil(size / stride) positions (zero padding, more at the bottom/right); 'valid' pads nothing",
};

/** A height/width pair: `[height, width]`. */
export type Pair = [number, number];

/** Zero padding around the two spatial axes, in elements. */
export interface SpatialPadding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * Reads an `ints` attribute holding one value per spatial axis: one value applies to both axes,
 * two are `[height, width]`. Throws naming the attribute otherwise.
 */
export function spatialPair(values: readonly number[], attribute: string): Pair {
  if (values.length === 1) return [values[0]!, values[0]!];
  if (values.length === 2) return [values[0]!, values[1]!];
  throw new Error(
    `attribute '${attribute}' must hold 1 or 2 values ([height, width]), got ${values.length}: [${values}]`,
  );
}

/** The extent a dilated kernel covers: `(kernel - 1) * dilation + 1`. */
export function effectiveKernelSize(kernel: number, dilation: number): number {
  return (kernel - 1) * dilation + 1;
}

/**
 * Number of output positions along one axis. Throws when a `'valid'` window does not fit.
 *
 * @param size - input positions along the axis
 * @param kernel - kernel (or pool window) size
 * @param stride - step between windows
 * @param dilation - spacing between kernel taps (1 for pools)
 */
export function convOutputSize(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  padding: PaddingMode,
): number {
  const effective = effectiveKernelSize(kernel, dilation);
  if (padding === 'same') return Math.ceil(size / stride);
  if (size < effective) {
    throw new Error(
      `input size ${size} is smaller than the ${dilation > 1 ? 'dilated ' : ''}window size ${effective} with 'valid' padding`,
    );
  }
  return Math.ceil((size - effective + 1) / stride);
}

/**
 * Like {@link convOutputSize} for a dimension that may be symbolic. A symbolic size stays the
 * same name when the op preserves it (`'same'`, stride 1); otherwise it becomes a new symbolic
 * name spelling the formula (e.g. `ceil(h/2)`), since its value is unknown until run time.
 */
export function convOutputDim(
  size: Dim,
  kernel: number,
  stride: number,
  dilation: number,
  padding: PaddingMode,
): Dim {
  if (typeof size === 'number') return convOutputSize(size, kernel, stride, dilation, padding);
  const shrink = padding === 'valid' ? effectiveKernelSize(kernel, dilation) - 1 : 0;
  if (shrink === 0 && stride === 1) return size;
  const reduced = shrink === 0 ? size : `${size}-${shrink}`;
  return stride === 1 ? reduced : `ceil((${reduced})/${stride})`;
}

/**
 * The padding before and after one axis: TensorFlow's rule, where `'same'` pads
 * `max((out - 1) * stride + effectiveKernel - size, 0)` in total and puts the odd element after.
 */
export function axisPadding(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  padding: PaddingMode,
): [before: number, after: number] {
  if (padding === 'valid') return [0, 0];
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + effectiveKernelSize(kernel, dilation) - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

/** Everything a 2-D convolution's gradients need about its shape, for concrete sizes. */
export interface Conv2DGeometry {
  inHeight: number;
  inWidth: number;
  outHeight: number;
  outWidth: number;
  kernelHeight: number;
  kernelWidth: number;
  strides: Pair;
  dilations: Pair;
  /** The zero padding the forward pass applies (TensorFlow's split for `'same'`). */
  padding: SpatialPadding;
}

/** Options of a 2-D convolution or pool window: strides, dilations and padding mode. */
export interface WindowOptions {
  strides: Pair;
  dilations: Pair;
  padding: PaddingMode;
}

/** Computes the {@link Conv2DGeometry} of a window of `kernel` sliding over `[height, width]`. */
export function conv2dGeometry(
  inHeight: number,
  inWidth: number,
  kernel: Pair,
  options: WindowOptions,
): Conv2DGeometry {
  const [kernelHeight, kernelWidth] = kernel;
  const { strides, dilations, padding } = options;
  const [top, bottom] = axisPadding(inHeight, kernelHeight, strides[0], dilations[0], padding);
  const [left, right] = axisPadding(inWidth, kernelWidth, strides[1], dilations[1], padding);
  return {
    inHeight,
    inWidth,
    outHeight: convOutputSize(inHeight, kernelHeight, strides[0], dilations[0], padding),
    outWidth: convOutputSize(inWidth, kernelWidth, strides[1], dilations[1], padding),
    kernelHeight,
    kernelWidth,
    strides,
    dilations,
    padding: { top, bottom, left, right },
  };
}

/**
 * Throws when both a stride and a dilation exceed 1: tfjs (like Keras) has no kernel for that mix.
 */
export function checkStridesOrDilations(strides: Pair, dilations: Pair): void {
  const strided = strides.some((s) => s > 1);
  const dilated = dilations.some((d) => d > 1);
  if (strided && dilated) {
    throw new Error(
      `strides [${strides}] and dilations [${dilations}] cannot both exceed 1 (tfjs and Keras support one or the other)`,
    );
  }
}

/** An NHWC input described by its value info: checked rank; the channel count may be symbolic. */
export interface ImageShape {
  batch: Dim;
  height: Dim;
  width: Dim;
  channels: Dim;
}

/** An NHWC input described by its value info: checked rank, concrete channel count. */
export interface ImageInfo extends ImageShape {
  channels: number;
}

/**
 * Reads an NHWC input's dimensions, throwing a clear error when it is not rank 4. The channel
 * count may be symbolic (a nested network's width chosen per run): ops without parameters
 * (pools, padding) pass it through.
 */
export function imageShape(input: ValueInfo | undefined): ImageShape {
  if (input === undefined) throw new Error('expects one input of shape [batch, height, width, channels]');
  if (input.shape.length !== 4) {
    throw new Error(
      `expects an input of shape [batch, height, width, channels] (NHWC), got [${input.shape}] (rank ${input.shape.length})`,
    );
  }
  const [batch, height, width, channels] = input.shape as [Dim, Dim, Dim, Dim];
  return { batch, height, width, channels };
}

/**
 * Reads an NHWC input's dimensions, throwing a clear error when it is not rank 4 or its channel
 * count is not a concrete number (parameter shapes depend on it).
 */
export function imageInfo(input: ValueInfo | undefined): ImageInfo {
  const { batch, height, width, channels } = imageShape(input);
  if (typeof channels !== 'number') {
    throw new Error(`needs a concrete channel count (last dimension), got '${channels}'`);
  }
  return { batch, height, width, channels };
}

/**
 * Output `[batch, height, width, channels]` of a conv or pool over an NHWC input: spatial sizes by
 * {@link convOutputDim} (symbolic sizes stay symbolic), `channels` as given.
 */
export function windowOutputShape(
  image: ImageShape,
  kernel: Pair,
  options: WindowOptions,
  channels: Dim,
): Dim[] {
  return [
    image.batch,
    convOutputDim(image.height, kernel[0], options.strides[0], options.dilations[0], options.padding),
    convOutputDim(image.width, kernel[1], options.strides[1], options.dilations[1], options.padding),
    channels,
  ];
}
