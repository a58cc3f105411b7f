import { createRng, DynnError, type Model, type NodeHook, type Rng, type TensorOrMap } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { describeNesting } from './describe-nesting.js';
import {
  checkWidths,
  type LatencyTable,
  nodesRun,
  predictLatency,
  subNetworkFlops,
} from './latency-table.js';
import { activeChannels, type SubNetwork, subNetworkKey, subNetworkOptions, widthOf } from './options.js';

/** A sub-network the search evaluated, with what it costs. Plain JSON. */
export interface SearchPoint {
  /** The sub-network (per-knob widths, and per-stage depths and per-layer kernels when searched). */
  sub: SubNetwork;
  /** What `evaluate` returned for it (higher is better). */
  accuracy: number;
  /** Millions of FLOPs per sample on the search's `input`, as the compute report counts them. */
  mflops: number;
  /** Predicted latency in milliseconds, when the search had a latency table. */
  latencyMs?: number;
}

/** What a sub-network may cost: one limit or both. */
export interface SearchBudget {
  /** Predicted latency limit in milliseconds (needs a latency table). */
  latencyMs?: number;
  /** Limit in millions of FLOPs per sample. */
  mflops?: number;
}

/** Options of {@link searchSubNetwork}. */
export interface SearchOptions {
  /** Accuracy of a sub-network (on a validation set, say); higher is better. Called once per distinct sub-network. */
  evaluate: (sub: SubNetwork) => Promise<number>;
  /** What the returned sub-network may cost. */
  budget: SearchBudget;
  /** Latency table of the model ({@link measureLatencyTable}): needed for a latency budget, and gives each point its `latencyMs`. */
  table?: LatencyTable;
  /** A sample batch (one row is enough) on which FLOPs are counted: the full network runs on it once. */
  input: TensorOrMap;
  /** Width fractions each knob may take. */
  widths: readonly number[];
  /** Depths each stage may take (default: full depth only, not searched). */
  depths?: readonly number[];
  /** Kernel sizes each elastic layer may take (default: its largest only, not searched). */
  kernels?: readonly number[];
  /** `evolutionary` (default) or `greedy`. */
  strategy?: 'evolutionary' | 'greedy';
  /** Sub-networks per generation (default 16). */
  population?: number;
  /** Generations, the first being the random population (default 10). */
  generations?: number;
  /** Probability that a mutation redraws each choice (default 0.1). */
  mutationRate?: number;
  /** Seed of the search's random choices (default 0): the same seed gives the same search. */
  seed?: number;
  /** Called after each generation (greedy: each step); `total` is their number (greedy: an upper bound, reached by the last call). */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link searchSubNetwork} found. Plain JSON (the CLI writes it as `pareto.json`). */
export interface SearchResult {
  /** The most accurate sub-network within the budget (the cheaper one on a tie). */
  best: SearchPoint;
  /** Every sub-network evaluated, in the order evaluated. */
  evaluated: SearchPoint[];
  /** The evaluated sub-networks within the budget that no other one beats on both accuracy and cost, by cost. */
  front: SearchPoint[];
}

/** Which cost a Pareto front trades accuracy against. */
export interface ParetoOptions {
  /** `mflops` (default) or `latencyMs` (points without one are refused). */
  cost?: 'mflops' | 'latencyMs';
}

function invalid(message: string): DynnError {
  return new DynnError('INVALID_OPTION', message);
}

function costOf(point: SearchPoint, cost: 'mflops' | 'latencyMs'): number {
  const value = point[cost];
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw invalid(`paretoFront: point ${subNetworkKey(point.sub)} has no ${cost}.`);
  return value;
}

/**
 * The points no other point dominates (at most the cost and at least the accuracy, one of them
 * strictly), sorted by cost ascending; of identical points the first is kept.
 *
 * @example
 * ```ts
 * const front = paretoFront(result.evaluated, { cost: 'latencyMs' });
 * ```
 */
