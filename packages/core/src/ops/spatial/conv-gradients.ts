import * as tf from '@tensorflow/tfjs-core';
import { withSavedGrad } from '../basic/saved-grad.js';
import {
  type Conv2DGeometry,
  conv2dGeometry,
  type Pair,
  type SpatialPadding,
  type WindowOptions,
} from './conv-geometry.js';

/*
 * Gradients of 2-D and depthwise convolutions written with forward ops only.
 *
 * tfjs 4.22's wasm backend registers no `Conv2DBackpropFilter`,
 * `DepthwiseConv2dNativeBackpropFilter` or `DepthwiseConv2dNativeBackpropInput` kernel, and its
 * `Conv2DBackpropInput` is a plain loop (about 10x slower than a forward conv of the same size). Every
 * gradient below is therefore a forward `conv2d` / `depthwiseConv2d` (XNNPACK on wasm) on
 * re-arranged operands, plus pads, slices, transposes, reshapes and plain matMuls. The same code
 * runs on every backend, so all backends compute the same arithmetic.
 *
 * Notation: the forward pass computes
 * `y[n, i, j, o] = sum_{a, b, c} xp[n, i*sh + a*dh, j*sw + b*dw, c] * w[a, b, c, o]`,
 * where `xp` is `x` zero-padded by `geometry.padding`, `(sh, sw)` are the strides and `(dh, dw)`
 * the dilations. tfjs (like Keras) never has a stride and a dilation above 1 at once, which the
 * filter gradients rely on: they swap the roles of strides and dilations.
 */

/**
 * Pads the spatial axes of an NHWC tensor by the given amounts; a negative amount crops instead.
 */
export function padOrCrop(x: tf.Tensor4D, padding: SpatialPadding): tf.Tensor4D {
  const { top, bottom, left, right } = padding;
  return tf.tidy(() => {
    let out = x;
    if (top < 0 || bottom < 0 || left < 0 || right < 0) {
      const cropTop = Math.max(-top, 0);
      const cropLeft = Math.max(-left, 0);
      const height = x.shape[1] - cropTop - Math.max(-bottom, 0);
      const width = x.shape[2] - cropLeft - Math.max(-right, 0);
      out = tf.slice(out, [0, cropTop, cropLeft, 0], [-1, height, width, -1]);
    }
    const pads: [number, number][] = [
      [0, 0],
      [Math.max(top, 0), Math.max(bottom, 0)],
      [Math.max(left, 0), Math.max(right, 0)],
      [0, 0],
    ];
    return pads.some(([before, after]) => before > 0 || after > 0) ? tf.pad(out, pads) : out;
  });
}

/**
 * Spreads the spatial positions of an NHWC tensor `stride` apart, filling the gaps with zeros:
 * `[n, h, w, c]` becomes `[n, h * sh, w * sw, c]` with the input at rows `i * sh`, columns
 * `j * sw` (the trailing `s - 1` zero rows/columns included). Pads and reshapes only.
 */
export function spreadSpatial(x: tf.Tensor4D, strides: Pair): tf.Tensor4D {
  const [sh, sw] = strides;
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  return tf.tidy(() => {
    let out: tf.Tensor = x;
    if (sw > 1) {
      // Each pixel becomes a row of sw: itself then sw - 1 zeros.
      out = tf.pad(tf.reshape(out, [n * h, w, 1, c]), [
        [0, 0],
        [0, 0],
        [0, sw - 1],
        [0, 0],
      ]);
    }
    if (sh > 1) {
      // Each image row becomes sh rows: itself then sh - 1 zero rows.
      out = tf.pad(tf.reshape(out, [n, h, 1, w * sw * c]), [
        [0, 0],
        [0, 0],
        [0, sh - 1],
        [0, 0],
      ]);
    }
    return tf.reshape(out, [n, h * sh, w * sw, c]);
  });
}

function isPointwise(g: Conv2DGeometry): boolean {
  const { padding: p } = g;
  return (
    g.kernelHeight === 1 &&
    g.kernelWidth === 1 &&
    g.strides[0] === 1 &&
    g.strides[1] === 1 &&
    p.top + p.bottom + p.left + p.right === 0
  );
}

/**
 * `dy` spread by the strides and padded so that a stride-1 'valid' convolution with the flipped
 * kernel (dilated like the forward one) yields exactly `[n, inHeight, inWidth, *]`.
 */
