import type * as tf from '@tensorflow/tfjs-core';
import type { OpChannels } from './channel-axes.js';
import { DynnError } from './errors.js';
import type { Attrs, AttrValue, Dim, DType, GraphNode, Initializer, ValueInfo } from './ir.js';
import type { Rng } from './random.js';
import { subGraphProblem } from './sub-graph.js';

/** The kind of an attribute, checked when a graph is validated. */
export type AttrKind =
  | 'int'
  | 'float'
  | 'bool'
  | 'string'
  | 'ints'
  | 'floats'
  | 'strings'
  | 'enum'
  | 'graph'
  | 'graphs'
  | 'json';

/** Schema of one attribute. An attribute without `default` is required. */
export interface AttrSpec {
  /** What kind of value the attribute holds. */
  kind: AttrKind;
  /** Allowed values of an `enum`. */
  values?: readonly string[];
  /** Value used when the node omits the attribute. `undefined` makes it required. */
  default?: AttrValue;
  /** Inclusive lower bound for numbers (and for each element of `ints` / `floats`). */
  min?: number;
  /** Inclusive upper bound for numbers (and for each element of `ints` / `floats`). */
  max?: number;
  /** One line on what the attribute means (shown by `dynn inspect` and the docs). */
  doc?: string;
}

/** Attribute schema of an op, by attribute name. */
export type AttrSchema = Record<string, AttrSpec>;

/** A parameter or state tensor an op asks for, named locally (`kernel`, `bias`, `movingMean`). */
export interface ParamSpec {
  /** Local name, as the op reads it from `ctx.params` / `ctx.state`. */
  name: string;
  /** Concrete dimensions. */
  shape: number[];
  /** Element type (default `float32`). */
  dtype?: DType;
  /** How the tensor is initialised when a model is created. */
  init: Initializer;
  /**
   * Names of variants of this state tensor (e.g. batch-norm statistics per width): each is stored
   * as `<node>/<name>@<variant>` beside the default one, saved with the model, and read and
   * updated instead of it in a run whose options select it (see {@link OpDef.stateVariant}).
   * State only.
   */
  variants?: readonly string[];
  /**
   * Graph-level name of a tensor several nodes share (one output head for every exit, tied
   * embeddings). Without it the tensor is the node's own, named `<node>/<name>`.
   */
  shared?: string;
}

/** Shape and dtype of one output, as computed by an op's `inferShape`. */
export interface OutputInfo {
  /** Dimensions, numbers or symbolic names (`'batch'`). */
  shape: Dim[];
  /** Element type. */
  dtype: DType;
}

/** The rows of the original batch a value holds: original row indices, ascending. */
export interface RowSet {
  /** Size of the batch given to `run`. */
  readonly batchSize: number;
  /** Original indices of the rows still being computed. */
  readonly indices: Int32Array;
}

/**
 * Rows an op retires: they leave the computation here. `rows` are local indices (0-based
 * positions in the op's current inputs); `outputs` give, for graph outputs named by key, the
 * final values of those rows (first dimension = `rows.length`).
 */
export interface Retirement {
  /** Ascending positions, in the op's current inputs, of the rows that stop here. */
  rows: Int32Array;
  /** Final values of those rows for graph outputs, by output name. The executor takes ownership. */
  outputs: Record<string, tf.Tensor>;
}

/** What an op's forward may return beyond plain outputs. */
export interface OpResult {
  /** The op's outputs, for every row it was given (retiring rows included). */
  outputs: tf.Tensor[];
  /** Rows that stop here; every later node computes only on the others. Inference only. */
  retire?: Retirement;
}

/**
 * A value an op keeps in a session between runs: a tensor (a KV cache, a recurrent state, a node
 * memory) or a number (positions seen so far).
 */
export type SessionValue = tf.Tensor | number;

