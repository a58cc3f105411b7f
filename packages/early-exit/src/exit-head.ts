import {
  type Attrs,
  type ChannelAxis,
  coreOps,
  createOpContext,
  type Dim,
  linear,
  type OpContext,
  type OpDef,
  type ParamSpec,
  paramTensor,
  resolveAttrs,
  stopGradient,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** The classifier an exit puts on its features. */
export type ExitHeadKind = 'linear' | 'mlp' | 'conv' | 'shared';

/** Every {@link ExitHeadKind}. */
export const EXIT_HEADS: readonly ExitHeadKind[] = ['linear', 'mlp', 'conv', 'shared'];

/**
 * Which positions of sequence features `[batch, time, d]` an exit classifies: `all` gives logits
 * per position `[batch, time, classes]` (training a language model, every position predicting
 * its next token); `last` gives `[batch, classes]` from the last position only (serving, where a
 * row is one context window and can leave early).
 */
export type ExitPositions = 'all' | 'last';

/**
 * How an exit turns an NHWC image into a vector for its head: `mean` averages every position
 * (global average pooling: cheap, but an early feature map loses most of what it knows), `flatten`
 * keeps every position (BranchyNet's exits: a larger first layer, much surer early on).
 */
export type ExitPooling = 'mean' | 'flatten';

/** Every {@link ExitPooling}. */
export const EXIT_POOLINGS: readonly ExitPooling[] = ['mean', 'flatten'];

/** The attributes that shape an exit's head. */
export type HeadAttrs = {
  /** Number of classes the head predicts. */
  classes: number;
  /** The classifier: linear, mlp, conv or shared. */
  head: ExitHeadKind;
  /** Hidden units of the `mlp` head. */
  hidden: number;
  /** Filters of the `conv` head. */
  convFilters: number;
  /** Tensor group of the `shared` head: `<sharedHead>/kernel`, `<sharedHead>/bias`. */
  sharedHead: string;
  /** A `core.LayerNorm` node whose tensors the `shared` head applies first; empty: none. */
  sharedNorm: string;
  /** Whether the exit has a learned halting head (CALM). */
  halting: boolean;
  /** On a sequence: logits for every position, or for the last one. */
  positions: ExitPositions;
  /** How a head reads an NHWC image: spatial mean or every position. */
  pool: ExitPooling;
};

/** What an exit reads: features `[batch, d]`, a sequence `[batch, time, d]` or an NHWC image `[batch, h, w, d]`. */
export interface ExitFeatures {
  /** Size of the last (feature / channel) axis. */
  features: number;
  /** How the features are laid out. */
  layout: 'vector' | 'sequence' | 'image';
  /** Positions of an image (height x width; 1 otherwise), when known. */
  positions: number | undefined;
}

function formatShape(shape: readonly Dim[]): string {
  return `[${shape.join(', ')}]`;
}

const LAYOUTS: Record<number, ExitFeatures['layout']> = { 2: 'vector', 3: 'sequence', 4: 'image' };

/** Checks an exit's feature input; throws a plain `Error` describing a mismatch. */
export function exitFeatures(h: ValueInfo, head: ExitHeadKind, pool: ExitPooling = 'mean'): ExitFeatures {
  const rank = h.shape.length;
  const features = h.shape[rank - 1];
  const layout = LAYOUTS[rank];
  if (h.dtype !== 'float32') throw new Error(`an exit needs float32 features, got ${h.dtype}`);
  if (layout === undefined || typeof features !== 'number') {
    throw new Error(
      `an exit needs features [batch, d], a sequence [batch, time, d] or an NHWC image [batch, h, w, c] with a known last axis, got ${formatShape(h.shape)}`,
    );
  }
  if (head === 'conv' && layout !== 'image') {
    throw new Error(`head 'conv' needs an NHWC image [batch, h, w, c], got ${formatShape(h.shape)}`);
  }
  const [height, width] = layout === 'image' ? h.shape.slice(1, 3) : [1, 1];
  const positions = typeof height === 'number' && typeof width === 'number' ? height * width : undefined;
  if (pool === 'flatten' && layout === 'image' && positions === undefined) {
    throw new Error(`pool 'flatten' needs an image of known height and width, got ${formatShape(h.shape)}`);
  }
  return { features, layout, positions };
}

/** The leading axes an exit's outputs keep: `[batch, time]` for every position of a sequence, else `[batch]`. */
export function exitRowsShape(h: readonly Dim[], positions: ExitPositions): Dim[] {
  return h.length === 3 && positions === 'all' ? [h[0]!, h[1]!] : [h[0]!];
}

// Conv2D and LayerNorm are part of the core op set; the conv head runs Conv2D's forward (with its
// wasm-fast gradients), the shared head's normalisation runs LayerNorm's, so both compute exactly
// what those nodes of a backbone compute.
const conv2dOp = coreOps.find((op) => op.type === 'core.Conv2D')!;
const layerNormOp = coreOps.find((op) => op.type === 'core.LayerNorm')!;

/** Attributes of the conv head's 3x3 convolution (same padding, relu), as a `core.Conv2D` node. */
function convAttrs(filters: number): Attrs {
  return resolveAttrs(
    conv2dOp,
    { filters, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
    'exit/conv',
  );
}

/** Attributes of the shared head's normalisation: a `core.LayerNorm` with its defaults (last axis). */
const NORM_ATTRS: Attrs = resolveAttrs(layerNormOp, {}, 'exit/norm');

/**
 * The parameters of an exit: the head's (Keras-style initialisers) and, with `halting`, the
 * halting head's `haltKernel` [d, 1] and `haltBias` [1]. A `shared` head names its kernel and bias
 * `<sharedHead>/kernel` and `<sharedHead>/bias`, so every exit naming that group uses one tensor
 * (and so does a `core.Dense` node named `<sharedHead>`: the network's own output head); with
 * `sharedNorm` it first normalises with `<sharedNorm>/gamma` and `<sharedNorm>/beta`, the
 * parameters of a `core.LayerNorm` node named `<sharedNorm>`.
 */
export function headParams(attrs: HeadAttrs, { features, layout, positions }: ExitFeatures): ParamSpec[] {
  // A flattened image gives its head every position's channels.
  const spread = attrs.pool === 'flatten' && layout === 'image' ? positions! : 1;
  const vector = features * spread;
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
        return dense('', vector, attrs.classes);
      case 'shared': {
        const norm: ParamSpec[] = attrs.sharedNorm
          ? [
              {
                name: 'gamma',
                shape: [features],
                init: { kind: 'ones' },
                shared: `${attrs.sharedNorm}/gamma`,
              },
              {
                name: 'beta',
                shape: [features],
                init: { kind: 'zeros' },
                shared: `${attrs.sharedNorm}/beta`,
              },
            ]
          : [];
        return [...norm, ...dense('', vector, attrs.classes, attrs.sharedHead)];
      }
      case 'mlp':
        return [...dense('hidden', vector, attrs.hidden), ...dense('', attrs.hidden, attrs.classes)];
      case 'conv': {
        const filters = attrs.convFilters;
        return [
          {
            name: 'convKernel',
            shape: [3, 3, features, filters],
            init: { kind: 'glorotUniform', fanIn: 9 * features, fanOut: 9 * filters },
          },
          { name: 'convBias', shape: [filters], init: { kind: 'zeros' } },
          ...dense('', filters * spread, attrs.classes),
        ];
      }
    }
  })();
  return attrs.halting ? [...head, ...dense('halt', vector, 1)] : head;
}

