import { type ActivationName, GraphBuilder, type Runtime, type SubGraph } from '@dynn/core';
import { MOE_OP, type MoeAttrs } from './moe-op.js';

/** The shape of a feed-forward expert: `Dense(hidden, activation)` then `Dense(outputSize)`. */
export interface FfnExpertOptions {
  /** Features of each token in (`d_model`). */
  inputSize: number;
  /** Hidden units (`d_ff`). */
  hidden: number;
  /** Features out (default `inputSize`). */
  outputSize?: number;
  /** Activation of the hidden layer (default `'relu'`). */
  activation?: ActivationName;
  /** Whether the output layer has a bias (default true). */
  outputBias?: boolean;
}

/**
 * A feed-forward expert as a sub-graph: `[tokens, inputSize]` through `Dense(hidden, activation)`
 * (node `up`) and `Dense(outputSize)` (node `down`). Any other sub-graph of one input
 * `[tokens, d]` and one output `[tokens, d_out]` is an expert too.
 */
export function ffnExpertGraph(runtime: Runtime, options: FfnExpertOptions): SubGraph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['tokens', options.inputSize]);
  const hidden = b.add(
    'core.Dense',
    x,
    { units: options.hidden, activation: options.activation ?? 'relu' },
    { name: 'up' },
  );
  const y = b.add(
    'core.Dense',
    hidden,
    { units: options.outputSize ?? options.inputSize, useBias: options.outputBias ?? true },
    { name: 'down' },
  );
  return b.subGraph({ y });
}

/** Options of {@link addMoeLayer}: the experts, then any attribute of {@link MoeAttrs}. */
export type MoeLayerOptions = Partial<Omit<MoeAttrs, 'experts' | 'shared'>> & {
  /** Number of feed-forward experts, or the expert sub-graphs themselves. */
  experts: number | SubGraph[];
  /** Shape of each feed-forward expert (needed when `experts` is a number). */
  expert?: Omit<FfnExpertOptions, 'inputSize'>;
  /** Shared experts: a number of feed-forward experts of shape `expert`, or sub-graphs. */
  shared?: number | SubGraph[];
  /** Node name (default: the builder's). */
  name?: string;
};

/**
 * Adds a `moe-router.MoE` node to a graph being built and returns its output. `experts: 8` with
 * `expert: { hidden: 1024 }` makes eight feed-forward experts of the input's feature size; the
 * rest are the layer's attributes (router, `k`, capacity, losses...) at their defaults unless set.
 *
 * @example
 * ```ts
 * const y = addMoeLayer(b, runtime, x, { experts: 8, expert: { hidden: 1024 }, router: 'gshard', k: 2,
 *   capacityFactor: 1.25, balanceLoss: 0.01 });
 * ```
 */
export function addMoeLayer(
  builder: GraphBuilder,
  runtime: Runtime,
  input: string,
  options: MoeLayerOptions,
): string {
  const inputSize = builder.info(input).shape.at(-1);
  if (typeof inputSize !== 'number') throw new Error(`addMoeLayer: '${input}' needs a known feature size`);
  const { experts, expert, shared, name, ...attrs } = options;
  const graphs = (value: number | SubGraph[] | undefined, what: string): SubGraph[] => {
    if (value === undefined) return [];
    if (Array.isArray(value)) return value;
    if (expert === undefined)
      throw new Error(`addMoeLayer: ${what}: ${value} needs 'expert' (its hidden size)`);
    return Array.from({ length: value }, () => ffnExpertGraph(runtime, { inputSize, ...expert }));
  };
  return builder.add(
    MOE_OP,
    input,
    { ...attrs, experts: graphs(experts, 'experts'), shared: graphs(shared, 'shared') },
    name === undefined ? {} : { name },
  );
}