export function paretoFront(points: readonly SearchPoint[], options: ParetoOptions = {}): SearchPoint[] {
  const cost = options.cost ?? 'mflops';
  if (cost !== 'mflops' && cost !== 'latencyMs')
    throw invalid(`paretoFront: 'cost' must be 'mflops' or 'latencyMs', got ${JSON.stringify(cost)}.`);
  const sorted = points
    .map((p, i) => ({ p, i, c: costOf(p, cost) }))
    .sort((a, b) => a.c - b.c || b.p.accuracy - a.p.accuracy || a.i - b.i);
  const front: SearchPoint[] = [];
  let bestAccuracy = Number.NEGATIVE_INFINITY;
  for (const { p } of sorted) {
    if (p.accuracy <= bestAccuracy) continue;
    front.push(p);
    bestAccuracy = p.accuracy;
  }
  return front;
}

/** The search space: per gene (knob, stage, elastic layer) its choices, ascending. */
interface Space {
  knobs: { name: string; choices: number[] }[];
  stages: { choices: number[] }[] | undefined;
  kernels: { node: string; choices: number[] }[] | undefined;
}

/** A sub-network as indices into its genes' choices: knobs, then stages, then kernels. */
type Genome = number[];

function buildSpace(model: Model, options: SearchOptions): Space {
  const nesting = describeNesting(model.graph);
  const widths = checkWidths(options.widths, 'searchSubNetwork');
  const space: Space = {
    knobs: nesting.knobs.map((k) => ({ name: k.name, choices: widths })),
    stages: undefined,
    kernels: undefined,
  };
  if (options.depths !== undefined && nesting.stages.length > 0) {
    if (options.depths.length === 0 || options.depths.some((d) => !Number.isInteger(d) || d < 0))
      throw invalid(
        `searchSubNetwork: 'depths' must list integers >= 0, got ${JSON.stringify(options.depths)}.`,
      );
    // A depth beyond a stage's blocks is its full depth: one choice.
    space.stages = nesting.stages.map((s) => ({
      choices: [...new Set(options.depths!.map((d) => Math.min(d, s.blocks.length)))].sort((a, b) => a - b),
    }));
  }
  if (options.kernels !== undefined && nesting.kernels.length > 0) {
    space.kernels = nesting.kernels.map((layer) => {
      const choices = layer.sizes.filter((k) => options.kernels!.includes(k));
      if (choices.length === 0) {
        throw invalid(
          `searchSubNetwork: elastic layer '${layer.node}' takes kernels ${layer.sizes.join(', ')}, none of 'kernels' (${options.kernels!.join(', ')}).`,
        );
      }
      return { node: layer.node, choices };
    });
  }
  return space;
}

function genes(space: Space): number[][] {
  return [
    ...space.knobs.map((k) => k.choices),
    ...(space.stages ?? []).map((s) => s.choices),
    ...(space.kernels ?? []).map((k) => k.choices),
  ];
}

function decode(space: Space, genome: Genome): SubNetwork {
  const sub: SubNetwork = {};
  let at = 0;
  if (space.knobs.length > 0)
    sub.width = Object.fromEntries(space.knobs.map((k) => [k.name, k.choices[genome[at++]!]!]));
  if (space.stages !== undefined) sub.depth = space.stages.map((s) => s.choices[genome[at++]!]!);
  if (space.kernels !== undefined)
    sub.kernel = Object.fromEntries(space.kernels.map((k) => [k.node, k.choices[genome[at++]!]!]));
  return sub;
}

function checkBudget(options: SearchOptions): SearchBudget {
  const { budget, table } = options;
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (budget === undefined || (budget.latencyMs === undefined && budget.mflops === undefined))
    throw invalid("searchSubNetwork: give a 'budget': { mflops } and/or { latencyMs }.");
  for (const key of ['latencyMs', 'mflops'] as const) {
    if (budget[key] !== undefined && !positive(budget[key]))
      throw invalid(
        `searchSubNetwork: budget.${key} must be a positive number, got ${JSON.stringify(budget[key])}.`,
      );
  }
  if (budget.latencyMs !== undefined && table === undefined) {
    throw invalid(
      'searchSubNetwork: a latency budget needs a latency table: pass table: await measureLatencyTable(model, { input, widths }).',
    );
  }
  return budget;
}

function checkInteger(value: number | undefined, fallback: number, min: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min)
    throw invalid(`searchSubNetwork: '${name}' must be an integer >= ${min}, got ${JSON.stringify(v)}.`);
  return v;
}