/**
 * The axes of an exit's head parameters that hold channels: the axis reading the features joins
 * space `features` (a flattened image's row `j` holds channel `j % features`), the axis producing
 * the logits joins space `classes`, and the mlp head's hidden units and the conv head's filters
 * are spaces of their own, `hidden` and `convFilters`, that reach no input or output. The halting
 * head's single unit is left unmapped: the exit always gives one halting probability.
 */
export function headChannelAxes(attrs: HeadAttrs, { features, layout }: ExitFeatures): ChannelAxis[] {
  const flattened = attrs.pool === 'flatten' && layout === 'image';
  // A flattened image gives its head every position's channels, position-major.
  const readsFeatures = (name: string): ChannelAxis => ({
    tensor: paramTensor(name),
    axis: 0,
    space: 'features',
    ...(flattened ? { period: features } : {}),
  });
  const logits: ChannelAxis[] = [
    { tensor: paramTensor('kernel'), axis: 1, space: 'classes' },
    { tensor: paramTensor('bias'), axis: 0, space: 'classes' },
  ];
  const head: ChannelAxis[] = (() => {
    switch (attrs.head) {
      case 'linear':
        return [readsFeatures('kernel'), ...logits];
      case 'shared': {
        // A layer norm's statistics span the features: removing one changes the others' values.
        const norm: ChannelAxis[] = attrs.sharedNorm
          ? ['gamma', 'beta'].map((name) => ({
              tensor: paramTensor(name),
              axis: 0,
              space: 'features',
              mixes: true,
            }))
          : [];
        return [...norm, readsFeatures('kernel'), ...logits];
      }
      case 'mlp':
        return [
          readsFeatures('hiddenKernel'),
          { tensor: paramTensor('hiddenKernel'), axis: 1, space: 'hidden' },
          { tensor: paramTensor('hiddenBias'), axis: 0, space: 'hidden' },
          { tensor: paramTensor('kernel'), axis: 0, space: 'hidden' },
          ...logits,
        ];
      case 'conv':
        // The convolution reads the image itself, never flattened; the classifier reads its
        // filters, pooled or flattened like the image would be.
        return [
          { tensor: paramTensor('convKernel'), axis: 2, space: 'features' },
          { tensor: paramTensor('convKernel'), axis: 3, space: 'convFilters' },
          { tensor: paramTensor('convBias'), axis: 0, space: 'convFilters' },
          {
            tensor: paramTensor('kernel'),
            axis: 0,
            space: 'convFilters',
            ...(flattened ? { period: attrs.convFilters } : {}),
          },
          ...logits,
        ];
    }
  })();
  return attrs.halting ? [...head, readsFeatures('haltKernel')] : head;
}

