import type { ValueInfo } from './ir.js';

/**
 * A tensor of a node, as a channel declaration names it: one of its inputs or outputs (or an
 * input or output of one of its sub-graphs), or one of its parameters or state tensors by local
 * name.
 */
export type ChannelTensor =
  | {
      /** An input or output of the node. */
      kind: 'input' | 'output';
      /** Its position among the node's inputs or outputs. */
      index: number;
      /**
       * When set, the input or output of the node's sub-graph `attr` (entry `index` of a
       * `graphs` attribute) instead of the node's own.
       */
      graph?: {
        /** The attribute holding the sub-graph (`body`). */
        attr: string;
        /** Position in a `graphs` attribute; omitted for a `graph` attribute. */
        index?: number;
      };
    }
  | {
      /** A parameter or a state tensor of the node. */
      kind: 'param' | 'state';
      /** Its local name (`kernel`, `movingMean`). */
      name: string;
    };

/**
 * One axis of a tensor that holds channels of one of the op's channel spaces. Position `j` of the
 * axis holds channel `offset + floor(j / block) % period` of the space: the identity by default;
 * `offset` places a concatenated input; `period` wraps (a flattened `[h, w, c]` row holds channel
 * `j % c`); `block` groups (attention head `floor(j / headSize)`, depthwise output
 * `floor(j / multiplier)`).
 */
export interface ChannelAxis {
  /** The tensor. */
  tensor: ChannelTensor;
  /** The axis (negative counts from the end). */
  axis: number;
  /** The channel space (a key of {@link OpChannels.spaces}). */
  space: string;
  /** Channel of position 0 (default 0). */
  offset?: number;
  /** Consecutive positions per channel (default 1). */
  block?: number;
  /** Channels after which positions wrap around (default: no wrap). */
  period?: number;
  /**
   * True when the op mixes channels along this axis (a norm's statistics, a softmax): removing a
   * channel is still valid but changes the values of the others, so it is not the same as
   * masking it.
   */
  mixes?: boolean;
}

/** The channel of its space that position `j` of an axis holds (see {@link ChannelAxis}). */
export function channelOfPosition(axis: Pick<ChannelAxis, 'offset' | 'block' | 'period'>, j: number): number {
  return (axis.offset ?? 0) + (Math.floor(j / (axis.block ?? 1)) % (axis.period ?? Number.POSITIVE_INFINITY));
}

/**
 * What an op's channels are, for one node: its channel spaces and the axes of its tensors that
 * hold them. Axes of the same space move together (Add ties its inputs and output; Dense has an
 * input space, `kernel` axis 0, and an output space, `kernel` axis 1 and `bias`). An input or
 * output axis the declaration does not map stops the channels that reach it (a barrier).
 */
export interface OpChannels {
  /** Channel spaces by name, with their sizes. */
  spaces: Record<string, number>;
  /** The tensor axes that hold channels. */
  axes: ChannelAxis[];
}

/** The node's input `index`, for a {@link ChannelAxis}. */
export const inputTensor = (index: number): ChannelTensor => ({ kind: 'input', index });
/** The node's output `index`, for a {@link ChannelAxis}. */
export const outputTensor = (index: number): ChannelTensor => ({ kind: 'output', index });
/** The node's parameter `name`, for a {@link ChannelAxis}. */
export const paramTensor = (name: string): ChannelTensor => ({ kind: 'param', name });
/** The node's state tensor `name`, for a {@link ChannelAxis}. */
export const stateTensor = (name: string): ChannelTensor => ({ kind: 'state', name });

/**
 * The channel declaration of an elementwise op (activation, dropout, add, multiply...): every
 * non-batch axis of the output is a space, tied to the same axis of each input that has it at
 * full size (numpy broadcasting aligns trailing axes; a broadcast axis of size 1 holds no
 * channel). Symbolic axes hold no channels. `mixesLast` marks the last axis as mixing (a softmax).
 */
export function elementwiseChannels(
  inputs: readonly ValueInfo[],
  outputs: readonly ValueInfo[],
  mixesLast = false,
): OpChannels {
  const spaces: Record<string, number> = {};
  const axes: ChannelAxis[] = [];
  const out = outputs[0]!;
  const rank = out.shape.length;
  for (let axis = 1; axis < rank; axis++) {
    const size = out.shape[axis];
    if (typeof size !== 'number') continue;
    const space = `axis${axis}`;
    spaces[space] = size;
    const mixes = mixesLast && axis === rank - 1 ? { mixes: true } : {};
    outputs.forEach((o, index) => {
      if (o.shape[axis] === size) axes.push({ tensor: outputTensor(index), axis, space, ...mixes });
    });
    inputs.forEach((x, index) => {
      // A lower-rank input (a bias vector) has no batch axis: its axis 0 may hold channels.
      const own = axis - (rank - x.shape.length);
      if (own >= (x.shape.length === rank ? 1 : 0) && x.shape[own] === size)
        axes.push({ tensor: inputTensor(index), axis: own, space, ...mixes });
    });
  }
  return { spaces, axes };
}
