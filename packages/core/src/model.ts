import * as tf from '@tensorflow/tfjs-core';
import { assertBackend } from './backend.js';
import { type CompiledGraph, type CompiledNode, declaredTensors } from './compile.js';
import { DerivedTensors } from './derived-tensors.js';
import { DynnError } from './errors.js';
import { type ComputeReport, execute, type RunRequest, type RunResult } from './executor.js';
import { initTensor } from './initializers.js';
import { subGraphFlopsContext } from './interpreter.js';
import { BATCH, type Graph, type TensorInfo, type ValueInfo } from './ir.js';
import { createRng, seedFor } from './random.js';
import type { Runtime } from './runtime.js';
import { Session } from './session.js';
import { checkGraph } from './validate.js';

/** Options for {@link createModel}. */
export interface CreateModelOptions {
  /** Seed of the weight initialisers (default 0): the same seed gives the same weights everywhere. */
  seed?: number;
  /**
   * Initial values by parameter/state name (e.g. loaded from a file). The model takes ownership.
   * Any tensor not given is initialised from its spec.
   */
  weights?: ReadonlyMap<string, tf.Tensor>;
}

/** Static cost of one node at a given batch size, as `dynn inspect` prints it. */
export interface NodeCost {
  /** The node's name; its full path inside a sub-graph (`scan/body/cell`). */
  name: string;
  /** The enclosing node inside a sub-graph; absent at the top. */
  parent?: string;
  /** The node's op type. */
  op: string;
  /** Shape of its first output at that batch size. */
  outputShape: number[];
  /** Trainable parameter elements it declares (its sub-graphs' included). */
  params: number;
  /** FLOPs of one run of the node on every row (its sub-graphs' included; for a sub-graph node, one call). */
  flops: number;
}

/**
 * A graph bound to a runtime, with its parameters and state held in tf.Variables. Create one
 * with {@link createModel}; free its memory with {@link Model.dispose}.
 */
export class Model {
  /** The graph (plain data). */
  readonly graph: Graph;
  /** The runtime whose ops run the graph. */
  readonly runtime: Runtime;
  /** Trainable parameters by name (`<node>/<local name>`). */
  readonly params: ReadonlyMap<string, tf.Variable>;
  /** Non-trainable state by name. */
  readonly state: ReadonlyMap<string, tf.Variable>;
  /** Inferred dtype and symbolic shape of every value of the top graph. */
  readonly values: ReadonlyMap<string, ValueInfo>;
  /** @internal The graph compiled against the runtime: what the interpreter runs. */
  readonly compiled: CompiledGraph;
  /**
   * @internal Tensors ops derived from the model's own in inference runs (narrowed weights),
   * kept until a source changes; at most 8 per parameter and state tensor. See
   * {@link Model.clearDerived}.
   */
  readonly derived: DerivedTensors;
  private disposed = false;

  /** @internal Use {@link createModel}. */
  constructor(
    runtime: Runtime,
    graph: Graph,
    compiled: CompiledGraph,
    params: Map<string, tf.Variable>,
    state: Map<string, tf.Variable>,
  ) {
    this.runtime = runtime;
    this.graph = graph;
    this.compiled = compiled;
    this.values = compiled.values;
    this.params = params;
    this.state = state;
    this.derived = new DerivedTensors(8 * Math.max(1, params.size + state.size));
  }

  /**
   * Runs the graph on `inputs` (a tensor for a single-input graph, or tensors by input name).
   * Async because dynamic decisions read values back, which GPU backends can only do async.
   * The caller owns the returned tensors.
   */
  async run(
    inputs: tf.Tensor | Record<string, tf.Tensor>,
    request: Omit<RunRequest, 'inputs'> = {},
  ): Promise<RunResult> {
    this.assertLive();
    return execute(this, { ...request, inputs });
  }

  /** Convenience: runs and returns one graph output (default: the first) alone. */
  async predict(
    inputs: tf.Tensor | Record<string, tf.Tensor>,
    request: Omit<RunRequest, 'inputs' | 'report' | 'outputs'> & { output?: string } = {},
  ): Promise<tf.Tensor> {
    const { output = this.graph.outputs[0]!.name, ...rest } = request;
    const result = await this.run(inputs, { ...rest, report: false, outputs: [output] });
    return result.outputs[output]!;
  }