/**
 * The sizes of the head's own channel spaces, by space name (see {@link headChannelAxes}): what
 * the spaces that reach no input or output hold.
 */
export function headSpaces(attrs: HeadAttrs): Record<string, number> {
  if (attrs.head === 'mlp') return { hidden: attrs.hidden };
  if (attrs.head === 'conv') return { convFilters: attrs.convFilters };
  return {};
}

/** An image `[rows, h, w, c]` as one vector per row: its spatial mean, or every position flattened. */
function poolImage(h: tf.Tensor, pool: ExitPooling): tf.Tensor {
  return pool === 'flatten' ? tf.reshape(h, [h.shape[0]!, -1]) : tf.mean(h, [1, 2]);
}

/**
 * What the heads (except conv) read: an image pooled by `pool`, a sequence's last position with
 * `positions: 'last'`, else the features themselves (every position of a sequence).
 */
function headInput(h: tf.Tensor, positions: ExitPositions, pool: ExitPooling): tf.Tensor {
  if (h.rank === 4) return poolImage(h, pool);
  if (h.rank === 3 && positions === 'last') {
    const [rows, time, features] = h.shape as [number, number, number];
    return tf.reshape(tf.slice(h, [0, time - 1, 0], [rows, 1, features]), [rows, features]);
  }
  return h;
}

/** Runs a core op's forward inside a head, as a node of that op would, on the head's own tensors. */
function coreForward(
  ctx: OpContext<Attrs>,
  // biome-ignore lint/suspicious/noExplicitAny: core ops of any attribute type.
  op: OpDef<any>,
  local: string,
  attrs: Attrs,
  params: Record<string, tf.Tensor>,
  x: tf.Tensor,
): tf.Tensor {
  const { context } = createOpContext({
    node: { name: `${ctx.node.name}/${local}`, op: op.type, inputs: [], outputs: [], attrs: {} },
    attrs,
    params,
    state: {},
    training: ctx.training,
    options: {},
    rows: ctx.rows,
    seed: 0,
  });
  return (op.forward(context, [x]) as tf.Tensor[])[0]!;
}

