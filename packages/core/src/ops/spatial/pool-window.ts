import type { Attrs, Dim, ValueInfo } from '../../ir.js';
import type { AttrSchema, OutputInfo } from '../../op.js';
import { product } from '../basic/shape-helpers.js';
import { poolInput } from './conv-attrs.js';
import {
  type PaddingMode,
  type Pair,
  paddingAttr,
  spatialPair,
  type WindowOptions,
  windowOutputShape,
} from './conv-geometry.js';

/** Resolved attributes of the windowed pools (`MaxPool2D`, `AvgPool2D`). */
export interface PoolAttrs extends Attrs {
  poolSize: number[];
  /** `null`: the same as `poolSize`, as in Keras. */
  strides: number[] | null;
  padding: PaddingMode;
}

/** Attribute schema of the windowed pools. */
export const poolAttrs: AttrSchema = {
  poolSize: { kind: 'ints', min: 1, default: [2, 2], doc: 'window [height, width] (one value: square)' },
  strides: {
    kind: 'ints',
    min: 1,
    default: null,
    doc: 'step [height, width] between windows; null: the pool size',
  },
  padding: paddingAttr,
};

/** A pool's window and options, read from its attributes (strides default to the pool size). */
export function poolWindow(attrs: PoolAttrs): { pool: Pair; options: WindowOptions } {
  const pool = spatialPair(attrs.poolSize, 'poolSize');
  const strides = attrs.strides === null ? pool : spatialPair(attrs.strides, 'strides');
  return { pool, options: { strides, dilations: [1, 1], padding: attrs.padding } };
}

/** Output shape of a windowed pool over a float32 NHWC input (channels unchanged). */
export function poolInferShape(attrs: PoolAttrs, inputs: readonly ValueInfo[]): OutputInfo[] {
  const image = poolInput(inputs);
  const { pool, options } = poolWindow(attrs);
  return [{ shape: windowOutputShape(image, pool, options, image.channels), dtype: 'float32' }];
}

/** FLOPs of a windowed pool: one operation per window element per output (plus `extraPerOutput`). */
export function poolFlops(attrs: PoolAttrs, output: readonly number[], extraPerOutput = 0): number {
  const [ph, pw] = poolWindow(attrs).pool;
  return product(output) * (ph * pw + extraPerOutput);
}

/** Resolved attributes of the global pools (`GlobalAvgPool2D`, `GlobalMaxPool2D`). */
export interface GlobalPoolAttrs extends Attrs {
  keepDims: boolean;
}

/** Attribute schema of the global pools. */
export const globalPoolAttrs: AttrSchema = {
  keepDims: {
    kind: 'bool',
    default: false,
    doc: 'keep the spatial axes as size 1: [batch, 1, 1, channels] instead of [batch, channels]',
  },
};

/** Output shape of a global pool over a float32 NHWC input. */
export function globalPoolInferShape(attrs: GlobalPoolAttrs, inputs: readonly ValueInfo[]): OutputInfo[] {
  const image = poolInput(inputs);
  const shape: Dim[] = attrs.keepDims ? [image.batch, 1, 1, image.channels] : [image.batch, image.channels];
  return [{ shape, dtype: 'float32' }];
}