  /** Number of trainable parameter elements. */
  get paramCount(): number {
    let total = 0;
    for (const v of this.params.values()) total += v.size;
    return total;
  }

  /**
   * Static cost per node for a batch of `batchSize` rows (every row through every node), then
   * each sub-graph's nodes for one call, after their enclosing node. Other symbolic dimensions
   * take their size from `dims` (e.g. `{ time: 100 }`), else 1.
   */
  costs(batchSize = 1, dims: Readonly<Record<string, number>> = {}): NodeCost[] {
    const size = (d: string | number) =>
      typeof d === 'number' ? d : d === BATCH ? batchSize : (dims[d] ?? 1);
    const out: NodeCost[] = [];
    const visit = (c: CompiledNode, parent?: string) => {
      const inputs = c.inputs.map((v) => v.shape.map(size));
      const outputs = c.outputs.map((v) => v.shape.map(size));
      out.push({
        name: c.path,
        ...(parent === undefined ? {} : { parent }),
        op: c.node.op,
        outputShape: outputs[0]!,
        params: declaredTensors(c).params.reduce(
          (sum, t) => sum + t.info.shape.reduce((a, b) => a * b, 1),
          0,
        ),
        flops: c.def.flops(c.attrs, inputs, outputs, subGraphFlopsContext(c)),
      });
      for (const sub of c.subGraphs) for (const inner of sub.compiled.nodes) visit(inner, c.path);
    };
    for (const c of this.compiled.nodes) visit(c);
    return out;
  }

  /**
   * A new {@link Session} of this model: state kept between runs for one caller (a KV cache, a
   * recurrent state), separate from the model's own. Dispose it when done.
   */
  session(): Session {
    this.assertLive();
    return new Session(this);
  }

  /**
   * Frees the tensors ops derived from the model's weights in inference runs and kept for the
   * next run (a nested model's weights narrowed to each sub-network it ran); later runs make them
   * again. `dispose` frees them too.
   */
  clearDerived(): void {
    this.derived.dispose();
  }

  /** Frees every parameter and state tensor (and what ops derived from them). The model cannot run afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.derived.dispose();
    for (const v of this.params.values()) v.dispose();
    for (const v of this.state.values()) v.dispose();
  }

  /** True once {@link Model.dispose} ran. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  private assertLive(): void {
    if (this.disposed)
      throw new DynnError('INVALID_OPTION', 'This model was disposed; load or create it again.');
  }
}

let variableCounter = 0;

function makeVariables(
  specs: readonly TensorInfo[],
  trainable: boolean,
  seed: number,
  weights: ReadonlyMap<string, tf.Tensor> | undefined,
): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const spec of specs) {
    const given = weights?.get(spec.name);
    // tfjs needs globally unique variable names; the counter keeps two models of one graph apart.
    // Each tensor's stream depends on the seed and its name only, so adding a layer does not
    // change the initial weights of the others.
    const initial =
      given ?? initTensor(spec.init, spec.shape, spec.dtype, createRng(seedFor(seed, spec.name)));
    out.set(spec.name, tf.variable(initial, trainable, `${spec.name}#${++variableCounter}`, spec.dtype));
    initial.dispose();
  }
  return out;
}

/**
 * Validates `graph` against `runtime` and creates its parameters and state. Needs an active tfjs
 * backend: without one it throws a `BACKEND_UNAVAILABLE` {@link DynnError} naming
 * `await useBackend('wasm')` ({@link loadModel} and {@link importLayersModel} start one by
 * themselves).
 *
 * @example
 * ```ts
 * const model = createModel(runtime, graph, { seed: 1 });
 * const { outputs } = await model.run(images);
 * ```
 */
export function createModel(runtime: Runtime, graph: Graph, options: CreateModelOptions = {}): Model {
  assertBackend();
  const compiled = checkGraph(runtime, graph);
  const seed = options.seed ?? 0;
  const params = makeVariables(graph.params, true, seed, options.weights);
  const state = makeVariables(graph.state, false, seed, options.weights);
  return new Model(runtime, graph, compiled, params, state);
}

export type { ComputeReport, RunRequest, RunResult };