/**
 * Computes an exit's logits (`[rows, classes]`, or `[rows, time, classes]` for every position of
 * a sequence) and, with `halting`, its halting probability (`[rows, 1]` / `[rows, time, 1]`) from
 * features `h`. Gradients use core's wasm-fast `linear`, `core.Conv2D` and `core.LayerNorm`. The
 * halting head reads the features through {@link stopGradient}: it learns to predict, it does not
 * reshape the backbone.
 */
export function headForward(
  ctx: OpContext<Attrs>,
  attrs: HeadAttrs,
  h: tf.Tensor,
): { logits: tf.Tensor; halt?: tf.Tensor } {
  const p = ctx.params;
  return tf.tidy(() => {
    // The conv head pools its own features; the others (and the halting head) read headInput.
    const features = attrs.head !== 'conv' || attrs.halting ? headInput(h, attrs.positions, attrs.pool) : h;
    let logits: tf.Tensor;
    switch (attrs.head) {
      case 'linear':
        logits = linear(features, p.kernel as tf.Tensor2D, p.bias);
        break;
      case 'shared': {
        const normalised = attrs.sharedNorm
          ? coreForward(ctx, layerNormOp, 'norm', NORM_ATTRS, { gamma: p.gamma!, beta: p.beta! }, features)
          : features;
        logits = linear(normalised, p.kernel as tf.Tensor2D, p.bias);
        break;
      }
      case 'mlp': {
        const hidden = tf.relu(linear(features, p.hiddenKernel as tf.Tensor2D, p.hiddenBias));
        logits = linear(hidden, p.kernel as tf.Tensor2D, p.bias);
        break;
      }
      case 'conv': {
        const convParams = { kernel: p.convKernel!, bias: p.convBias! };
        const convolved = coreForward(ctx, conv2dOp, 'conv', convAttrs(attrs.convFilters), convParams, h);
        logits = linear(poolImage(convolved, attrs.pool), p.kernel as tf.Tensor2D, p.bias);
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
 * decision: softmax, max or entropy, and arg-max, counted as 7 per class and row (and per
 * position, for every position of a sequence).
 */
export function headFlops(attrs: HeadAttrs, h: readonly number[]): number {
  const features = h[h.length - 1]!;
  const rows = h[0]! * (h.length === 3 && attrs.positions === 'all' ? h[1]! : 1);
  const positions = h.length === 4 ? h[1]! * h[2]! : 1;
  // Flattening is a reshape (free); a mean adds once per value.
  const flatten = attrs.pool === 'flatten' && h.length === 4;
  const pool = h.length === 4 && !flatten ? rows * positions * features : 0;
  const vector = flatten ? features * positions : features;
  let total: number;
  switch (attrs.head) {
    case 'linear':
      total = pool + denseFlops(rows, vector, attrs.classes);
      break;
    case 'shared': {
      const norm = attrs.sharedNorm ? layerNormOp.flops(NORM_ATTRS, [[rows, features]], []) : 0;
      total = pool + norm + denseFlops(rows, vector, attrs.classes);
      break;
    }
    case 'mlp':
      total =
        pool +
        denseFlops(rows, vector, attrs.hidden) +
        rows * attrs.hidden +
        denseFlops(rows, attrs.hidden, attrs.classes);
      break;
    case 'conv': {
      const filters = attrs.convFilters;
      const convOut = [rows, h[1]!, h[2]!, filters];
      const conv = conv2dOp.flops(convAttrs(filters), [h as number[]], [convOut]);
      const convPool = flatten ? 0 : rows * positions * filters;
      total = conv + convPool + denseFlops(rows, flatten ? filters * positions : filters, attrs.classes);
      break;
    }
  }
  if (attrs.halting) {
    // The conv head pools its own features, so only there does the halting head add a pool.
    const haltPool = attrs.head === 'conv' ? pool : 0;
    total += haltPool + denseFlops(rows, vector, 1) + 4 * rows;
  }
  return total + 7 * rows * attrs.classes;
}
