import {
  type ChannelAxis,
  DynnError,
  defineOp,
  inputTensor,
  type OpChannels,
  type OpContext,
  type OpResult,
  outputTensor,
  takeRows,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  EXIT_HEADS,
  EXIT_POOLINGS,
  exitFeatures,
  exitRowsShape,
  type HeadAttrs,
  headChannelAxes,
  headFlops,
  headForward,
  headParams,
  headSpaces,
} from './exit-head.js';
import { type ResolvedExitOptions, readExitOptions, thresholdFor } from './options.js';

/** What the graph output an exit answers for holds: logits, or probabilities (a softmax head). */
export type ExitOutputActivation = 'linear' | 'softmax';

/** Resolved attributes of {@link exitOp}: its head's, then where its answers go. */
export type ExitAttrs = HeadAttrs & {
  /** The graph output this exit answers for. */
  output: string;
  /** What that output holds: logits or probabilities. */
  outputActivation: ExitOutputActivation;
  /** Graph outputs of this and later exits: rows leaving here give them these logits. */
  exitOutputs: string[];
  /** Graph outputs of the halting probabilities of this and later exits. */
  haltOutputs: string[];
  /** Op-set 1 only: earlier exits' outputs read after `state`; ignored since op-set 2. */
  carried: string[];
  /** Position of this exit, 0-based (picks its threshold). */
  index: number;
};

/** The npm package, op domain and op-set version of the early-exit plugin. */
export const EARLY_EXIT_PLUGIN = {
  /** The npm package that provides the ops. */
  name: '@dynn/early-exit',
  /** The op domain: op types are `early-exit.<Name>`. */
  domain: 'early-exit',
  /** The op-set version graphs record; 2 since exits stopped re-emitting earlier exits' outputs. */
  opset: 2,
} as const;

/** The op type of an exit. */
export const EXIT_OP = 'early-exit.Exit';

/** Outputs of an exit, by position. */
export const EXIT_OUTPUT = {
  /** The features, passed on unchanged. */
  features: 0,
  /** The exit's logits. */
  logits: 1,
  /** Predicted class and agreement count, the patience carry of the next exit. */
  state: 2,
  /** The halting probability (learned), else the largest softmax probability. */
  halt: 3,
} as const;

/**
 * The per-row score a criterion compares with its threshold, `[rows]`. Without a halting head the
 * `halt` output already holds the largest softmax probability, which `maxProb` reuses.
 */
function scoreOf(
  criterion: Exclude<ResolvedExitOptions['criterion'], 'none'>,
  halting: boolean,
  logits: tf.Tensor,
  state: tf.Tensor,
  halt: tf.Tensor,
): tf.Tensor {
  return tf.tidy(() => {
    switch (criterion) {
      case 'maxProb':
        return halting ? tf.max(tf.softmax(logits), -1) : tf.reshape(halt, [-1]);
      case 'entropy': {
        const logProbs = tf.logSoftmax(logits);
        const entropy = tf.neg(tf.sum(tf.mul(tf.exp(logProbs), logProbs), -1));
        return tf.div(entropy, Math.log(logits.shape[logits.rank - 1]!));
      }
      case 'patience':
        return tf.reshape(tf.slice(state, [0, 1], [-1, 1]), [-1]);
      case 'learned':
        return tf.reshape(halt, [-1]);
    }
  });
}

/**
 * The decision of exit `index` under a criterion: true when a row with that score leaves. Shared by
 * the op and the calibration sweep, so both decide alike.
 */
export function exitDecision(
  options: Exclude<ResolvedExitOptions, { criterion: 'none' }>,
  index: number,
): (score: number) => boolean {
  switch (options.criterion) {
    case 'maxProb':
    case 'learned': {
      const threshold = thresholdFor(options.thresholds, index);
      return (score: number) => score >= threshold;
    }
    case 'entropy': {
      const threshold = thresholdFor(options.thresholds, index);
      return (score: number) => score <= threshold;
    }
    case 'patience':
      return (score: number) => score >= options.patience;
  }
}

/** The exit's outputs on every row: features, logits, the patience carry and the halting probability. */
function exitOutputs(ctx: OpContext<ExitAttrs>, h: tf.Tensor, previous: tf.Tensor | undefined): tf.Tensor[] {
  const { logits, halt: learned } = headForward(ctx, ctx.attrs, h);
  const [state, halt] = tf.tidy(() => {
    const predicted = tf.cast(tf.argMax(logits, -1), 'float32');
    let agreements: tf.Tensor = tf.zerosLike(predicted);
    if (previous !== undefined) {
      const [previousClass, previousCount] = tf.split(previous, 2, -1) as [tf.Tensor, tf.Tensor];
      const same = tf.equal(predicted, tf.reshape(previousClass, predicted.shape));
      agreements = tf.where(same, tf.add(tf.reshape(previousCount, predicted.shape), 1), agreements);
    }
    return [tf.stack([predicted, agreements], -1), learned ?? tf.max(tf.softmax(logits), -1, true)];
  });
  return [h, logits, state!, halt!];
}