/** What an op keeps in a session, declared by {@link OpDef.sessionState}. */
export type SessionStateSpec =
  | {
      /** Local name (`keys`), stored per node as `<node>/<name>`. */
      name: string;
      /** A tensor. */
      kind: 'tensor';
      /** Its element type. */
      dtype: DType;
      /**
       * Its shape: numbers are checked on every write; a symbolic dimension (`batch`, `past`) may
       * take any size and change from run to run, which is how a cache grows along time.
       */
      shape: Dim[];
    }
  | {
      /** Local name (`offset`). */
      name: string;
      /** A number kept on the host. */
      kind: 'number';
    };

/**
 * The session of a run, as an op sees it: what the op stored in earlier runs of the same
 * session, by the local names its {@link OpDef.sessionState} declares.
 */
export interface SessionAccess {
  /** The value stored under `name` by an earlier run (or window), or undefined in the first. */
  read(name: string): SessionValue | undefined;
  /**
   * Stores `value` under `name` for the session's next run (or training window), replacing the
   * old one when this run ends. Takes ownership of a tensor: call it outside any `tf.tidy`.
   */
  write(name: string, value: SessionValue): void;
}

/** How {@link OpContext.runGraph} runs a sub-graph. */
export interface RunGraphOptions {
  /** Which graph of a `graphs` attribute (0-based); omit for a `graph` attribute. */
  index?: number;
}

/** Extra compute an op did beyond what its `flops` says for its shapes (data-dependent work). */
export interface ComputeRecord {
  /** Floating-point operations. */
  flops?: number;
  /** Bytes moved (gathers, scatters, dispatch copies). */
  bytes?: number;
}

/** Run options: deployment choices read by ops (thresholds, widths...), keyed by plugin. */
export type RunOptions = Readonly<Record<string, unknown>>;

/** What an op's forward sees besides its input tensors. */
export interface OpContext<A extends Attrs = Attrs> {
  /** The node being run. */
  readonly node: GraphNode;
  /** Attributes with defaults filled in. */
  readonly attrs: A;
  /** The node's parameters by local name. */
  readonly params: Readonly<Record<string, tf.Tensor>>;
  /** The node's state tensors by local name. */
  readonly state: Readonly<Record<string, tf.Tensor>>;
  /** True inside `fit` / a training step: dropout is active, state updates are collected. */
  readonly training: boolean;
  /** Run options given to this call. */
  readonly options: RunOptions;
  /** Rows of the original batch this call computes. */
  readonly rows: RowSet;
  /**
   * Per input, whether a gradient must flow into it in this call. False for data (graph inputs,
   * values no trainable parameter influences) and always false outside training: an op may skip
   * computing those gradients (returning zeros), as Dense and Conv2D do for their first layer.
   */
  readonly inputGradients: readonly boolean[];
  /** A generator seeded from the run's seed and the node name: reproducible randomness. */
  rng(): Rng;
  /**
   * Adds an auxiliary loss (a scalar) to the training objective. Takes ownership: call it outside
   * any `tf.tidy` (a tidy would dispose the loss on return).
   */
  addLoss(loss: tf.Scalar, name?: string): void;
  /**
   * Sets a state tensor (by local name) to a new value once the run ends. Takes ownership: call
   * it outside any `tf.tidy`.
   */
  updateState(name: string, value: tf.Tensor): void;
  /** Records a statistic in the compute report under this node (counts, histograms...). */
  record(key: string, value: unknown): void;
  /**
   * Adds data-dependent compute to this node's report (tokens per expert, blocks kept): what the
   * op's `flops` cannot know from shapes alone. Recorded in inference and in training.
   */
  addCompute(compute: ComputeRecord): void;
  /**
   * A tensor derived from the model's own (`sources`: a layer's weights narrowed to the channels a
   * sub-network keeps), made by `make` and named `key` (unique per derivation, e.g. the source's
   * id and what was done to it). In inference the model keeps it until a source is assigned a new
   * value, so a derivation runs once per change, not once per call; in training it is made for
   * this call. The context owns it: never dispose it, nor return it as an output.
   */
  derive(key: string, sources: readonly tf.Tensor[], make: () => tf.Tensor): tf.Tensor;
  /**
   * What the op's `decide` returned for this call, or undefined (no `decide`, or none this run).
   * In training it comes from the decide step, made before the taped step: plain data only.
   */
  readonly decision: unknown;
  /**
   * The session this run belongs to (`model.session()`), or undefined for a run on its own: where
   * an op keeps state between runs (a KV cache for incremental decoding, a recurrent state carried
   * from one chunk of a sequence to the next). In training over several windows
   * (`Trainer.stepWindows`), what a window writes is what the next one reads, on the same tape.
   */
  readonly session: SessionAccess | undefined;
  /**
   * Runs one of the node's sub-graphs (attribute `attr`) on `inputs` (in the sub-graph's input
   * order; their first dimension is the rows it computes) through the same interpreter as the
   * graph: the run's options, training mode, seed, losses, report, hooks and gradient tape.
   * Synchronous. Returns the sub-graph's outputs, owned by the caller.
   */
  runGraph(attr: string, inputs: readonly tf.Tensor[], options?: RunGraphOptions): tf.Tensor[];
}

