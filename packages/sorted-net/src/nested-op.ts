import {
  type Attrs,
  type ChannelAxis,
  channelOfPosition,
  type Dim,
  DynnError,
  defineOp,
  type OpChannels,
  type OpContext,
  type OpDef,
  type OpResult,
  type OutputInfo,
  type ParamSpec,
  type RunOptions,
  resolveAttrs,
  selectedStateVariant,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { activeChannels, kernelOf, readSubNetwork, subNetworkKey, widthOf } from './options.js';

/** The type of the nested-layer op. */
export const NESTED_OP = 'sorted-net.Nested';

/** One channel space of a nested layer that narrows at run time. */
export interface NestedSpace {
  /** The width knob it follows (a symbolic dimension name of the values it touches). */
  knob: string;
  /** Its full number of channels. */
  size: number;
  /** Channel counts are rounded to a multiple of this. */
  multiple: number;
  /**
   * The knob's channel held by each channel of the op's space, when it is not the same index (a
   * space whose channels repeat or reorder the knob's, such as a depthwise output with a depth
   * multiplier); the knob keeps its channels below the active count.
   */
  channels?: number[];
}

/** An elastic kernel: a parameter whose two leading axes are the kernel's height and width. */
export interface ElasticKernel {
  /** The name a sub-network's per-layer `kernel` choice uses (the node's name when nested). */
  key: string;
  /** The parameter (`kernel`, `depthwiseKernel`). */
  param: string;
  /** Kernel sizes a sub-network may pick, ascending; the last is the parameter's own. */
  sizes: number[];
}

/** Attributes of `sorted-net.Nested`. */
export interface NestedAttrs extends Attrs {
  /** The wrapped op (`core.Conv2D`). */
  op: string;
  /** Its attributes, as the original node had them. */
  attrs: Attrs;
  /** Its channel spaces that narrow at run time, by space name. */
  spaces: Record<string, NestedSpace & Attrs>;
  /** The elastic kernel, or null. */
  kernel: (ElasticKernel & Attrs) | null;
  /** State variants (batch-norm statistics per sub-network), passed to ops that declare them. */
  stateVariants: string[];
}

// biome-ignore lint/suspicious/noExplicitAny: ops of every attribute type.
type AnyOp = OpDef<any>;

interface Declaration {
  inputs: ValueInfo[];
  outputs: OutputInfo[];
  channels: OpChannels;
}

interface Inner {
  def: AnyOp;
  attrs: Attrs;
  knobs: Map<string, number>;
}

/** The symbolic size of an axis holding each of a knob's channels `repeat` times in a row. */
function knobDim(knob: string, repeat: number): string {
  return repeat === 1 ? knob : `${knob}*${repeat}`;
}

/** A symbolic size written by {@link knobDim} at its full value, or undefined for another name. */
function knobSize(knobs: ReadonlyMap<string, number>, dim: string): number | undefined {
  const direct = knobs.get(dim);
  if (direct !== undefined) return direct;
  const star = dim.lastIndexOf('*');
  if (star < 0) return undefined;
  const size = knobs.get(dim.slice(0, star));
  const repeat = Number(dim.slice(star + 1));
  return size === undefined || !Number.isInteger(repeat) ? undefined : size * repeat;
}

function fullInputs(inner: Inner, inputs: readonly ValueInfo[]): ValueInfo[] {
  return inputs.map((v) => ({
    ...v,
    shape: v.shape.map((d) => (typeof d === 'string' ? (knobSize(inner.knobs, d) ?? d) : d)),
  }));
}

/** The knob's channel that position `j` of `axis` holds. */
function knobChannel(space: NestedSpace, axis: ChannelAxis, j: number): number {
  const c = channelOfPosition(axis, j);
  return space.channels?.[c] ?? c;
}

/** Positions of an axis of `length` that hold a knob channel below `active`. */
function keptPositions(space: NestedSpace, axis: ChannelAxis, length: number, active: number): number[] {
  const kept: number[] = [];
  for (let j = 0; j < length; j++) if (knobChannel(space, axis, j) < active) kept.push(j);
  return kept;
}

/** Channels of an op space of `size` that hold a knob channel below `active`. */
function keptChannels(space: NestedSpace, size: number, active: number): number {
  let kept = 0;
  for (let c = 0; c < size; c++) if ((space.channels?.[c] ?? c) < active) kept++;
  return kept;
}

/**
 * The symbolic size of an output axis on a knob: the knob's name when position `j` holds knob
 * channel `j`, `<knob>*<r>` when each channel repeats `r` times in a row; anything else (a
 * concatenation, a wrapped period) cannot narrow at run time.
 */
function outputDim(space: NestedSpace, axis: ChannelAxis, length: number): string {
  const repeat = length / space.size;
  if (Number.isInteger(repeat)) {
    let regular = true;
    for (let j = 0; j < length && regular; j++)
      regular = knobChannel(space, axis, j) === Math.floor(j / repeat);
    if (regular) return knobDim(space.knob, repeat);
  }
  throw new Error(
    `its output axis ${axis.axis} holds the channels of knob '${space.knob}' in an order that cannot narrow`,
  );
}

/** `t` narrowed along `axis` to `positions` (a slice when they are a prefix). */
function take(t: tf.Tensor, axis: number, positions: readonly number[]): tf.Tensor {
  const a = axis < 0 ? axis + t.rank : axis;
  if (positions.every((p, i) => p === i)) {
    const size = t.shape.map((d, i) => (i === a ? positions.length : d));
    return tf.slice(
      t,
      t.shape.map(() => 0),
      size,
    );
  }
  return tf.tidy(() => tf.gather(t, tf.tensor1d([...positions], 'int32'), a));
}

/**
 * A nested layer: the op it wraps, run on a prefix of its channels. Each channel space that
 * follows a width knob keeps `activeChannels(size, width, multiple)` channels in a call: every
 * parameter and state axis the op declares for that space (its `channels`) is cut to the
 * positions of those channels, the op gets attributes for the new counts (its `resize`), and it
 * computes on the narrower tensors, so the work shrinks with the width. An elastic kernel runs on
 * the centre crop of the largest kernel. State updates (batch-norm moving statistics) land in the
 * kept channels; state variants are selected by `options.core.stateVariant` or, when none is
 * named, by the sub-network's key ({@link subNetworkKey}) if the node has that variant.
 *
 * `ops` are the ops it may wrap (core's and those of the plugins in use).
 */
export function nestedOp(ops: readonly AnyOp[]): OpDef<NestedAttrs> {
  const byType = new Map(ops.map((op) => [op.type, op]));
  const innerCache = new WeakMap<NestedAttrs, Inner>();
  const keys = new WeakMap<NestedAttrs, string>();
  // Declarations at full width, by the node's attributes: made when the graph is compiled (from the
  // symbolic input shapes), read by every call (whose inputs are narrower).
  const declarations = new Map<string, Declaration>();
  const keyOf = (attrs: NestedAttrs): string => {
    let key = keys.get(attrs);
    if (key === undefined) {
      key = JSON.stringify(attrs);
      keys.set(attrs, key);
    }
    return key;
  };

  const innerOf = (attrs: NestedAttrs, node = 'a nested node'): Inner => {
    let inner = innerCache.get(attrs);
    if (inner === undefined) {
      const def = byType.get(attrs.op);
      if (def === undefined) {
        throw new DynnError(
          'UNKNOWN_OP',
          `${NESTED_OP} in ${node} wraps '${attrs.op}', which sorted-net was not given: pass its op to sortedNet({ ops }).`,
          { op: attrs.op },
        );
      }
      const given: Attrs = { ...attrs.attrs };
      if (Object.hasOwn(def.attrs, 'stateVariants') && attrs.stateVariants.length > 0)
        given.stateVariants = attrs.stateVariants;
      inner = {
        def,
        attrs: resolveAttrs(def, given, node),
        knobs: new Map(Object.values(attrs.spaces).map((space) => [space.knob, space.size])),
      };
      innerCache.set(attrs, inner);
    }
    return inner;
  };

  /** The wrapped op's declaration at full width (see `declarations`). */
  const declaration = (attrs: NestedAttrs, node: string): Declaration => {
    const found = declarations.get(keyOf(attrs));
    if (found === undefined) {
      throw new DynnError(
        'INVALID_GRAPH',
        `${NESTED_OP} node '${node}' runs before its graph was compiled: create a model from the graph.`,
        { node, op: NESTED_OP },
      );
    }
    return found;
  };

  /** Channels each nested space keeps under `options`. */
  const activeSpaces = (attrs: NestedAttrs, options: RunOptions | undefined): Map<string, number> => {
    const sub = options === undefined ? {} : readSubNetwork(options);
    const active = new Map<string, number>();
    for (const [space, s] of Object.entries(attrs.spaces))
      active.set(space, activeChannels(s.size, widthOf(sub, s.knob), s.multiple));
    return active;
  };

  const kernelSize = (attrs: NestedAttrs, options: RunOptions | undefined): number | undefined => {
    if (attrs.kernel === null || options === undefined) return undefined;
    const node = attrs.kernel.key;
    const k = kernelOf(readSubNetwork(options), node);
    if (k === undefined) return undefined;
    if (!attrs.kernel.sizes.includes(k)) {
      throw new DynnError(
        'INVALID_OPTION',
        `Run option 'sorted-net'.kernel is ${k} for node '${node}', whose elastic kernel takes ${attrs.kernel.sizes.join(', ')}.`,
        { node },
      );
    }
    return k === attrs.kernel.sizes.at(-1) ? undefined : k;
  };

  /** The wrapped op's attributes for the active channel counts and kernel, from actual shapes. */
  const innerAttrsFor = (
    attrs: NestedAttrs,
    inner: Inner,
    decl: Declaration,
    active: ReadonlyMap<string, number>,
    inputs: readonly number[][],
    kernel: number | undefined,
  ): { attrs: Attrs; outputs: ValueInfo[] } => {
    const outputs: ValueInfo[] = decl.outputs.map((o, index) => {
      const shape: Dim[] = [...o.shape];
      for (const axis of decl.channels.axes) {
        if (axis.tensor.kind !== 'output' || axis.tensor.index !== index || axis.tensor.graph) continue;
        const n = active.get(axis.space);
        const a = axis.axis < 0 ? axis.axis + shape.length : axis.axis;
        if (n !== undefined)
          shape[a] = keptPositions(attrs.spaces[axis.space]!, axis, o.shape[a] as number, n).length;
      }
      return { name: `output${index}`, dtype: o.dtype, shape };
    });
    const newInputs: ValueInfo[] = decl.inputs.map((v, i) => ({
      ...v,
      shape: v.shape.map((d, axis) => (typeof d === 'number' ? (inputs[i]?.[axis] ?? d) : d)),
    }));
    let resized = inner.attrs;
    const changed = [...active].some(([space, n]) => n !== attrs.spaces[space]!.size);
    if (changed && inner.def.resize !== undefined) {
      const spaces = { ...decl.channels.spaces };
      for (const [space, n] of active) spaces[space] = keptChannels(attrs.spaces[space]!, spaces[space]!, n);
      resized = inner.def.resize(inner.attrs, newInputs, outputs, spaces);
    }
    if (kernel !== undefined) resized = { ...resized, kernelSize: [kernel, kernel] };
    return { attrs: resized, outputs };
  };

  return defineOp<NestedAttrs>({
    type: NESTED_OP,
    version: 1,
    description:
      'A layer of a nested network: the wrapped op on a prefix of its channels, chosen per call by the sorted-net run options.',
    attrs: {
      op: { kind: 'string', doc: 'the wrapped op' },
      attrs: { kind: 'json', doc: "the wrapped op's attributes" },
      spaces: {
        kind: 'json',
        doc: 'channel spaces that narrow at run time: { space: { knob, size, multiple } }',
      },
      kernel: { kind: 'json', default: null, doc: 'elastic kernel { param, sizes } (centre crops), or null' },
      stateVariants: {
        kind: 'strings',
        default: [],
        doc: 'state variants (batch-norm statistics per sub-network) of a wrapped op that has them',
      },
    },
    inputs: { min: 1, max: Number.POSITIVE_INFINITY },
    outputs: 'variadic',
    params(attrs, inputs) {
      const inner = innerOf(attrs);
      return inner.def.params?.(inner.attrs, fullInputs(inner, inputs)) ?? [];
    },
    state(attrs, inputs) {
      const inner = innerOf(attrs);
      return inner.def.state?.(inner.attrs, fullInputs(inner, inputs)) ?? ([] as ParamSpec[]);
    },
    inferShape(attrs, inputs) {
      const inner = innerOf(attrs);
      const full = fullInputs(inner, inputs);
      const outputs = inner.def.inferShape(inner.attrs, full);
      const channels = inner.def.channels?.(inner.attrs, full, outputs as ValueInfo[]);
      if (channels === undefined) throw new Error(`'${attrs.op}' declares no channels: it cannot be nested`);
      declarations.set(keyOf(attrs), { inputs: full, outputs, channels });
      for (const space of Object.keys(attrs.spaces)) {
        if (!Object.hasOwn(channels.spaces, space))
          throw new Error(`'${attrs.op}' has no channel space '${space}'`);
      }
      // An output axis of a nested space takes the knob's symbolic size: checked per run.
      return outputs.map((o, index) => {
        const shape = [...o.shape];
        for (const axis of channels.axes) {
          if (axis.tensor.kind !== 'output' || axis.tensor.index !== index || axis.tensor.graph) continue;
          const nested = attrs.spaces[axis.space];
          const a = axis.axis < 0 ? axis.axis + shape.length : axis.axis;
          if (nested !== undefined) shape[a] = outputDim(nested, axis, o.shape[a] as number);
        }
        return { ...o, shape };
      });
    },
    stateVariant(attrs, options) {
      const inner = innerOf(attrs);
      if (inner.def.stateVariant === undefined) return undefined;
      const named = selectedStateVariant(options);
      if (named !== undefined) return named;
      const key = subNetworkKey(readSubNetwork(options));
      return attrs.stateVariants.includes(key) ? key : undefined;
    },
    forward(ctx: OpContext<NestedAttrs>, inputs: tf.Tensor[]): tf.Tensor[] | OpResult {
      const { attrs } = ctx;
      const inner = innerOf(attrs, ctx.node.name);
      const decl = declaration(attrs, ctx.node.name);
      const active = activeSpaces(attrs, ctx.options);
      const kernel = kernelSize(attrs, ctx.options);
      const { attrs: innerAttrs } = innerAttrsFor(
        attrs,
        inner,
        decl,
        active,
        inputs.map((t) => t.shape),
        kernel,
      );
      // Each tensor's cuts along its nested axes (and the kernel's crop), derived once per change
      // of the weights in inference rather than on every call.
      const narrow = (kind: 'param' | 'state', tensors: Readonly<Record<string, tf.Tensor>>) => {
        const steps = new Map<string, { axis: number; positions: number[] }[]>();
        for (const axis of decl.channels.axes) {
          if (axis.tensor.kind !== kind) continue;
          const n = active.get(axis.space);
          const name = axis.tensor.name;
          const t = tensors[name];
          if (n === undefined || t === undefined) continue;
          const a = axis.axis < 0 ? axis.axis + t.rank : axis.axis;
          const positions = keptPositions(attrs.spaces[axis.space]!, axis, t.shape[a]!, n);
          if (positions.length < t.shape[a]!)
            steps.set(name, [...(steps.get(name) ?? []), { axis: a, positions }]);
        }
        const cropped =
          kind === 'param' && kernel !== undefined && attrs.kernel !== null ? attrs.kernel.param : undefined;
        if (cropped !== undefined && !steps.has(cropped)) steps.set(cropped, []);
        const out: Record<string, tf.Tensor> = { ...tensors };
        for (const [name, cuts] of steps) {
          const source = tensors[name]!;
          const crop = name === cropped ? kernel : undefined;
          const key = `${source.id}|${cuts.map((c) => `${c.axis}:${c.positions.join(',')}`).join('|')}|${crop ?? ''}`;
          out[name] = ctx.derive(key, [source], () =>
            tf.tidy(() => {
              let t = cuts.reduce((x, c) => take(x, c.axis, c.positions), source);
              if (crop !== undefined) {
                const start = (t.shape[0]! - crop) / 2;
                t = tf.slice(
                  t,
                  [start, start, ...t.shape.slice(2).map(() => 0)],
                  [crop, crop, ...t.shape.slice(2)],
                );
              }
              return t;
            }),
          );
        }
        return out;
      };
      const params = narrow('param', ctx.params);
      const state = narrow('state', ctx.state);
      const stateAxes = decl.channels.axes.filter((a) => a.tensor.kind === 'state' && active.has(a.space));
      const view = Object.create(ctx) as OpContext;
      Object.assign(view, {
        attrs: innerAttrs,
        params,
        state,
        // A narrow update lands in the kept channels; the others keep their values.
        updateState(name: string, value: tf.Tensor) {
          const full = ctx.state[name];
          const axes = stateAxes.filter((a) => a.tensor.kind === 'state' && a.tensor.name === name);
          if (full === undefined || axes.length === 0 || value.size === full.size) {
            ctx.updateState(name, value);
            return;
          }
          if (axes.length > 1 || value.rank !== full.rank) {
            value.dispose();
            throw new DynnError(
              'INVALID_GRAPH',
              `Node '${ctx.node.name}' (${NESTED_OP} of ${attrs.op}) updates state '${name}' along several nested axes, which sorted-net cannot merge.`,
              { node: ctx.node.name, op: NESTED_OP },
            );
          }
          const axis = axes[0]!;
          const a = axis.axis < 0 ? axis.axis + full.rank : axis.axis;
          const kept = keptPositions(
            attrs.spaces[axis.space]!,
            axis,
            full.shape[a]!,
            active.get(axis.space)!,
          );
          // Position p of the merged tensor: the update's row for a kept position, else the old value.
          const source = new Int32Array(full.shape[a]!);
          for (let p = 0; p < source.length; p++) source[p] = kept.length + p;
          kept.forEach((p, i) => {
            source[p] = i;
          });
          const merged = tf.tidy(() =>
            tf.gather(tf.concat([value, full], a), tf.tensor1d(source, 'int32'), a),
          );
          value.dispose();
          ctx.updateState(name, merged);
        },
      });
      return inner.def.forward(view, inputs);
    },
    flops(attrs, inputs, outputs, ctx) {
      const inner = innerOf(attrs);
      const decl = declaration(attrs, 'a nested node');
      const active = activeSpaces(attrs, ctx?.options);
      const kernel = kernelSize(attrs, ctx?.options);
      const { attrs: innerAttrs } = innerAttrsFor(attrs, inner, decl, active, inputs, kernel);
      return inner.def.flops(innerAttrs, inputs, outputs);
    },
  });
}