/**
 * FLOPs per sample of any sub-network without running it: each node the sub-network runs costed
 * by its op's `flops` (what the compute report sums) at the shapes it met in one run of the full
 * network on `input`, each knob-sized axis at the sub-network's channel count. Undefined when
 * that cannot match the report: an op that runs sub-graphs, or (checked on the full and the
 * smallest sub-network) data-dependent work the report adds.
 */
async function staticFlops(
  model: Model,
  input: TensorOrMap,
  smallest: SubNetwork,
): Promise<((sub: SubNetwork) => number) | undefined> {
  if (model.compiled.nodes.some((c) => c.subGraphs.length > 0)) return undefined;
  const shapes = new Map<string, { inputs: number[][]; outputs: number[][] }>();
  const hook: NodeHook = {
    afterNode(event) {
      if (event.parent !== undefined || event.rows === 0) return;
      shapes.set(event.node.name, {
        inputs: event.inputs.map((t) => [...t.shape]),
        outputs: event.outputs.map((t) => [...t.shape]),
      });
    },
  };
  const { outputs, report } = await model.run(input, { hooks: [hook], report: true });
  tf.dispose(Object.values(outputs));
  const rows = report!.batchSize;
  const knobs = new Map(describeNesting(model.graph).knobs.map((k) => [k.name, k]));
  const byName = new Map(model.compiled.nodes.map((c) => [c.node.name, c]));
  const count = (sub: SubNetwork): number => {
    const options = subNetworkOptions(sub);
    const at = (symbolic: readonly (string | number)[], actual: readonly number[]) =>
      actual.map((d, axis) => {
        const name = symbolic[axis];
        const knob = typeof name === 'string' ? knobs.get(name) : undefined;
        return knob === undefined ? d : activeChannels(knob.size, widthOf(sub, knob.name), knob.multiple);
      });
    let total = 0;
    for (const name of nodesRun(model.graph, sub).runs) {
      const c = byName.get(name)!;
      const met = shapes.get(name);
      if (met === undefined) return Number.NaN;
      // An op that skips inputs (a residual end without its branch) is costed on those it reads.
      const skipped = new Set(c.def.skipsInputs?.(c.attrs, options) ?? []);
      const read = (_: unknown, i: number) => !skipped.has(i);
      const symbolic = c.inputs.filter(read);
      total += c.def.flops(
        c.attrs,
        met.inputs.filter(read).map((s, i) => at(symbolic[i]!.shape, s)),
        met.outputs.map((s, i) => at(c.outputs[i]!.shape, s)),
        { subGraphFlops: () => 0, options },
      );
    }
    return total / rows;
  };
  const agrees = (counted: number, measured: number) =>
    Math.abs(counted - measured) <= 1e-9 * Math.max(1, measured);
  if (!agrees(count({}), report!.flops / rows)) return undefined;
  if (!agrees(count(smallest), await subNetworkFlops(model, smallest, input))) return undefined;
  return count;
}

/** Costs of sub-networks, known before any evaluation and cached by key. */
class Costs {
  private readonly flops = new Map<string, number>();

  constructor(
    private readonly model: Model,
    private readonly input: TensorOrMap,
    private readonly table: LatencyTable | undefined,
    private readonly budget: SearchBudget,
    private readonly counted: ((sub: SubNetwork) => number) | undefined,
  ) {}

  /** Millions of FLOPs per sample: counted statically where that matches the report, else measured by a run. */
  async mflops(sub: SubNetwork): Promise<number> {
    const key = subNetworkKey(sub);
    let value = this.flops.get(key);
    if (value === undefined) {
      const counted = this.counted?.(sub);
      value =
        (counted !== undefined && Number.isFinite(counted)
          ? counted
          : await subNetworkFlops(this.model, sub, this.input)) / 1e6;
      this.flops.set(key, value);
    }
    return value;
  }

  latencyMs(sub: SubNetwork): number | undefined {
    return this.table === undefined ? undefined : predictLatency(this.table, this.model.graph, sub);
  }

