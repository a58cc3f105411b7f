import { dirname, join, resolve } from 'node:path';
import {
  createModel,
  DynnError,
  type Graph,
  loadModel,
  type Model,
  type RunOptions,
  type Runtime,
  runPass,
  saveModel,
  type WeightedGraph,
} from '@dynn/core';
import {
  type FeedForward,
  findFeedForwards,
  MOEFY_PASS,
  type MoefyMethod,
  type MoefyOptions,
  moeOptions,
  UPCYCLE_PASS,
  type UpcycleOptions,
} from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import { formatFlops } from '../report-files.js';

/** What `dynn moe-router split` is asked for, as the flags give it. */
export interface MoeRouterSplitFlags {
  /** `--experts`: experts per feed-forward block (required). */
  experts?: number;
  /** `--top-k`: experts per token (default 2). */
  topK?: number;
  /** `--method`: how MoEfication groups the neurons (default `cluster`). */
  method?: string;
  /** `--upcycle`: copy each block into the experts (sparse upcycling) instead of splitting it. */
  upcycle?: boolean;
  /** `--node`: the first Dense of each block to split, repeated or comma-separated (default: every block that splits). */
  nodes?: readonly string[];
  /** `--seed`: seed of the clustering, or of the upcycled router (default 0). */
  seed?: number;
}

/** One feed-forward block `dynn moe-router split` turned into a mixture of experts. */
export interface SplitBlock extends FeedForward {
  /** Hidden neurons of each expert. */
  expertHidden: number;
  /** FLOPs per token of the block, measured on the check batch: dense, and the MoE layer at top-k. */
  flopsPerToken: {
    /** The two Denses (and the activation between them). */
    dense: number;
    /** The MoE layer at top-k: router, the experts' nodes on their routed tokens, the weighting. */
    moe: number;
  };
}

/** What `dynn moe-router split` wrote and measured. */
export interface MoeRouterSplitResult {
  /** The `model.json` written. */
  file: string;
  /** The dense model read. */
  source: string;
  /** `moefy` (split the neurons into experts) or `upcycle` (copy the block into every expert). */
  mode: 'moefy' | 'upcycle';
  /** How the neurons were grouped (`moefy` only). */
  method?: MoefyMethod;
  /** Experts per block. */
  experts: number;
  /** Experts per token. */
  topK: number;
  /** The blocks split, in graph order. */
  blocks: SplitBlock[];
  /** Parameter elements: the dense model's, the MoE model's in all, and those one token uses at top-k. */
  params: {
    /** The dense model's. */
    dense: number;
    /** The MoE model's, every expert counted. */
    total: number;
    /** Those a token uses at top-k: the experts it is not routed to left out. */
    active: number;
  };
  /** FLOPs per sample measured on the check batch: the dense model, and the MoE model at top-k. */
  flopsPerSample: {
    /** The dense model. */
    dense: number;
    /** The MoE model at top-k. */
    moe: number;
  };
  /** The largest |MoE output - dense output| with every expert active, on the check batch. */
  maxAbsDifference: number;
  /** Rows of the random check batch. */
  checkRows: number;
}

const CHECK_ROWS = 8;
/** Size given to symbolic dimensions other than the batch (sequence lengths) in the check batch. */
const CHECK_OTHER_DIM = 4;

function badFlag(flag: string, value: unknown, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `${flag} ${String(value)}: ${problem}`);
}

/** The flags checked: experts, top-k, method and seed. */
function readFlags(flags: MoeRouterSplitFlags): {
  experts: number;
  topK: number;
  method: MoefyMethod;
  seed: number;
  nodes: string[];
} {
  const { experts, topK = 2, method = 'cluster', seed = 0 } = flags;
  if (experts === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      'give --experts N, the number of experts per feed-forward block (e.g. --experts 8).',
    );
  }
  if (!Number.isInteger(experts) || experts < 2) {
    throw badFlag('--experts', experts, 'a mixture needs an integer number of experts >= 2.');
  }
  if (!Number.isInteger(topK) || topK < 1 || topK > experts) {
    throw badFlag('--top-k', topK, `experts per token must be an integer from 1 to --experts (${experts}).`);
  }
  if (method !== 'cluster' && method !== 'contiguous') {
    throw badFlag('--method', method, "use 'cluster' (balanced k-means of the neurons) or 'contiguous'.");
  }
  if (flags.upcycle && flags.method !== undefined) {
    throw badFlag(
      '--method',
      method,
      'upcycling copies the whole block into every expert: leave --method out.',
    );
  }
  if (!Number.isInteger(seed)) throw badFlag('--seed', seed, 'the seed must be an integer.');
  const nodes = [
    ...new Set(
      (flags.nodes ?? []).flatMap((n) =>
        n
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      ),
    ),
  ];
  return { experts, topK, method, seed, nodes };
}

/** The names a block is made of. */
const members = (b: FeedForward) => [b.node, b.output, ...(b.activation === undefined ? [] : [b.activation])];