/** What an op's `inferShape` can ask about its sub-graphs. */
export interface InferContext {
  /** The inferred inputs and outputs of sub-graph `attr` (entry `index` of a `graphs` attribute). */
  subGraph(
    attr: string,
    index?: number,
  ): {
    /** Its declared inputs. */
    inputs: readonly ValueInfo[];
    /** Its outputs, as inferred from its inputs. */
    outputs: readonly ValueInfo[];
  };
}

/** What an op's `flops` can ask about its sub-graphs. */
export interface FlopsContext {
  /**
   * FLOPs of one run of sub-graph `attr` (entry `index` of a `graphs` attribute) on inputs of
   * these concrete shapes. In a run's report it is 0: the sub-graph's nodes report their own.
   */
  subGraphFlops(attr: string, inputs: readonly number[][], index?: number): number;
  /**
   * The run options of the call being costed (a run's report); absent for a static cost, which
   * is the op with its options at their defaults. An op whose work depends on them (a nested
   * layer at a width chosen per call) reads them here.
   */
  readonly options?: RunOptions;
}

/** The definition of an op: plain data and pure functions, no side effects. */
export interface OpDef<A extends Attrs = Attrs> {
  /** `domain.Name`, e.g. `core.Dense`. */
  type: string;
  /** Op-set version of the domain in which this op last changed. */
  version: number;
  /** One sentence on what the op computes. */
  description: string;
  /** Attribute schema, by attribute name (`{}` for none). */
  attrs: AttrSchema;
  /** How many inputs the op takes (`max` omitted: exactly `min`; `Infinity`: variadic). */
  inputs: {
    /** The fewest inputs. */
    min: number;
    /** The most inputs (default `min`). */
    max?: number;
  };
  /**
   * How many outputs the op produces (default 1); `'variadic'`: as many as `inferShape` returns
   * (e.g. one per output of a sub-graph).
   */
  outputs?: number | 'variadic';
  /** Trainable parameters, from the attributes and the input shapes. */
  params?(attrs: A, inputs: readonly ValueInfo[]): ParamSpec[];
  /** Non-trainable state tensors, from the attributes and the input shapes. */
  state?(attrs: A, inputs: readonly ValueInfo[]): ParamSpec[];
  /**
   * Output shapes and dtypes; throws a plain `Error` describing a mismatch (the caller names the
   * node). `ctx` gives the inferred signature of the op's sub-graphs (dynn always passes it; an
   * op test may omit it for an op without sub-graphs).
   */
  inferShape(attrs: A, inputs: readonly ValueInfo[], ctx?: InferContext): OutputInfo[];
  /**
   * The data-dependent decision of one call (which rows leave, which tokens go to which expert),
   * made before `forward` and free to read values back (async). It runs untaped: in training, in
   * a decide step before the taped step (see `decidesInTraining`), whose `forward` then reads it
   * as `ctx.decision`. Return undefined when there is nothing to decide.
   */
  decide?(ctx: OpContext<A>, inputs: tf.Tensor[]): unknown | Promise<unknown>;
  /**
   * Whether `decide` runs in training too (default false: in training every row runs `forward`
   * with no decision). True costs each training step an untaped forward pass up to this node.
   */
  decidesInTraining?: boolean;
  /**
   * Computes the outputs with tfjs ops, synchronously (gradients are taped synchronously). A
   * decision that needs values read back belongs in `decide`.
   */
  forward(ctx: OpContext<A>, inputs: tf.Tensor[]): tf.Tensor[] | OpResult;
  /**
   * The inputs (by position) this call does not read under these run options, such as the
   * residual branch of a block a shallower sub-network leaves out: the nodes that only feed them
   * do not run, and `forward` gets the other inputs, in order. Without it every input is read.
   */
  skipsInputs?(attrs: A, options: RunOptions): readonly number[];
  /**
   * Which channels the op's tensors hold and how they couple (see {@link OpChannels}): what
   * pruning, nested widths and layer splitting move together. Without it the op is a barrier: no
   * channel crosses it. `outputs` are the node's inferred outputs.
   */
  channels?(attrs: A, inputs: readonly ValueInfo[], outputs: readonly ValueInfo[]): OpChannels;
  /**
   * The attributes for new channel counts: `inputs` are the node's new inputs, `outputs` the
   * outputs it must now produce (the same as before except along channel axes) and `spaces` the
   * new size of each of its channel spaces (attention heads show in no input or output). Needed
   * by ops whose attributes hold a channel count (Dense `units`, Conv2D `filters`, heads);
   * without it the attributes stay as they are.
   */
  resize?(
    attrs: A,
    inputs: readonly ValueInfo[],
    outputs: readonly ValueInfo[],
    spaces: Readonly<Record<string, number>>,
  ): A;
  /**
   * What the op keeps in a session between runs (see {@link OpContext.session}); writes are checked
   * against it.
   */
  sessionState?(attrs: A, inputs: readonly ValueInfo[]): SessionStateSpec[];
  /**
   * The state variant this call reads and updates, from the run's options (a name among the
   * `variants` of its state specs), or undefined for the default state.
   */
  stateVariant?(attrs: A, options: RunOptions): string | undefined;
  /**
   * Floating-point operations for concrete input/output shapes (a multiply-add counts 2),
   * sub-graphs included through `ctx.subGraphFlops` (dynn always passes it; an op test may omit it
   * for an op without sub-graphs).
   */
  flops(attrs: A, inputs: readonly number[][], outputs: readonly number[][], ctx?: FlopsContext): number;
}

