import {
  type Attrs,
  BATCH,
  createOpContext,
  createRng,
  type OpDef,
  type OpSideEffects,
  type RunOptions,
  resolveAttrs,
  type ValueInfo,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { isGpuBackend } from './backends.js';

/** One call of an op, for conformance and gradient tests. */
export interface OpCase {
  /** The node's attributes; omitted ones take the op's defaults. */
  attrs?: Attrs;
  /** Input tensors; the first dimension is the batch. The caller owns them. */
  inputs: tf.Tensor[];
  /** Parameters by local name; missing ones are drawn with {@link opParams}. */
  params?: Record<string, tf.Tensor>;
  /** State tensors by local name; missing ones are drawn with {@link opParams}. */
  state?: Record<string, tf.Tensor>;
  /** Run the op in training mode (default false). */
  training?: boolean;
  /** Run options the op sees (default none). */
  options?: RunOptions;
  /** Seed of the drawn parameters and of the op's `rng()`. */
  seed?: number;
}

// biome-ignore lint/suspicious/noExplicitAny: the harness accepts ops of any attribute type.
type AnyOp = OpDef<any>;

/** Value infos for concrete inputs, the first dimension named `batch` as graphs declare it. */
export function inputInfos(inputs: readonly tf.Tensor[]): ValueInfo[] {
  return inputs.map((t, i) => ({
    name: `input${i}`,
    dtype: t.dtype as ValueInfo['dtype'],
    shape: t.shape.map((d, axis) => (axis === 0 ? BATCH : d)),
  }));
}

/**
 * Draws every parameter and state tensor an op declares, seeded, scaled to keep activations
 * moderate. The caller owns (disposes) the result.
 */
export function opParams(
  def: AnyOp,
  attrs: Attrs,
  inputs: readonly tf.Tensor[],
  seed = 11,
): Record<string, tf.Tensor> {
  const resolved = resolveAttrs(def, attrs, 'test');
  const infos = inputInfos(inputs);
  const specs = [...(def.params?.(resolved, infos) ?? []), ...(def.state?.(resolved, infos) ?? [])];
  const rng = createRng(seed);
  const out: Record<string, tf.Tensor> = {};
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    // Variance-like state (moving variance) must stay positive.
    const positive = /var/i.test(spec.name);
    for (let i = 0; i < size; i++) values[i] = positive ? 0.5 + rng.next() : 0.5 * rng.normal();
    out[spec.name] = tf.tensor(values, spec.shape, spec.dtype ?? 'float32');
  }
  return out;
}

function splitParams(def: AnyOp, attrs: Attrs, c: OpCase, all: Record<string, tf.Tensor>) {
  const infos = inputInfos(c.inputs);
  const stateNames = new Set((def.state?.(attrs, infos) ?? []).map((s) => s.name));
  const params: Record<string, tf.Tensor> = {};
  const state: Record<string, tf.Tensor> = {};
  for (const [name, t] of Object.entries(all)) (stateNames.has(name) ? state : params)[name] = t;
  return { params, state };
}

function contextFor(
  def: AnyOp,
  c: OpCase,
  params: Record<string, tf.Tensor>,
  state: Record<string, tf.Tensor>,
) {
  const attrs = resolveAttrs(def, c.attrs ?? {}, 'test');
  const batch = c.inputs[0]?.shape[0] ?? 1;
  return createOpContext({
    node: { name: 'test', op: def.type, inputs: [], outputs: [], attrs: c.attrs ?? {} },
    attrs,
    params,
    state,
    training: c.training ?? false,
    options: c.options ?? {},
    rows: { batchSize: batch, indices: Int32Array.from({ length: batch }, (_, i) => i) },
    // The gradient check differentiates every input, so every input asks for its gradient.
    inputGradients: c.inputs.map(() => true),
    seed: c.seed ?? 1,
  });
}

function checkInferredShapes(def: AnyOp, attrs: Attrs, c: OpCase, outputs: tf.Tensor[]): void {
  const inferred = def.inferShape(attrs, inputInfos(c.inputs));
  const batch = c.inputs[0]?.shape[0];
  if (inferred.length !== outputs.length) {
    throw new Error(`${def.type}: inferShape gives ${inferred.length} outputs, forward ${outputs.length}`);
  }
  inferred.forEach((info, i) => {
    const actual = outputs[i]!;
    const expected = info.shape.map((d) => (d === BATCH ? batch : d));
    const matches =
      expected.length === actual.shape.length &&
      expected.every((d, axis) => typeof d !== 'number' || d === actual.shape[axis]);
    if (!matches || info.dtype !== actual.dtype) {
      throw new Error(
        `${def.type}: output ${i} is ${actual.dtype}[${actual.shape}], inferShape said ${info.dtype}[${info.shape}]`,
      );
    }
  });
}

/**
 * Runs one op alone, as the interpreter would (its decide step, then its forward), and checks its
 * outputs against its own `inferShape`.
 * Missing parameters are drawn with {@link opParams} and disposed afterwards; outputs and
 * state updates belong to the caller.
 */