  /** Cost relative to the budget, summed over the limits given: above 1 on a limit means over it. */
  async load(sub: SubNetwork): Promise<{ fits: boolean; load: number }> {
    let load = 0;
    let fits = true;
    if (this.budget.latencyMs !== undefined) {
      const share = this.latencyMs(sub)! / this.budget.latencyMs;
      load += share;
      fits &&= share <= 1;
    }
    if (this.budget.mflops !== undefined) {
      const share = (await this.mflops(sub)) / this.budget.mflops;
      load += share;
      fits &&= share <= 1;
    }
    return { fits, load };
  }
}

/** Evaluations, each distinct sub-network once, in order. */
class Evaluations {
  readonly points: SearchPoint[] = [];
  private readonly byKey = new Map<string, SearchPoint>();

  constructor(
    private readonly evaluate: SearchOptions['evaluate'],
    private readonly costs: Costs,
  ) {}

  has(sub: SubNetwork): boolean {
    return this.byKey.has(subNetworkKey(sub));
  }

  async point(sub: SubNetwork): Promise<SearchPoint> {
    const key = subNetworkKey(sub);
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    const accuracy = await this.evaluate(sub);
    if (typeof accuracy !== 'number' || !Number.isFinite(accuracy))
      throw invalid(
        `searchSubNetwork: evaluate returned ${String(accuracy)} for ${key}; it must return a finite number.`,
      );
    const latencyMs = this.costs.latencyMs(sub);
    const point: SearchPoint = {
      sub,
      accuracy,
      mflops: await this.costs.mflops(sub),
      ...(latencyMs === undefined ? {} : { latencyMs }),
    };
    this.byKey.set(key, point);
    this.points.push(point);
    return point;
  }
}

const describeBudget = (budget: SearchBudget) =>
  [
    budget.mflops === undefined ? '' : `${budget.mflops} MFLOPs`,
    budget.latencyMs === undefined ? '' : `${budget.latencyMs} ms`,
  ]
    .filter(Boolean)
    .join(' and ');

/** Shrinks random choices of an over-budget genome, one step at a time, until it fits. */
async function repair(genome: Genome, space: Space, costs: Costs, rng: Rng): Promise<Genome> {
  const g = [...genome];
  while (!(await costs.load(decode(space, g))).fits) {
    const movable = g.flatMap((v, i) => (v > 0 ? [i] : []));
    // The smallest sub-network fits (checked first), so some choice can still shrink.
    g[movable[rng.int(movable.length)]!]! -= 1;
  }
  return g;
}

/** Best first: accuracy, then lower FLOPs, then key, so ranking is deterministic. */
function byAccuracy(a: SearchPoint, b: SearchPoint): number {
  const ka = subNetworkKey(a.sub);
  const kb = subNetworkKey(b.sub);
  return b.accuracy - a.accuracy || a.mflops - b.mflops || (ka < kb ? -1 : ka > kb ? 1 : 0);
}

interface Run {
  space: Space;
  choices: number[][];
  costs: Costs;
  evaluations: Evaluations;
  rng: Rng;
  population: number;
  generations: number;
  mutationRate: number;
  onProgress: ((done: number, total: number) => void) | undefined;
}

/**
 * Once-for-all's evolutionary search: a random population repaired into the budget, then per
 * generation the top quarter kept as parents and the rest replaced by mutated and crossed-over
 * children, repaired into the budget before they are evaluated. At most `population` evaluations
 * per generation, each distinct sub-network evaluated once.
 */