/**
 * Declares an op. Returns the definition unchanged (typed), after checking it is well formed.
 *
 * @example
 * ```ts
 * const square = defineOp({
 *   type: 'demo.Square', version: 1, description: 'Squares its input.',
 *   attrs: {}, inputs: { min: 1 },
 *   inferShape: (_, [x]) => [{ shape: x.shape, dtype: x.dtype }],
 *   forward: (_, [x]) => [tf.square(x)],
 *   flops: (_, [x]) => x.reduce((a, b) => a * b, 1),
 * });
 * ```
 */
export function defineOp<A extends Attrs = Attrs>(def: OpDef<A>): OpDef<A> {
  if (!/^[a-z][a-z0-9-]*\.[A-Z][A-Za-z0-9]*$/.test(def.type)) {
    throw new DynnError(
      'INVALID_ATTR',
      `Op type '${def.type}' must be 'domain.Name' (lower-case domain, PascalCase name), e.g. 'core.Dense'.`,
      { op: def.type },
    );
  }
  if (!Number.isInteger(def.version) || def.version < 1) {
    throw new DynnError('OP_VERSION', `Op '${def.type}' needs an integer version >= 1.`, { op: def.type });
  }
  return def;
}

function checkNumber(value: number, spec: AttrSpec, where: string): string | undefined {
  if (!Number.isFinite(value)) return `${where} must be a finite number`;
  if (spec.min !== undefined && value < spec.min)
    return `${where} is ${value}, below the minimum ${spec.min}`;
  if (spec.max !== undefined && value > spec.max)
    return `${where} is ${value}, above the maximum ${spec.max}`;
  return undefined;
}