/** A new handle on `t`'s data (reshape never copies), so several outputs can own the same rows. */
function handle(t: tf.Tensor): tf.Tensor {
  return tf.reshape(t, t.shape);
}

/**
 * Decides, with one readback of a per-row score, which rows leave here, and retires them with
 * their values for the graph outputs this exit answers for.
 */
async function decide(
  ctx: OpContext<ExitAttrs>,
  options: Exclude<ResolvedExitOptions, { criterion: 'none' }>,
  leavesAt: (score: number) => boolean,
  outputs: tf.Tensor[],
): Promise<tf.Tensor[] | OpResult> {
  const { attrs } = ctx;
  const [, logits, state, halt] = outputs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  const score = scoreOf(options.criterion, attrs.halting, logits, state, halt);
  const retired: Record<string, tf.Tensor> = {};
  try {
    const values = await score.data();
    const chosen: number[] = [];
    for (let i = 0; i < values.length; i++) if (leavesAt(values[i]!)) chosen.push(i);
    ctx.record('exited', chosen.length);
    if (chosen.length === 0) return outputs;
    const rows = Int32Array.from(chosen);
    const taken = await takeRows(logits, rows);
    retired[attrs.output] = attrs.outputActivation === 'softmax' ? tf.softmax(taken) : handle(taken);
    for (const name of attrs.exitOutputs) retired[name] = handle(taken);
    taken.dispose();
    if (attrs.haltOutputs.length > 0) {
      const haltRows = await takeRows(halt, rows);
      for (const name of attrs.haltOutputs) retired[name] = handle(haltRows);
      haltRows.dispose();
    }
    return { outputs, retire: { rows, outputs: retired } };
  } catch (error) {
    tf.dispose([...outputs.slice(1), ...Object.values(retired)]);
    throw error;
  } finally {
    score.dispose();
  }
}

/**
 * The channels of an exit: space `features` ties the features' last axis (input and output 0) to
 * the head's reading axes, space `classes` ties the logits' last axis to the head's output axes
 * (see {@link headChannelAxes}, which also gives the mlp head's `hidden` units and the conv head's
 * `convFilters` spaces of their own). The other known axes of the features pass through too: a
 * sequence's `time` reaches every per-position output with `positions: 'all'`; an image's
 * `height` and `width` are averaged by a `mean` head. Unmapped (barriers): a flattened image's
 * height and width, since the head keeps rows per position; the last axes of the state input and
 * output, a (class, agreement count) pair; the halt output's single value; op-set 1's carried
 * inputs, which the exit ignores.
 */
function exitChannels(attrs: ExitAttrs, inputs: readonly ValueInfo[]): OpChannels {
  const h = inputs[0]!;
  const features = exitFeatures(h, attrs.head, attrs.pool);
  const last = h.shape.length - 1;
  const spaces: Record<string, number> = {
    features: features.features,
    classes: attrs.classes,
    ...headSpaces(attrs),
  };
  const axes: ChannelAxis[] = [
    { tensor: inputTensor(0), axis: last, space: 'features' },
    { tensor: outputTensor(EXIT_OUTPUT.features), axis: last, space: 'features' },
    ...headChannelAxes(attrs, features),
    // The criteria, the default halting score and softmax answers take a softmax over the
    // classes: removing one changes the others' probabilities.
    { tensor: outputTensor(EXIT_OUTPUT.logits), axis: -1, space: 'classes', mixes: true },
  ];
  /** Ties axis `axis` of the features, input to output, as space `space` when its size is known. */
  const passThrough = (axis: number, space: string, mixes: boolean): boolean => {
    const size = h.shape[axis];
    if (typeof size !== 'number') return false;
    spaces[space] = size;
    axes.push(
      { tensor: inputTensor(0), axis, space, ...(mixes ? { mixes } : {}) },
      { tensor: outputTensor(EXIT_OUTPUT.features), axis, space },
    );
    return true;
  };
  if (features.layout === 'sequence') {
    const perPosition = attrs.positions === 'all';
    // With 'last' the head reads the last position only: removing it makes the head read another.
    if (passThrough(1, 'time', !perPosition) && perPosition) {
      for (const index of [EXIT_OUTPUT.logits, EXIT_OUTPUT.state, EXIT_OUTPUT.halt]) {
        axes.push({ tensor: outputTensor(index), axis: 1, space: 'time' });
      }
      if (inputs[1] !== undefined) axes.push({ tensor: inputTensor(1), axis: 1, space: 'time' });
    }
  } else if (features.layout === 'image' && attrs.pool === 'mean') {
    // The head averages the positions (the conv head after mixing 3x3 neighbourhoods).
    passThrough(1, 'height', true);
    passThrough(2, 'width', true);
  }
  return { spaces, axes };
}