async function evolve(run: Run): Promise<void> {
  const { space, choices, costs, evaluations, rng, population, generations, mutationRate } = run;
  const keyOf = (g: Genome) => subNetworkKey(decode(space, g));
  const novel = async (make: () => Genome, taken: Set<string>): Promise<Genome | undefined> => {
    // A child equal to a sub-network already evaluated would waste a slot: try a few others.
    for (let attempt = 0; attempt < 20; attempt++) {
      const g = await repair(make(), space, costs, rng);
      const key = keyOf(g);
      if (!taken.has(key) && !evaluations.has(decode(space, g))) {
        taken.add(key);
        return g;
      }
    }
    return undefined;
  };
  const evaluate = async (gs: Genome[]) => {
    const out: { g: Genome; p: SearchPoint }[] = [];
    for (const g of gs) out.push({ g, p: await evaluations.point(decode(space, g)) });
    return out;
  };
  const taken = new Set<string>();
  const first: Genome[] = [];
  for (let i = 0; i < population; i++) {
    const g = await novel(() => choices.map((c) => rng.int(c.length)), taken);
    if (g !== undefined) first.push(g);
  }
  let current = await evaluate(first);
  run.onProgress?.(1, generations);
  const parentCount = Math.max(1, Math.round(population / 4));
  for (let generation = 1; generation < generations; generation++) {
    const parents = [...current].sort((a, b) => byAccuracy(a.p, b.p)).slice(0, parentCount);
    const pick = () => parents[rng.int(parents.length)]!.g;
    const children: Genome[] = [];
    const slots = population - parents.length;
    const mutations = parents.length < 2 ? slots : Math.ceil(slots / 2);
    const seen = new Set(parents.map((p) => keyOf(p.g)));
    for (let i = 0; i < slots; i++) {
      const make =
        i < mutations
          ? () => {
              const g = [...pick()];
              let changed = false;
              g.forEach((_, j) => {
                if (rng.next() < mutationRate) {
                  g[j] = rng.int(choices[j]!.length);
                  changed = true;
                }
              });
              // A mutation that redrew nothing redraws one choice.
              if (!changed) {
                const j = rng.int(g.length);
                g[j] = rng.int(choices[j]!.length);
              }
              return g;
            }
          : () => {
              const a = pick();
              const b = pick();
              return a.map((v, j) => (rng.next() < 0.5 ? v : b[j]!));
            };
      const child = await novel(make, seen);
      if (child !== undefined) children.push(child);
    }
    current = [...parents, ...(await evaluate(children))];
    run.onProgress?.(generation + 1, generations);
  }
}

/**
 * BootstrapNAS's greedy descent: from the largest sub-network, while over budget, evaluate each
 * one-step shrink (one knob, stage or kernel to its next smaller choice) and take the one that
 * loses the least accuracy per budget share saved. When the remaining evaluations cannot cover a
 * step, it shrinks by cost alone (the largest saving) and evaluates only where it ends.
 */
async function descend(run: Run, limit: number): Promise<void> {
  const { space, choices, costs, evaluations } = run;
  let g: Genome = choices.map((c) => c.length - 1);
  const total = g.reduce((a, b) => a + b, 0);
  let step = 0;
  let current = await evaluations.point(decode(space, g));
  let load = await costs.load(current.sub);
  let remaining = limit - 1;
  while (!load.fits) {
    const moves: { g: Genome; load: number }[] = [];
    for (let j = 0; j < g.length; j++) {
      if (g[j] === 0) continue;
      const next = [...g];
      next[j]! -= 1;
      moves.push({ g: next, load: (await costs.load(decode(space, next))).load });
    }
    const saving = moves.filter((m) => m.load < load.load);
    const candidates = saving.length > 0 ? saving : moves;
    const unknown = candidates.filter((m) => !evaluations.has(decode(space, m.g))).length;
    let chosen: { g: Genome; load: number };
    // One evaluation stays in reserve for the point the descent ends at.
    if (unknown + 1 <= remaining) {
      remaining -= unknown;
      let bestScore = Number.POSITIVE_INFINITY;
      chosen = candidates[0]!;
      for (const m of candidates) {
        const p = await evaluations.point(decode(space, m.g));
        const score = (current.accuracy - p.accuracy) / Math.max(load.load - m.load, 1e-12);
        if (score < bestScore) {
          bestScore = score;
          chosen = m;
        }
      }
    } else {
      chosen = candidates.reduce((a, b) => (b.load < a.load ? b : a));
    }
    g = chosen.g;
    const sub = decode(space, g);
    load = await costs.load(sub);
    if (evaluations.has(sub)) current = await evaluations.point(sub);
    step += 1;
    run.onProgress?.(step, total);
  }
  await evaluations.point(decode(space, g));
  run.onProgress?.(total, total);
}