function attrProblem(value: AttrValue, spec: AttrSpec, where: string): string | undefined {
  switch (spec.kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) return `${where} must be an integer`;
      return checkNumber(value, spec, where);
    case 'float':
      if (typeof value !== 'number') return `${where} must be a number`;
      return checkNumber(value, spec, where);
    case 'bool':
      return typeof value === 'boolean' ? undefined : `${where} must be true or false`;
    case 'string':
      return typeof value === 'string' ? undefined : `${where} must be a string`;
    case 'enum':
      return typeof value === 'string' && spec.values?.includes(value)
        ? undefined
        : `${where} is ${JSON.stringify(value)}; expected one of ${spec.values?.map((v) => `'${v}'`).join(', ')}`;
    case 'ints':
    case 'floats': {
      if (!Array.isArray(value)) return `${where} must be an array of numbers`;
      for (const [i, item] of value.entries()) {
        if (typeof item !== 'number' || (spec.kind === 'ints' && !Number.isInteger(item))) {
          return `${where}[${i}] must be ${spec.kind === 'ints' ? 'an integer' : 'a number'}`;
        }
        const problem = checkNumber(item, spec, `${where}[${i}]`);
        if (problem) return problem;
      }
      return undefined;
    }
    case 'strings':
      return Array.isArray(value) && value.every((item) => typeof item === 'string')
        ? undefined
        : `${where} must be an array of strings`;
    case 'graph':
      return subGraphProblem(value, where);
    case 'graphs': {
      if (!Array.isArray(value)) return `${where} must be an array of graphs`;
      for (const [i, graph] of value.entries()) {
        const problem = subGraphProblem(graph as AttrValue, `${where}[${i}]`);
        if (problem) return problem;
      }
      return undefined;
    }
    case 'json':
      return undefined;
  }
}

/**
 * Checks a node's attributes against an op's schema and returns them with defaults filled in.
 * Throws an `INVALID_ATTR` {@link DynnError} naming the node and attribute otherwise.
 */
export function resolveAttrs<A extends Attrs>(def: OpDef<A>, attrs: Attrs, nodeName: string): A {
  const resolved: Attrs = {};
  for (const key of Object.keys(attrs)) {
    if (!Object.hasOwn(def.attrs, key)) {
      throw new DynnError(
        'INVALID_ATTR',
        `Node '${nodeName}' (${def.type}) has unknown attribute '${key}'. Known: ${Object.keys(def.attrs).join(', ') || 'none'}.`,
        { node: nodeName, op: def.type },
      );
    }
  }
  for (const [key, spec] of Object.entries(def.attrs)) {
    const given = Object.hasOwn(attrs, key) ? attrs[key] : undefined;
    if (given === undefined) {
      if (spec.default === undefined) {
        throw new DynnError('INVALID_ATTR', `Node '${nodeName}' (${def.type}) needs attribute '${key}'.`, {
          node: nodeName,
          op: def.type,
        });
      }
      resolved[key] = spec.default;
      continue;
    }
    const problem =
      given === null && spec.default === null ? undefined : attrProblem(given, spec, `attribute '${key}'`);
    if (problem) {
      throw new DynnError('INVALID_ATTR', `Node '${nodeName}' (${def.type}): ${problem}.`, {
        node: nodeName,
        op: def.type,
      });
    }
    resolved[key] = given;
  }
  return resolved as A;
}