/**
 * `early-exit.Exit`: a classifier attached to intermediate features. It passes its features on
 * unchanged and, in inference, retires the rows it is sure about, so later nodes compute only the
 * others (BranchyNet, DeeBERT, PABEE, CALM).
 *
 * - inputs: `h` (features `[batch, d]`, a sequence `[batch, time, d]` or an NHWC image
 *   `[batch, h, w, c]`); optionally the previous exit's `state`
 * - outputs: `h` (the same tensor), `logits` `[batch, classes]`, `state` `[batch, 2]` (this exit's
 *   predicted class and how many consecutive exits agreed with their predecessor: the patience
 *   carry of the next exit), `halt` `[batch, 1]` (the learned halting probability with `halting`,
 *   else the largest softmax probability). On a sequence with `positions: 'all'` every output but
 *   `h` has one entry per position: `[batch, time, classes]`, `[batch, time, 2]`, `[batch, time, 1]`;
 *   with `positions: 'last'` they are the last position's
 * - params: by head: `linear` and `shared`: `kernel`, `bias` (shared: `<sharedHead>/kernel`,
 *   `<sharedHead>/bias`, and with `sharedNorm` `<sharedNorm>/gamma`, `<sharedNorm>/beta`); `mlp`:
 *   `hiddenKernel`, `hiddenBias`, `kernel`, `bias`; `conv`: `convKernel`, `convBias`, `kernel`,
 *   `bias`; with `halting`: `haltKernel`, `haltBias`
 * - channels: the features' known axes pass through, their last axis read by the head (space
 *   `features`); the logits' class axis is the head's output (space `classes`); the mlp head's
 *   hidden units and the conv head's filters are spaces of their own (`hidden`, `convFilters`);
 *   resizing sets `classes`, `hidden` and `convFilters`; a flattened image's positions, the
 *   state's last axis and the halt output are barriers
 *
 * The criterion comes from the run options (see {@link readExitOptions}); without them no row
 * leaves and every output equals the model's without exits. Rows leave in inference only, and
 * only where an exit gives one answer per row: an exit with `positions: 'all'` on a sequence
 * refuses a criterion (`INVALID_OPTION`); serve such a graph after the pass `early-exit.last-position` (`lastPositionModel`).
 *
 * Op-set 1 exits re-emitted earlier exits' outputs (attribute `carried`, read after `state`);
 * the executor now keeps every requested output for the rows it was computed on, so version 2
 * ignores those inputs and an op-set 1 graph runs unchanged.
 */
