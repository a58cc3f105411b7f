import {
  type Attrs,
  coreOps,
  createOpContext,
  type Dim,
  linear,
  type OpContext,
  type ParamSpec,
  resolveAttrs,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** The classifier an exit puts on its features. */
export type ExitHeadKind = 'linear' | 'mlp' | 'conv' | 'shared';

/** Every {@link ExitHeadKind}. */
export const EXIT_HEADS: readonly ExitHeadKind[] = ['linear', 'mlp', 'conv', 'shared'];

/** The attributes that shape an exit's head. */
export interface HeadAttrs {
  classes: number;
  head: ExitHeadKind;
  hidden: number;
  convFilters: number;
  sharedHead: string;
  halting: boolean;
}

/** What an exit reads: features `[batch, d]`, or an NHWC image `[batch, h, w, d]`. */
export interface ExitFeatures {
  /** Size of the last (feature / channel) axis. */
  features: number;
  /** True for an NHWC image, which heads pool. */
  image: boolean;
}

function formatShape(shape: readonly Dim[]): string {
  return `[${shape.join(', ')}]`;
}

/** Checks an exit's feature input; throws a plain `Error` describing a mismatch. */
export function exitFeatures(h: ValueInfo, head: ExitHeadKind): ExitFeatures {
  const rank = h.shape.length;
  const features = h.shape[rank - 1];
  if (h.dtype !== 'float32') throw new Error(`an exit needs float32 features, got ${h.dtype}`);
  if ((rank !== 2 && rank !== 4) || typeof features !== 'number') {
    throw new Error(
      `an exit needs features [batch, d] or an NHWC image [batch, h, w, c] with a known last axis, got ${formatShape(h.shape)}`,
    );
  }
  if (head === 'conv' && rank !== 4) {
    throw new Error(`head 'conv' needs an NHWC image [batch, h, w, c], got ${formatShape(h.shape)}`);
  }
  return { features, image: rank === 4 };
}

// Conv2D is part of the core op set; its forward carries the wasm-fast convolution gradients.
const conv2dOp = coreOps.find((op) => op.type === 'core.Conv2D')!;

/** Attributes of the conv head's 3x3 convolution (same padding, relu), as a `core.Conv2D` node. */
function convAttrs(filters: number): Attrs {
  return resolveAttrs(
    conv2dOp,
    { filters, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
    'exit/conv',
  );
}

/**
 * The parameters of an exit: the head's (Keras-style initialisers) and, with `halting`, the
 * halting head's `haltKernel` [d, 1] and `haltBias` [1]. A `shared` head names its kernel and bias
 * `<sharedHead>/kernel` and `<sharedHead>/bias`, so every exit naming that group uses one tensor.
 */
export function headParams(attrs: HeadAttrs, { features }: ExitFeatures): ParamSpec[] {
  const dense = (prefix: string, fanIn: number, units: number, shared?: string): ParamSpec[] => {
    const kernel = `${prefix}${prefix ? 'Kernel' : 'kernel'}`;
    const bias = `${prefix}${prefix ? 'Bias' : 'bias'}`;
    return [
      {
        name: kernel,
        shape: [fanIn, units],
        init: { kind: 'glorotUniform', fanIn, fanOut: units },
        ...(shared ? { shared: `${shared}/${kernel}` } : {}),
      },
      {
        name: bias,
        shape: [units],
        init: { kind: 'zeros' },
        ...(shared ? { shared: `${shared}/${bias}` } : {}),
      },
    ];
  };
  const head: ParamSpec[] = (() => {
    switch (attrs.head) {
      case 'linear':
        return dense('', features, attrs.classes);
      case 'shared':
        return dense('', features, attrs.classes, attrs.sharedHead);
      case 'mlp':
        return [...dense('hidden', features, attrs.hidden), ...dense('', attrs.hidden, attrs.classes)];
      case 'conv': {
        const filters = attrs.convFilters;
        return [
          {
            name: 'convKernel',
            shape: [3, 3, features, filters],
            init: { kind: 'glorotUniform', fanIn: 9 * features, fanOut: 9 * filters },
          },
          { name: 'convBias', shape: [filters], init: { kind: 'zeros' } },
          ...dense('', filters, attrs.classes),
        ];
      }
    }
  })();
  return attrs.halting ? [...head, ...dense('halt', features, 1)] : head;
}

/**
 * An identity whose gradient is zero: the value flows on, the gradient stops (tfjs 4.22 has no
 * `stopGradient`).
 */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad(
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  (x: any) => ({
    value: tf.reshape(x as tf.Tensor, (x as tf.Tensor).shape),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  }),
) as unknown as (x: tf.Tensor) => tf.Tensor;

function pooled(h: tf.Tensor): tf.Tensor {
  return h.rank === 4 ? tf.mean(h, [1, 2]) : h;
}

/**
 * Computes an exit's logits `[rows, classes]` and, with `halting`, its halting probability
 * `[rows, 1]` from features `h`. Gradients use core's wasm-fast `linear` and `core.Conv2D`.
 * The halting head reads the features through {@link stopGradient}: it learns to predict, it does
 * not reshape the backbone.
 */
export function headForward(
  ctx: OpContext<Attrs>,
  attrs: HeadAttrs,
  h: tf.Tensor,
): { logits: tf.Tensor; halt?: tf.Tensor } {
  const p = ctx.params;
  return tf.tidy(() => {
    // The conv head pools its own features; the others (and the halting head) pool the input.
    const features = attrs.head !== 'conv' || attrs.halting ? pooled(h) : h;
    let logits: tf.Tensor;
    switch (attrs.head) {
      case 'linear':
      case 'shared':
        logits = linear(features, p.kernel as tf.Tensor2D, p.bias);
        break;
      case 'mlp': {
        const hidden = tf.relu(linear(features, p.hiddenKernel as tf.Tensor2D, p.hiddenBias));
        logits = linear(hidden, p.kernel as tf.Tensor2D, p.bias);
        break;
      }
      case 'conv': {
        const { context } = createOpContext({
          node: { name: `${ctx.node.name}/conv`, op: conv2dOp.type, inputs: [], outputs: [], attrs: {} },
          attrs: convAttrs(attrs.convFilters),
          params: { kernel: p.convKernel!, bias: p.convBias! },
          state: {},
          training: ctx.training,
          options: {},
          rows: ctx.rows,
          seed: 0,
        });
        const [convolved] = conv2dOp.forward(context, [h]) as tf.Tensor[];
        logits = linear(tf.mean(convolved!, [1, 2]), p.kernel as tf.Tensor2D, p.bias);
        break;
      }
    }
    if (!attrs.halting) return { logits };
    const halt = tf.sigmoid(linear(stopGradient(features), p.haltKernel as tf.Tensor2D, p.haltBias));
    return { logits, halt };
  });
}

/** FLOPs of a dense layer on `rows` rows (a multiply-add counts 2, plus the bias). */
function denseFlops(rows: number, fanIn: number, units: number): number {
  return rows * units * (2 * fanIn + 1);
}

/**
 * FLOPs of an exit's head (and halting head) on features of concrete shape `h`, plus the exit's
 * decision: softmax, max or entropy, and arg-max, counted as 7 per class and row.
 */
export function headFlops(attrs: HeadAttrs, h: readonly number[]): number {
  const rows = h[0]!;
  const features = h[h.length - 1]!;
  const positions = h.length === 4 ? h[1]! * h[2]! : 1;
  const pool = h.length === 4 ? rows * positions * features : 0;
  let total: number;
  switch (attrs.head) {
    case 'linear':
    case 'shared':
      total = pool + denseFlops(rows, features, attrs.classes);
      break;
    case 'mlp':
      total =
        pool +
        denseFlops(rows, features, attrs.hidden) +
        rows * attrs.hidden +
        denseFlops(rows, attrs.hidden, attrs.classes);
      break;
    case 'conv': {
      const filters = attrs.convFilters;
      const convOut = [rows, h[1]!, h[2]!, filters];
      const conv = conv2dOp.flops(convAttrs(filters), [h as number[]], [convOut]);
      total = conv + rows * positions * filters + denseFlops(rows, filters, attrs.classes);
      break;
    }
  }
  if (attrs.halting) {
    // The conv head pools its own features, so only there does the halting head add a pool.
    const haltPool = attrs.head === 'conv' ? pool : 0;
    total += haltPool + denseFlops(rows, features, 1) + 4 * rows;
  }
  return total + 7 * rows * attrs.classes;
}