/**
 * Searches a nested model's sub-networks for the most accurate one within a budget of FLOPs
 * and/or predicted latency (once-for-all's and BootstrapNAS's search): per-knob widths from
 * `widths`, per-stage depths from `depths`, per-layer kernel sizes from `kernels`. Costs are
 * known before evaluating, without running the candidate: FLOPs per sample counted from the ops'
 * FLOP formulas at the shapes one run of the full network on `input` met (what the compute
 * report sums; checked against the report on the full and the smallest sub-network, and measured
 * by a run per candidate where they disagree, e.g. data-dependent work), latency from the table
 * ({@link predictLatency}). `evaluate` is called once per distinct sub-network, at most
 * `population x generations` times, however large the space.
 *
 * - `evolutionary` (default): candidates over budget are repaired (random choices shrunk until
 *   they fit) before they are evaluated, so every evaluated point is within budget.
 * - `greedy`: from the largest sub-network, shrink step by step the choice that loses the least
 *   accuracy per cost saved until it fits; it evaluates sub-networks over budget on the way.
 *
 * Throws an `INVALID_OPTION` {@link DynnError} for a budget even the smallest sub-network
 * exceeds (naming its cost), a latency budget without a table, or empty `widths`.
 *
 * @example
 * ```ts
 * const table = await measureLatencyTable(nested, { input: sample, widths: [0.25, 0.5, 0.75, 1] });
 * const { best, front } = await searchSubNetwork(nested, {
 *   evaluate: async (sub) => (await evaluate(nested, validation, { options: subNetworkOptions(sub) })).accuracy,
 *   budget: { latencyMs: 4 },
 *   table,
 *   input: sample,
 *   widths: [0.25, 0.5, 0.75, 1],
 *   depths: [1, 2, 3],
 * });
 * const exported = await applyPass(nested, 'sorted-net.export', best.sub);
 * ```
 */
export async function searchSubNetwork(model: Model, options: SearchOptions): Promise<SearchResult> {
  if (typeof options?.evaluate !== 'function')
    throw invalid(
      "searchSubNetwork: 'evaluate' must be an async function from a sub-network to its accuracy.",
    );
  const budget = checkBudget(options);
  const space = buildSpace(model, options);
  const strategy = options.strategy ?? 'evolutionary';
  if (strategy !== 'evolutionary' && strategy !== 'greedy')
    throw invalid(
      `searchSubNetwork: 'strategy' must be 'evolutionary' or 'greedy', got ${JSON.stringify(strategy)}.`,
    );
  const population = checkInteger(options.population, 16, 2, 'population');
  const generations = checkInteger(options.generations, 10, 1, 'generations');
  const mutationRate = options.mutationRate ?? 0.1;
  if (typeof mutationRate !== 'number' || !(mutationRate >= 0 && mutationRate <= 1))
    throw invalid(`searchSubNetwork: 'mutationRate' must be in [0, 1], got ${JSON.stringify(mutationRate)}.`);
  const choices = genes(space);
  const smallest = decode(
    space,
    choices.map(() => 0),
  );
  const counted = await staticFlops(model, options.input, smallest);
  const costs = new Costs(model, options.input, options.table, budget, counted);
  if (!(await costs.load(smallest)).fits) {
    const latency = costs.latencyMs(smallest);
    const cost = [
      `${(await costs.mflops(smallest)).toPrecision(4)} MFLOPs`,
      ...(latency === undefined ? [] : [`${latency.toPrecision(4)} ms`]),
    ].join(', ');
    throw invalid(
      `searchSubNetwork: the budget (${describeBudget(budget)}) is below the smallest sub-network's cost (${subNetworkKey(smallest)}: ${cost}). Raise the budget, or allow smaller widths, depths or kernels.`,
    );
  }
  const evaluations = new Evaluations(options.evaluate, costs);
  const run: Run = {
    space,
    choices,
    costs,
    evaluations,
    rng: createRng(options.seed ?? 0),
    population,
    generations,
    mutationRate,
    onProgress: options.onProgress,
  };
  if (strategy === 'evolutionary') await evolve(run);
  else await descend(run, population * generations);
  const within: SearchPoint[] = [];
  for (const p of evaluations.points) if ((await costs.load(p.sub)).fits) within.push(p);
  return {
    best: [...within].sort(byAccuracy)[0]!,
    evaluated: evaluations.points,
    front: paretoFront(within, { cost: budget.latencyMs !== undefined ? 'latencyMs' : 'mflops' }),
  };
}
