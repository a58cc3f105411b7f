import * as tf from '@tensorflow/tfjs-core';
import { type ChannelTensor, inputTensor, type OpChannels, outputTensor } from '../../channel-axes.js';
import type { Dim, SubGraph, ValueInfo } from '../../ir.js';
import { defineOp } from '../../op.js';
import { formatShape } from '../basic/shape-helpers.js';

/** Attributes of {@link scanOp}. */
export type ScanAttrs = {
  /** The step: carried values and one time slice of each sequence in, new carried values and per-step outputs out. */
  body: SubGraph;
  /** How many of the inputs (first) and of the body's outputs (first) are carried values. */
  carried: number;
  /** Walk time from the last step to the first (outputs stay in time order). */
  reverse: boolean;
};

/** True when `given` can feed a value declared `declared`: same rank, equal sizes where both are sizes. */
function fits(given: readonly Dim[], declared: readonly Dim[]): boolean {
  return (
    given.length === declared.length &&
    given.every((d, i) => typeof d !== 'number' || typeof declared[i] !== 'number' || d === declared[i])
  );
}

/** A sequence's shape without its time axis (axis 1): what one step of the body reads. */
function stepShape(shape: readonly Dim[]): Dim[] {
  return [shape[0]!, ...shape.slice(2)];
}

/** Input `index` of the body, for a channel axis. */
const bodyInput = (index: number): ChannelTensor => ({ kind: 'input', index, graph: { attr: 'body' } });
/** Output `index` of the body, for a channel axis. */
const bodyOutput = (index: number): ChannelTensor => ({ kind: 'output', index, graph: { attr: 'body' } });

/**
 * `core.Scan`: applies a sub-graph along the time axis with carried values, like ONNX Scan: the
 * building block of recurrent and temporal models (a cell, a GNN step over graph snapshots).
 *
 * - inputs: `carried` initial values `[batch, ...]`, then one or more sequences `[batch, time, ...]`
 *   (one time length)
 * - `body` inputs: the carried values, then one slice `[batch, ...]` of each sequence; outputs: the
 *   new carried values (same dtypes and shapes), then any per-step outputs `[batch, ...]`
 * - outputs: the final carried values, then each per-step output stacked along time
 *   `[batch, time, ...]` (in time order, also with `reverse`)
 * - params: the body's, named `<node>/body/<body node>/<name>`, shared by every step
 *
 * Gradients flow through every step (backpropagation through time, in one tape). A sequence of
 * zero steps returns the initial carried values and empty per-step outputs. In a session
 * (`model.session()`), a forward scan resumes from the carried values the previous run ended with
 * (the inputs start the session's first run), so a sequence fed in chunks gives what it gives whole.
 *
 * Channels: they flow into the body's own ops. Each non-batch axis of a carried value ties the
 * node's input, the body's input, the body's output and the node's output (the body's output
 * feeds its input at the next step); a sequence's axis k + 1 ties to the body input's axis k, and
 * a per-step output's body axis k to the node output's axis k + 1. An axis the body declares
 * symbolic holds no channel there, so it maps nothing (a barrier).
 */