export const exitOp = defineOp<ExitAttrs>({
  type: EXIT_OP,
  version: 2,
  description:
    'An early exit: a classifier on intermediate features; in inference the rows it is sure about leave the computation.',
  attrs: {
    classes: { kind: 'int', min: 2, doc: 'number of classes' },
    head: {
      kind: 'enum',
      values: EXIT_HEADS,
      default: 'linear',
      doc: 'classifier: linear, mlp, conv or shared',
    },
    hidden: { kind: 'int', min: 1, default: 64, doc: 'hidden units of the mlp head' },
    convFilters: { kind: 'int', min: 1, default: 16, doc: 'filters of the conv head' },
    sharedHead: {
      kind: 'string',
      default: 'head',
      doc: 'name of the tensor group every shared head uses (<sharedHead>/kernel, <sharedHead>/bias)',
    },
    sharedNorm: {
      kind: 'string',
      default: '',
      doc: "the shared head's layer norm (<sharedNorm>/gamma, <sharedNorm>/beta) applied before it; empty: none",
    },
    pool: {
      kind: 'enum',
      values: EXIT_POOLINGS,
      default: 'mean',
      doc: 'how a head reads an NHWC image: its spatial mean (mean) or every position (flatten)',
    },
    positions: {
      kind: 'enum',
      values: ['all', 'last'],
      default: 'all',
      doc: 'on a sequence [batch, time, d]: logits for every position (all) or the last one (last)',
    },
    output: { kind: 'string', default: 'logits', doc: 'the graph output this exit answers for' },
    outputActivation: {
      kind: 'enum',
      values: ['linear', 'softmax'],
      default: 'linear',
      doc: 'what that output holds: logits (linear) or probabilities (softmax)',
    },
    exitOutputs: {
      kind: 'strings',
      default: [],
      doc: 'graph outputs of this and later exits: rows leaving here give them these logits',
    },
    haltOutputs: {
      kind: 'strings',
      default: [],
      doc: 'graph outputs of the halting probabilities of this and later exits',
    },
    carried: {
      kind: 'strings',
      default: [],
      doc: "op-set 1 graphs only: earlier exits' outputs read after state, ignored since op-set 2",
    },
    index: { kind: 'int', min: 0, default: 0, doc: 'position of this exit, 0-based (picks its threshold)' },
    halting: { kind: 'bool', default: false, doc: 'adds a learned halting head (CALM)' },
  },
  inputs: { min: 1, max: Number.POSITIVE_INFINITY },
  outputs: 4,
  params: (attrs, [h]) => headParams(attrs, exitFeatures(h!, attrs.head, attrs.pool)),
  inferShape(attrs, [h, state, ...carried]) {
    exitFeatures(h!, attrs.head, attrs.pool);
    if (attrs.sharedNorm && attrs.head !== 'shared') {
      throw new Error(`sharedNorm '${attrs.sharedNorm}' needs head 'shared', got '${attrs.head}'`);
    }
    if (carried.length !== attrs.carried.length) {
      throw new Error(
        `an exit takes its features and the previous exit's state${attrs.carried.length > 0 ? ` (then ${attrs.carried.length} carried outputs of an op-set 1 graph)` : ''}, got ${1 + (state ? 1 : 0) + carried.length} inputs`,
      );
    }
    const rows = exitRowsShape(h!.shape, attrs.positions);
    if (state !== undefined) {
      const ok =
        state.dtype === 'float32' &&
        state.shape.length === rows.length + 1 &&
        state.shape.at(-1) === 2 &&
        rows.every(
          (d, i) => typeof d !== 'number' || typeof state.shape[i] !== 'number' || d === state.shape[i],
        );
      if (!ok)
        throw new Error(
          `the state input must be float32 [${[...rows, 2].join(', ')}], got ${state.dtype}[${state.shape.join(', ')}]`,
        );
    }
    return [
      { shape: h!.shape, dtype: h!.dtype },
      { shape: [...rows, attrs.classes], dtype: 'float32' },
      { shape: [...rows, 2], dtype: 'float32' },
      { shape: [...rows, 1], dtype: 'float32' },
    ];
  },
  // Which rows leave is a decision on values read back: made in the decide step, in inference
  // only. The decision holds the outputs it computed, which forward hands on (no second head).
  async decide(ctx, [h, previous]) {
    const options = readExitOptions(ctx.options);
    if (ctx.training || options.criterion === 'none') return undefined;
    if (h!.rank === 3 && ctx.attrs.positions === 'all') {
      throw new DynnError(
        'INVALID_OPTION',
        `Exit '${ctx.node.name}' gives logits for every position of its sequence (positions 'all'), so a row cannot leave on them (criterion '${options.criterion}'). Serve with positions 'last': the pass 'early-exit.last-position' (lastPositionModel(model)).`,
        { node: ctx.node.name, op: EXIT_OP },
      );
    }
    if (options.criterion === 'learned' && !ctx.attrs.halting) {
      throw new DynnError(
        'INVALID_OPTION',
        `Run option 'early-exit'.criterion 'learned' needs a halting head, but exit '${ctx.node.name}' has none; insert exits with halting: true.`,
        { node: ctx.node.name, op: EXIT_OP },
      );
    }
    // Before computing anything, so a missing per-exit threshold leaks nothing.
    const leavesAt = exitDecision(options, ctx.attrs.index);
    return decide(ctx, options, leavesAt, exitOutputs(ctx, h!, previous));
  },
  forward(ctx, [h, previous]) {
    if (ctx.decision !== undefined) return ctx.decision as tf.Tensor[] | OpResult;
    // Read (and check) the options on every call, so a bad option fails even in training.
    readExitOptions(ctx.options);
    return exitOutputs(ctx, h!, previous);
  },
  channels: exitChannels,
  resize: (attrs, _inputs, _outputs, spaces) => ({
    ...attrs,
    classes: spaces.classes ?? attrs.classes,
    hidden: spaces.hidden ?? attrs.hidden,
    convFilters: spaces.convFilters ?? attrs.convFilters,
  }),
  flops: (attrs, [h]) => headFlops(attrs, h!),
});