const describeBlock = (b: FeedForward) => `${b.node} (${b.inputSize} -> ${b.hidden} -> ${b.outputSize})`;

/**
 * The blocks to split: those `--node` names (checked by the pass itself when not a block), or
 * every block whose hidden size the experts share evenly (upcycling: every block), overlapping
 * blocks left to the first.
 */
function chooseBlocks(
  runtime: Runtime,
  model: Model,
  file: string,
  nodes: readonly string[],
  experts: number,
  upcycle: boolean,
): FeedForward[] {
  const found = findFeedForwards(runtime, model.graph);
  const chosen: FeedForward[] = [];
  const taken = new Map<string, string>();
  const take = (block: FeedForward) => {
    for (const name of members(block)) taken.set(name, block.node);
    chosen.push(block);
  };
  if (nodes.length > 0) {
    for (const name of nodes) {
      const block = found.find((b) => b.node === name);
      if (block === undefined) {
        // Not a block: the pass says what the node is and what it needs.
        const result = runPass(runtime, upcycle ? UPCYCLE_PASS : MOEFY_PASS, model, { node: name, experts });
        tf.dispose([...result.weights.values()]);
        throw badFlag('--node', name, `${file} has no feed-forward block starting at '${name}'.`);
      }
      const clash = members(block).find((m) => taken.has(m));
      if (clash !== undefined) {
        throw badFlag(
          '--node',
          nodes.join(','),
          `the blocks of '${taken.get(clash)}' and '${name}' share node '${clash}': split one of them.`,
        );
      }
      take(block);
    }
    return chosen;
  }
  for (const block of found) {
    if (!upcycle && block.hidden % experts !== 0) continue;
    if (members(block).some((m) => taken.has(m))) continue;
    take(block);
  }
  if (chosen.length === 0) {
    throw new DynnError(
      'INVALID_GRAPH',
      found.length === 0
        ? `${file} has no feed-forward block to split: a core.Dense with an activation (or followed by a core.Activation) whose output only a second core.Dense reads.`
        : `${file} has no feed-forward block whose hidden neurons ${experts} experts share evenly; its blocks: ` +
            `${found.map(describeBlock).join(', ')}. Give --experts a divisor of a hidden size, or --upcycle.`,
      { file },
    );
  }
  return chosen;
}

/** Seeded random rows for every graph input (zeros for integer and boolean inputs), and the sizes given to symbolic dimensions. */
function checkInputs(graph: Graph): { inputs: Record<string, tf.Tensor>; dims: Map<string, number> } {
  const dims = new Map<string, number>();
  const inputs = Object.fromEntries(
    graph.inputs.map((input, i) => {
      const shape = input.shape.map((d, axis) => {
        if (typeof d === 'number') return d;
        const size = dims.get(d) ?? (axis === 0 ? CHECK_ROWS : CHECK_OTHER_DIM);
        dims.set(d, size);
        return size;
      });
      const tensor =
        input.dtype === 'float32'
          ? tf.randomNormal(shape, 0, 1, 'float32', 17 + i)
          : tf.zeros(shape, input.dtype as tf.DataType);
      return [input.name, tensor];
    }),
  );
  return { inputs, dims };
}

async function run(model: Model, inputs: Record<string, tf.Tensor>, options?: RunOptions) {
  const { outputs, report } = await model.run(inputs, { report: true, ...(options ? { options } : {}) });
  return { outputs, report: report! };
}

/** The largest |a - b| over every output, and the largest |b|. */
async function difference(
  a: Record<string, tf.Tensor>,
  b: Record<string, tf.Tensor>,
): Promise<{ worst: number; scale: number }> {
  let worst = 0;
  let scale = 0;
  for (const name of Object.keys(b)) {
    const [va, vb] = await Promise.all([a[name]!.data(), b[name]!.data()]);
    for (let i = 0; i < vb.length; i++) {
      worst = Math.max(worst, Math.abs(va[i]! - vb[i]!));
      scale = Math.max(scale, Math.abs(vb[i]!));
    }
  }
  return { worst, scale };
}

/**
 * Loads a dense dynn model with `runtime` (which must hold `moeRouter()`), turns its
 * feed-forward blocks into mixture-of-experts layers (MoEfication with the pass
 * `moe-router.moefy`, or sparse upcycling with `moe-router.upcycle`), checks on a random batch
 * that with every expert active the new model computes the dense one, and saves it into
 * `outDir`. Returns what it wrote, with parameters and measured FLOPs, dense and at top-k.
 */