export const scanOp = defineOp<ScanAttrs>({
  type: 'core.Scan',
  version: 1,
  description: 'Applies a sub-graph along the time axis with carried values (ONNX Scan).',
  attrs: {
    body: {
      kind: 'graph',
      doc: 'the step: carried values and time slices in, new carried values and outputs out',
    },
    carried: { kind: 'int', min: 0, default: 1, doc: 'how many inputs (first) are carried values' },
    reverse: { kind: 'bool', default: false, doc: 'walk time from the last step to the first' },
  },
  inputs: { min: 1, max: Number.POSITIVE_INFINITY },
  outputs: 'variadic',
  inferShape(attrs, inputs, ctx) {
    const body = ctx!.subGraph('body');
    const { carried } = attrs;
    const sequences = inputs.slice(carried);
    if (sequences.length === 0) {
      throw new Error(`Scan needs at least one sequence after its ${carried} carried values`);
    }
    if (body.inputs.length !== inputs.length) {
      throw new Error(
        `the body takes ${body.inputs.length} inputs but the node gives ${inputs.length} (${carried} carried, ${sequences.length} sequences)`,
      );
    }
    if (body.outputs.length < carried) {
      throw new Error(
        `the body returns ${body.outputs.length} outputs, fewer than its ${carried} carried values`,
      );
    }
    const time = sequences[0]!.shape[1];
    inputs.forEach((input, i) => {
      const declared = body.inputs[i]!;
      const isSequence = i >= carried;
      if (isSequence && (input.shape.length < 2 || !fits([input.shape[1]!], [time!]))) {
        throw new Error(
          `sequence '${input.name}' ${formatShape(input.shape)} must be [batch, time, ...] with one time length`,
        );
      }
      const step = isSequence ? stepShape(input.shape) : input.shape;
      if (input.dtype !== declared.dtype || !fits(step, declared.shape)) {
        throw new Error(
          `${isSequence ? `a step of sequence '${input.name}'` : `carried value '${input.name}'`} is ` +
            `${input.dtype}${formatShape(step)} but the body's input '${declared.name}' is ${declared.dtype}${formatShape(declared.shape)}`,
        );
      }
    });
    for (let i = 0; i < carried; i++) {
      const into = body.inputs[i]!;
      const out = body.outputs[i]!;
      if (out.dtype !== into.dtype || !fits(out.shape, into.shape)) {
        throw new Error(
          `the body's carried output '${out.name}' ${out.dtype}${formatShape(out.shape)} does not match its input '${into.name}' ${into.dtype}${formatShape(into.shape)}`,
        );
      }
    }
    const perStep = body.outputs.slice(carried).map((out: ValueInfo) => ({
      shape: [out.shape[0]!, time!, ...out.shape.slice(1)],
      dtype: out.dtype,
    }));
    return [...inputs.slice(0, carried).map((v) => ({ shape: v.shape, dtype: v.dtype })), ...perStep];
  },
  channels({ body, carried }, inputs, outputs) {
    const channels: OpChannels = { spaces: {}, axes: [] };
    const tie = (space: string, size: Dim | undefined, ...axes: [ChannelTensor, number][]) => {
      if (typeof size !== 'number') return;
      channels.spaces[space] = size;
      for (const [tensor, axis] of axes) channels.axes.push({ tensor, axis, space });
    };
    for (let i = 0; i < carried; i++) {
      const shape = inputs[i]!.shape;
      for (let axis = 1; axis < shape.length; axis++) {
        const size = shape[axis];
        if (body.inputs[i]!.shape[axis] !== size || body.outputs[i]!.shape[axis] !== size) continue;
        tie(
          `carried${i}.axis${axis}`,
          size,
          [inputTensor(i), axis],
          [bodyInput(i), axis],
          [bodyOutput(i), axis],
          [outputTensor(i), axis],
        );
      }
    }
    for (let i = carried; i < inputs.length; i++) {
      const step = body.inputs[i]!.shape;
      for (let axis = 1; axis < step.length; axis++) {
        const size = inputs[i]!.shape[axis + 1];
        if (step[axis] !== size) continue;
        tie(`sequence${i - carried}.axis${axis}`, size, [inputTensor(i), axis + 1], [bodyInput(i), axis]);
      }
    }
    for (let j = carried; j < outputs.length; j++) {
      const step = body.outputs[j]!.shape;
      for (let axis = 1; axis < step.length; axis++) {
        tie(
          `perStep${j - carried}.axis${axis}`,
          step[axis],
          [bodyOutput(j), axis],
          [outputTensor(j), axis + 1],
        );
      }
    }
    return channels;
  },
  sessionState: (attrs) =>
    attrs.body.inputs.slice(0, attrs.carried).map((v, i) => ({
      name: `carry${i}`,
      kind: 'tensor' as const,
      dtype: v.dtype,
      shape: [...v.shape],
    })),
  forward(ctx, inputs) {
    const { carried, reverse } = ctx.attrs;
    // In a session the carried values continue from the earlier runs' last ones (the initial
    // values given as inputs start the session's first run): a sequence fed in chunks gives what
    // it gives fed whole. A reversed scan runs each chunk backwards, so it carries nothing.
    const session = reverse ? undefined : ctx.session;
    const resumed = Array.from(
      { length: carried },
      (_, i) => session?.read(`carry${i}`) as tf.Tensor | undefined,
    );
    const results = tf.tidy(() => {
      let carry = inputs.slice(0, carried).map((c, i) => resumed[i] ?? c);
      const sequences = inputs.slice(carried);
      const time = sequences[0]!.shape[1]!;
      const slices = time > 0 ? sequences.map((s) => tf.unstack(s, 1)) : [];
      const perStep: tf.Tensor[][] = [];
      for (let k = 0; k < time; k++) {
        const t = reverse ? time - 1 - k : k;
        const outputs = ctx.runGraph('body', [...carry, ...slices.map((s) => s[t]!)]);
        carry = outputs.slice(0, carried);
        perStep[t] = outputs.slice(carried);
      }
      const count = ctx.node.outputs.length - carried;
      const stacked = Array.from({ length: count }, (_, j) => {
        if (time > 0)
          return tf.stack(
            perStep.map((step) => step[j]!),
            1,
          );
        const info = ctx.attrs.body.outputs[carried + j]!;
        const rows = inputs[0]!.shape[0]!;
        const rest = info.shape.slice(1).map((d) => (typeof d === 'number' ? d : 0));
        return tf.zeros([rows, 0, ...rest], info.dtype);
      });
      // A carried value the body passed through unchanged is the caller's (or the session's)
      // tensor: hand out a new handle.
      const own = (c: tf.Tensor) => (inputs.includes(c) || resumed.includes(c) ? tf.reshape(c, c.shape) : c);
      return [...carry.map(own), ...stacked];
    });
    if (session !== undefined) {
      for (let i = 0; i < carried; i++)
        session.write(`carry${i}`, tf.reshape(results[i]!, results[i]!.shape));
    }
    return results;
  },
  flops(attrs, inputs, _, ctx) {
    const sequences = inputs.slice(attrs.carried);
    const time = sequences[0]?.[1] ?? 0;
    const step = [...inputs.slice(0, attrs.carried), ...sequences.map((s) => [s[0]!, ...s.slice(2)])];
    return time * ctx!.subGraphFlops('body', step);
  },
});