function dyForInputGrad(dy: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  const spread = spreadSpatial(dy, g.strides);
  // Row r of the input gradient collects dy rows i with r + top = i * sh + a * dh for kernel
  // rows a; with the kernel flipped this is a correlation starting (kh - 1) * dh - top rows early.
  const top = (g.kernelHeight - 1) * g.dilations[0] - g.padding.top;
  const left = (g.kernelWidth - 1) * g.dilations[1] - g.padding.left;
  const neededHeight = g.inHeight + (g.kernelHeight - 1) * g.dilations[0];
  const neededWidth = g.inWidth + (g.kernelWidth - 1) * g.dilations[1];
  return padOrCrop(spread, {
    top,
    bottom: neededHeight - top - spread.shape[1],
    left,
    right: neededWidth - left - spread.shape[2],
  });
}

/**
 * `x` padded (or cropped) to exactly the rows and columns the forward windows read:
 * `(out - 1) * stride + (kernel - 1) * dilation + 1` along each axis.
 */
function xForFilterGrad(x: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  const usedHeight = (g.outHeight - 1) * g.strides[0] + (g.kernelHeight - 1) * g.dilations[0] + 1;
  const usedWidth = (g.outWidth - 1) * g.strides[1] + (g.kernelWidth - 1) * g.dilations[1] + 1;
  return padOrCrop(x, {
    top: g.padding.top,
    bottom: usedHeight - g.inHeight - g.padding.top,
    left: g.padding.left,
    right: usedWidth - g.inWidth - g.padding.left,
  });
}

/**
 * Gradient of `conv2d(x, w)` with respect to `x`, for `dy` of shape `[n, outH, outW, cout]` and
 * `w` of shape `[kh, kw, cin, cout]`: a stride-1 forward convolution of `dy` (spread by the
 * strides, padded) with the spatially flipped kernel whose channel axes are swapped. A 1x1
 * stride-1 kernel takes a plain matMul instead.
 */
export function conv2dInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, , , cout] = dy.shape;
    const cin = w.shape[2];
    if (isPointwise(g)) {
      const w2d = tf.reshape(w, [cin, cout]);
      const dx = tf.matMul(tf.reshape(dy, [-1, cout]), tf.transpose(w2d));
      return tf.reshape(dx, [n, g.inHeight, g.inWidth, cin]);
    }
    const flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]);
    return tf.conv2d(dyForInputGrad(dy, g), flipped as tf.Tensor4D, 1, 'valid', 'NHWC', g.dilations);
  });
}

/**
 * Gradient of `conv2d(x, w)` with respect to `w`: with the batch axis used as channels, it is the
 * forward convolution of `x` (padded, channels first: `[cin, H, W, n]`) with `dy` as the kernel
 * (`[outH, outW, n, cout]`), taking the forward dilation as stride and the forward stride as
 * dilation. Returns `[kh, kw, cin, cout]`. A 1x1 stride-1 kernel takes a plain matMul instead.
 */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  return tf.tidy(() => {
    const cin = x.shape[3];
    const cout = dy.shape[3];
    if (isPointwise(g)) {
      const x2d = tf.reshape(x, [-1, cin]);
      const dw = tf.matMul(tf.transpose(x2d), tf.reshape(dy, [-1, cout]));
      return tf.reshape(dw, [1, 1, cin, cout]);
    }
    const image = tf.transpose(xForFilterGrad(x, g), [3, 1, 2, 0]) as tf.Tensor4D;
    const kernel = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
    const grad = tf.conv2d(image, kernel, g.dilations, 'valid', 'NHWC', g.strides);
    return tf.transpose(grad, [1, 2, 0, 3]);
  });
}

/**
 * Gradient of `depthwiseConv2d(x, w)` with respect to `x`, for `w` of shape
 * `[kh, kw, cin, multiplier]`: a stride-1 depthwise convolution of the spread, padded `dy` with the
 * flipped kernel (one channel per output channel), then a sum over each input channel's
 * `multiplier` outputs.
 */
export function depthwiseConv2dInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, cin, multiplier] = w.shape;
    const flipped = tf.reshape(tf.reverse(w, [0, 1]), [kh, kw, cin * multiplier, 1]) as tf.Tensor4D;
    const perOutput = tf.depthwiseConv2d(dyForInputGrad(dy, g), flipped, 1, 'valid', 'NHWC', g.dilations);
    if (multiplier === 1) return perOutput;
    const [n, h, width] = perOutput.shape;
    return tf.sum(tf.reshape(perOutput, [n, h, width, cin, multiplier]), 4) as tf.Tensor4D;
  });
}

/**
 * Gradient of `depthwiseConv2d(x, w)` with respect to `w`: one depthwise convolution over a
 * single image whose channels are every (example, channel) pair of the padded `x`, with `dy`
 * (examples moved into the channel axis) as the kernel, the forward dilation as stride and the
 * forward stride as dilation; then a sum over examples. Returns `[kh, kw, cin, multiplier]`.
 */