export async function runOp(
  def: AnyOp,
  c: OpCase,
): Promise<{
  /** The op's outputs (of a retiring op, the outputs for every row it was given). */
  outputs: tf.Tensor[];
  /** Losses, state updates and records the op asked for. */
  effects: OpSideEffects;
}> {
  const attrs = resolveAttrs(def, c.attrs ?? {}, 'test');
  const drawn = c.params || c.state ? {} : opParams(def, attrs, c.inputs, c.seed);
  const { params, state } =
    c.params || c.state
      ? { params: c.params ?? {}, state: c.state ?? {} }
      : splitParams(def, attrs, c, drawn);
  try {
    const { context, effects } = contextFor(def, c, params, state);
    // The decide step first, when the op decides in this mode, as the interpreter runs it.
    if (def.decide !== undefined && (!(c.training ?? false) || def.decidesInTraining === true)) {
      (context as { decision: unknown }).decision = await def.decide(context, c.inputs);
    }
    const result = def.forward(context, c.inputs);
    const outputs = Array.isArray(result) ? result : result.outputs;
    // What the op derived for the call (narrowed weights) is freed as the interpreter frees it.
    tf.dispose(effects.transient.splice(0));
    checkInferredShapes(def, attrs, c, outputs);
    return { outputs, effects };
  } finally {
    tf.dispose(Object.values(drawn));
  }
}

/** Options for {@link checkOpGradients}. */
export interface GradientCheckOptions {
  /** Finite-difference step (default 1e-2; 3e-2 on GPU backends). */
  epsilon?: number;
  /** Allowed |analytic - numeric| / (1 + |numeric|) (default 1e-2; 5e-2 on GPU backends). */
  tolerance?: number;
  /** Elements probed per tensor (default 8). */
  samples?: number;
}

/**
 * Checks an op's gradients against central finite differences, for every float input and every
 * parameter: the objective is a fixed random weighting of all outputs. Throws naming the tensor
 * and element that disagree. Disposes everything it creates.
 */
export async function checkOpGradients(
  def: AnyOp,
  c: OpCase,
  options: GradientCheckOptions = {},
): Promise<void> {
  const gpu = isGpuBackend(tf.getBackend());
  const epsilon = options.epsilon ?? (gpu ? 3e-2 : 1e-2);
  const tolerance = options.tolerance ?? (gpu ? 5e-2 : 1e-2);
  const samples = options.samples ?? 8;
  const attrs = resolveAttrs(def, c.attrs ?? {}, 'test');
  const drawn = c.params ? {} : opParams(def, attrs, c.inputs, c.seed);
  const { params: allParams, state } = c.params
    ? { params: c.params, state: c.state ?? {} }
    : splitParams(def, attrs, c, drawn);
  const paramNames = Object.keys(allParams);
  const floatInputs = c.inputs.flatMap((t, i) => (t.dtype === 'float32' ? [i] : []));
  const names = [...floatInputs.map((i) => `input ${i}`), ...paramNames.map((n) => `param '${n}'`)];
  const rng = createRng(97);
  const weights: tf.Tensor[] = [];

  const objective = (...args: tf.Tensor[]): tf.Scalar => {
    const inputs = c.inputs.slice();
    floatInputs.forEach((inputIndex, k) => {
      inputs[inputIndex] = args[k]!;
    });
    const params: Record<string, tf.Tensor> = {};
    paramNames.forEach((name, k) => {
      params[name] = args[floatInputs.length + k]!;
    });
    const { context } = contextFor(def, c, params, state);
    const result = def.forward(context, inputs);
    const outputs = (Array.isArray(result) ? result : result.outputs).filter((t) => t.dtype === 'float32');
    return tf.tidy(() => {
      let total = tf.scalar(0);
      outputs.forEach((out, i) => {
        if (weights[i] === undefined) {
          const values = Float32Array.from({ length: out.size }, () => 2 * rng.next() - 1);
          weights[i] = tf.keep(tf.tensor(values, out.shape));
        }
        total = tf.add(total, tf.sum(tf.mul(out, weights[i]!)));
      });
      return total as tf.Scalar;
    });
  };

  const args = [...floatInputs.map((i) => c.inputs[i]!), ...paramNames.map((n) => allParams[n]!)];
  try {
    tf.dispose(tf.tidy(() => objective(...args))); // fixes the output weights
    const analytic = tf.grads(objective)(args);
    try {
      for (const [k, arg] of args.entries()) {
        const grad = await analytic[k]!.data();
        const base = Float32Array.from(await arg.data());
        const probes = Array.from({ length: Math.min(samples, base.length) }, () =>
          Math.floor(rng.next() * base.length),
        );
        for (const index of probes) {
          const evaluate = async (delta: number) => {
            const shifted = base.slice();
            shifted[index] = base[index]! + delta;
            const value = tf.tidy(() => {
              const moved = args.slice();
              moved[k] = tf.tensor(shifted, arg.shape, arg.dtype);
              return objective(...moved);
            });
            const [v] = await value.data();
            value.dispose();
            return v!;
          };
          const numeric = ((await evaluate(epsilon)) - (await evaluate(-epsilon))) / (2 * epsilon);
          const error = Math.abs(grad[index]! - numeric) / (1 + Math.abs(numeric));
          if (!(error <= tolerance)) {
            throw new Error(
              `${def.type}: gradient of ${names[k]} at element ${index} is ${grad[index]}, ` +
                `finite differences give ${numeric} (relative error ${error.toExponential(2)} > ${tolerance})`,
            );
          }
        }
      }
    } finally {
      tf.dispose(analytic);
    }
  } finally {
    tf.dispose([...weights, ...Object.values(drawn)]);
  }
}