export async function splitModelFile(
  runtime: Runtime,
  source: string,
  outDir: string,
  flags: MoeRouterSplitFlags,
): Promise<MoeRouterSplitResult> {
  const file = resolve(source);
  const out = resolve(outDir);
  const { experts, topK, method, seed, nodes } = readFlags(flags);
  const upcycle = flags.upcycle === true;
  if (out === dirname(file) || out === file) {
    throw badFlag(
      'out-dir',
      outDir,
      `it holds the source model ${file}, which the split would overwrite; give another folder.`,
    );
  }
  const model = await loadModel(runtime, file);
  const made: tf.Tensor[] = [];
  let moe: Model | undefined;
  try {
    const blocks = chooseBlocks(runtime, model, file, nodes, experts, upcycle);
    let current: Model | WeightedGraph = model;
    for (const block of blocks) {
      const next: WeightedGraph = upcycle
        ? runPass<UpcycleOptions>(runtime, UPCYCLE_PASS, current, {
            node: block.node,
            experts,
            k: topK,
            seed,
          })
        : runPass<MoefyOptions>(runtime, MOEFY_PASS, current, {
            node: block.node,
            experts,
            k: topK,
            method,
            seed,
          });
      tf.dispose(made.splice(0));
      made.push(...next.weights.values());
      current = next;
    }
    const split = current as WeightedGraph;
    moe = createModel(runtime, split.graph, { weights: split.weights });
    made.length = 0;

    const { inputs, dims } = checkInputs(model.graph);
    try {
      const dense = await run(model, inputs);
      const all = await run(moe, inputs, moeOptions({ k: experts }));
      const sparse = await run(moe, inputs);
      const { worst, scale } = await difference(all.outputs, dense.outputs);
      tf.dispose([
        ...Object.values(dense.outputs),
        ...Object.values(all.outputs),
        ...Object.values(sparse.outputs),
      ]);
      if (!(worst <= 1e-4 * Math.max(1, scale))) {
        throw new DynnError(
          'INVALID_GRAPH',
          `${file}: with every expert active the split model differs from the dense one by up to ${worst} on a random batch; nothing was saved.`,
          { file },
        );
      }
      const flops = (report: typeof dense.report, names: readonly string[], parent?: string) =>
        report.nodes
          .filter((n) => names.includes(n.name) || (parent !== undefined && n.parent === parent))
          .reduce((sum, n) => sum + n.flops, 0);
      const splitBlocks: SplitBlock[] = blocks.map((block) => {
        const first = model.graph.nodes.find((n) => n.name === block.node)!;
        const inputShape = model.values.get(first.inputs[0]!)!.shape;
        const tokens = inputShape
          .slice(0, -1)
          .reduce<number>((n, d) => n * (typeof d === 'number' ? d : (dims.get(d) ?? 1)), 1);
        // A second Dense with an activation left a core.Activation of its name after the layer.
        const after = moe!.graph.nodes.some((n) => n.name === block.output) ? [block.output] : [];
        return {
          ...block,
          expertHidden: upcycle ? block.hidden : block.hidden / experts,
          flopsPerToken: {
            dense: flops(dense.report, members(block)) / tokens,
            moe: flops(sparse.report, [block.node, ...after], block.node) / tokens,
          },
        };
      });
      let inactive = 0;
      for (const block of blocks) {
        let expertParams = 0;
        for (const [name, v] of moe.params)
          if (name.startsWith(`${block.node}/experts/`)) expertParams += v.size;
        inactive += (expertParams * (experts - topK)) / experts;
      }
      await saveModel(moe, out);
      return {
        file: join(out, 'model.json'),
        source: file,
        mode: upcycle ? 'upcycle' : 'moefy',
        ...(upcycle ? {} : { method }),
        experts,
        topK,
        blocks: splitBlocks,
        params: {
          dense: model.paramCount,
          total: moe.paramCount,
          active: Math.round(moe.paramCount - inactive),
        },
        flopsPerSample: { dense: dense.report.flops / CHECK_ROWS, moe: sparse.report.flops / CHECK_ROWS },
        maxAbsDifference: worst,
        checkRows: CHECK_ROWS,
      };
    } finally {
      tf.dispose(Object.values(inputs));
    }
  } finally {
    tf.dispose(made);
    moe?.dispose();
    model.dispose();
  }
}

/** What `dynn moe-router split` prints. */
export function formatSplitResult(result: MoeRouterSplitResult): string {
  const count = (n: number) => n.toLocaleString('en-US');
  const how = result.mode === 'upcycle' ? 'upcycled' : `MoEfied (${result.method})`;
  return [
    `wrote ${result.file}: ${result.blocks.length} feed-forward block${result.blocks.length === 1 ? '' : 's'} of ${result.source} ${how} into ${result.experts} experts, top-${result.topK}`,
    ...result.blocks.map(
      (b) =>
        `  ${describeBlock(b)}: ${result.experts} experts of ${b.expertHidden} neurons; ` +
        `${formatFlops(b.flopsPerToken.dense)} per token dense -> ${formatFlops(b.flopsPerToken.moe)} at top-${result.topK}`,
    ),
    `  params: ${count(result.params.dense)} dense -> ${count(result.params.total)} in all, ${count(result.params.active)} active per token`,
    `  per sample: ${formatFlops(result.flopsPerSample.dense)} dense -> ${formatFlops(result.flopsPerSample.moe)} at top-${result.topK}`,
    `  every expert active (k = ${result.experts}): max |MoE - dense| = ${result.maxAbsDifference.toExponential(2)} on ${result.checkRows} random rows`,
    '',
  ].join('\n');
}