export function depthwiseConv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, g: Conv2DGeometry): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, , , cin] = x.shape;
    const [, outH, outW, channelsOut] = dy.shape;
    const multiplier = channelsOut / cin;
    const padded = xForFilterGrad(x, g);
    const [, usedH, usedW] = padded.shape;
    // Channel n * cin + c of the image; kernel channel n * cin + c, multiplier m.
    const image = tf.reshape(tf.transpose(padded, [1, 2, 0, 3]), [1, usedH, usedW, n * cin]) as tf.Tensor4D;
    const kernel = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [
      outH,
      outW,
      n * cin,
      multiplier,
    ]) as tf.Tensor4D;
    const perExample = tf.depthwiseConv2d(image, kernel, g.dilations, 'valid', 'NHWC', g.strides);
    const { kernelHeight: kh, kernelWidth: kw } = g;
    return tf.reshape(tf.sum(tf.reshape(perExample, [kh, kw, n, channelsOut]), 2), [kh, kw, cin, multiplier]);
  });
}

/** Options of {@link conv2dFastGrad} and {@link depthwiseConv2dFastGrad}. */
export type ConvOptions = WindowOptions;

function geometryOf(x: tf.Tensor4D, w: tf.Tensor4D, options: ConvOptions): Conv2DGeometry {
  return conv2dGeometry(x.shape[1], x.shape[2], [w.shape[0], w.shape[1]], options);
}

/**
 * `tf.conv2d(x, w)` (NHWC, `w` of shape `[kh, kw, cin, cout]`) whose gradients are
 * {@link conv2dInputGrad} and {@link conv2dFilterGrad}: fast on every backend, and trainable on
 * wasm, which lacks `Conv2DBackpropFilter`. `inputGradient: false` returns zeros for `x`.
 */
export function conv2dFastGrad(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  options: ConvOptions,
  inputGradient = true,
): tf.Tensor4D {
  const g = geometryOf(x, w, options);
  return withSavedGrad(
    [x, w],
    [x, w],
    (xIn, wIn) =>
      tf.conv2d(xIn as tf.Tensor4D, wIn as tf.Tensor4D, g.strides, options.padding, 'NHWC', g.dilations),
    (dy, [xs, ws]) => [
      // Data (e.g. the image fed to the first layer) needs no gradient: zeros save a convolution.
      inputGradient ? conv2dInputGrad(dy as tf.Tensor4D, ws as tf.Tensor4D, g) : tf.zerosLike(xs!),
      conv2dFilterGrad(xs as tf.Tensor4D, dy as tf.Tensor4D, g),
    ],
  ) as tf.Tensor4D;
}

/**
 * `tf.depthwiseConv2d(x, w)` (NHWC, `w` of shape `[kh, kw, cin, multiplier]`) whose gradients are
 * {@link depthwiseConv2dInputGrad} and {@link depthwiseConv2dFilterGrad}: the wasm backend has
 * neither depthwise backprop kernel.
 */
export function depthwiseConv2dFastGrad(x: tf.Tensor4D, w: tf.Tensor4D, options: ConvOptions): tf.Tensor4D {
  const g = geometryOf(x, w, options);
  return withSavedGrad(
    [x, w],
    [x, w],
    (xIn, wIn) =>
      tf.depthwiseConv2d(
        xIn as tf.Tensor4D,
        wIn as tf.Tensor4D,
        g.strides,
        options.padding,
        'NHWC',
        g.dilations,
      ),
    (dy, [xs, ws]) => [
      depthwiseConv2dInputGrad(dy as tf.Tensor4D, ws as tf.Tensor4D, g),
      depthwiseConv2dFilterGrad(xs as tf.Tensor4D, dy as tf.Tensor4D, g),
    ],
  ) as tf.Tensor4D;
}

/**
 * `x + bias` over the last axis, whose bias gradient is `ones[1, rows] @ dy2d` (a plain matMul):
 * tfjs's own gradient sums over all leading axes, about 20x slower on wasm for conv activations.
 */
export const biasAddFastGrad: (x: tf.Tensor, bias: tf.Tensor1D) => tf.Tensor = tf.customGrad(
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  (x: any, bias: any) => ({
    value: tf.add(x as tf.Tensor, bias as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      const channels = dy.shape[dy.rank - 1]!;
      const dy2d = tf.reshape(dy, [-1, channels]) as tf.Tensor2D;
      const ones = tf.ones([1, dy2d.shape[0]]) as tf.Tensor2D;
      return [dy, tf.reshape(tf.matMul(ones, dy2d), [channels])];
    },
  }),
) as unknown as (x: tf.Tensor, bias: tf.Tensor1D) => tf.Tensor;
