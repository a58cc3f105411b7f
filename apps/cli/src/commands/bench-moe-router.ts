import {
  createModel,
  createRng,
  createRuntime,
  DynnError,
  decideForTraining,
  forwardForTraining,
  type Graph,
  GraphBuilder,
  linear,
  type Model,
  type Runtime,
  shuffledIndices,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadAusten } from '@dynn/datasets';
import { addMoeLayer, MOE_OP, moeOptions, moeRouter } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import { type BenchHead, measuredOn } from '../bench-envelope.js';
import { loadFashionMnist } from '../fashion-mnist.js';
import { barChartSvg, heatmapSvg } from '../plot.js';
import { progressBar } from '../progress.js';
import { markdownTable, writeReport } from '../report-files.js';
import { spreadOf } from '../spread.js';
import { timeSideBySide } from '../timing.js';
// The text benches' windows, splits and bit counts: every Austen bench measures the same way.
import { bitsOf, spacedTargets, unigramBits, windowsAt } from './bench-early-exit-text.js';

/** Experts of every MoE layer of the bench, and experts per token (top-2 of 8). */
export const MOE_EXPERTS = 8;
/** Experts each token is routed to. */
export const MOE_K = 2;

/** The speed part: one feed-forward block, MoE against its dense baselines. */
export interface MoeSpeedConfig {
  /** Features per token (default 256). */
  dModel: number;
  /** Hidden units of each expert (default 1,024); the dense FFN has `experts x` as many. */
  expertHidden: number;
  /** Tokens per call, one row each (default 256, 1,024 and 4,096). */
  tokens: number[];
  /** Untimed runs of each case before timing (default 1). */
  warmup: number;
  /** Timed runs per case, interleaved; the median is reported (default 5). */
  repeats: number;
}

/** A quality model: an MLP whose feed-forward block is the arm being compared. */
export interface QualityModelConfig {
  /** Width of the token the feed-forward block maps to itself. */
  width: number;
  /** Hidden units of each expert; the dense arms have 2x (equal active) and 8x (equal total). */
  expertHidden: number;
  /** Training steps of each arm. */
  steps: number;
  /** Rows per training step. */
  batchSize: number;
  /** Peak learning rate of Adam (cosine decay to 0), the same for every arm. */
  learningRate: number;
}

/** The Fashion-MNIST model and data. */
export interface ImageQualityConfig extends QualityModelConfig {
  /** Side of the square patches each image is cut into, one token each (must divide 28). */
  patch: number;
  /** Training images batches are drawn from (the first of the 60,000). */
  trainImages: number;
  /** Test images measured (the first of the 10,000). */
  testImages: number;
}

/** The Austen model and data. */
export interface TextQualityConfig extends QualityModelConfig {
  /** Characters of context per window. */
  context: number;
  /** Features of each character's embedding (the window's embeddings are concatenated). */
  embedding: number;
  /** Test windows measured, one next character each, from the last 5% of the text. */
  testWindows: number;
}

/** Options of `dynn bench moe-router`. */
export interface BenchMoeRouterOptions {
  /** The speed part (defaults in {@link MoeSpeedConfig}). */
  speed?: Partial<MoeSpeedConfig>;
  /** Fashion-MNIST (defaults in {@link DEFAULT_IMAGE}). */
  image?: Partial<ImageQualityConfig>;
  /** Austen (defaults in {@link DEFAULT_TEXT}). */
  text?: Partial<TextQualityConfig>;
  /** Seeds of weights and batch order: one trained model per seed and arm (default 1, 2, 3). */
  seeds?: readonly number[];
  /** Weight of the MoE layers' load-balancing loss in training (default 0.01). */
  balanceLoss?: number;
  /** Folder for the SVG plots and `quality-runs.json` (default `reports/moe-router`); the CLI adds `result.json`. */
  out?: string;
  /** Show progress bars (default true). */
  progress?: boolean;
}

/** Defaults of the speed part. */
export const DEFAULT_SPEED: MoeSpeedConfig = {
  dModel: 256,
  expertHidden: 1024,
  tokens: [256, 1024, 4096],
  warmup: 1,
  repeats: 5,
};

/**
 * Defaults of the Fashion-MNIST part: each image is cut into 16 patches of 7x7 pixels, each patch
 * one token of 32 features, then the feed-forward block (experts of 32 hidden units) on every
 * token, then a linear classifier over the 16 tokens. 1,200 steps of 128 images is ~2.6 passes
 * over the 60,000.
 */
export const DEFAULT_IMAGE: ImageQualityConfig = {
  patch: 7,
  width: 32,
  expertHidden: 32,
  steps: 1200,
  batchSize: 128,
  learningRate: 5e-3,
  trainImages: 60_000,
  testImages: 10_000,
};

/**
 * Defaults of the Austen part: a window language model (Bengio et al. 2003) that embeds each of 16
 * characters in 16 features, concatenates them, maps them to one token of 128 features, then the
 * feed-forward block (experts of 64 hidden units) with a residual connection, then the
 * next-character head.
 */
export const DEFAULT_TEXT: TextQualityConfig = {
  width: 128,
  expertHidden: 64,
  context: 16,
  embedding: 16,
  steps: 2000,
  batchSize: 128,
  learningRate: 5e-3,
  testWindows: 8192,
};

/** `--quick`: a smoke-sized run (CI), not a measurement to quote. */
export const QUICK_BENCH_MOE_ROUTER: BenchMoeRouterOptions = {
  speed: { dModel: 32, expertHidden: 32, tokens: [64, 256], warmup: 0, repeats: 1 },
  image: {
    patch: 14,
    width: 16,
    expertHidden: 8,
    steps: 12,
    batchSize: 32,
    trainImages: 1024,
    testImages: 256,
  },
  text: { width: 16, expertHidden: 8, context: 8, embedding: 4, steps: 12, batchSize: 32, testWindows: 256 },
  seeds: [1, 2],
};

/** How a token is computed in the speed part. */
export type SpeedCase = 'forward' | 'train';

/** One token count and case of the speed part. */
export interface SpeedRow {
  /** Tokens per call. */
  tokens: number;
  /** `forward` (inference, output read back) or `train` (one SGD step). */
  case: SpeedCase;
  /** Median milliseconds of the MoE layer (the `moe-router.MoE` op through a dynn model). */
  moe_ms: number;
  /** Median milliseconds of the dense FFN of equal total parameters (a dynn model of `core.Dense`). */
  dense_ms: number;
  /** Median milliseconds of every expert on every token, masked by the same routing (plain tfjs, same weights). */
  masked_ms: number;
  /** `dense_ms / moe_ms`. */
  speedup_vs_dense: number;
  /** `masked_ms / moe_ms`. */
  speedup_vs_masked: number;
}

/** The three feed-forward blocks compared for quality. */
export type QualityArm = 'moe' | 'dense_active' | 'dense_total';

/** The arms in the order every report lists them. */
export const QUALITY_ARMS: readonly QualityArm[] = ['moe', 'dense_active', 'dense_total'];

/** The data sets of the quality part. */
export type QualityData = 'fashion-mnist' | 'austen';

/** One data set and arm over the seeds. */
export interface QualityRow {
  /** The data set. */
  data: QualityData;
  /** The feed-forward block. */
  model: QualityArm;
  /** `accuracy` (Fashion-MNIST test images, higher is better) or `bpc` (Austen, bits per character, lower is better). */
  metric: 'accuracy' | 'bpc';
  /** Mean over the seeds. */
  mean: number;
  /** Sample standard deviation over the seeds (0 for one seed). */
  std: number;
}

/** One trained model. */
export interface QualityRun {
  /** The data set. */
  data: QualityData;
  /** The feed-forward block. */
  model: QualityArm;
  /** Seed of its weights and batches. */
  seed: number;
  /** Test accuracy or bits per character. */
  value: number;
  /** Wall-clock seconds of its training steps. */
  train_seconds: number;
}

/** Where the trained Fashion-MNIST MoE sends the tokens (image patches) of the test images. */
export interface ExpertLoad {
  /** The data set measured. */
  data: 'fashion-mnist';
  /** The seed of the model measured (the first). */
  seed: number;
  /** Test tokens routed: patches of the test images. */
  tokens: number;
  /** Share of the tokens each expert computed (sums to k = 2 when nothing is dropped). */
  load: number[];
  /** `[i][j]`: share of the tokens routed to both expert i and expert j (the diagonal: to expert i). */
  co_activation: number[][];
}

/** The fields `dynn bench moe-router --json` adds to the bench envelope. */
export interface BenchMoeRouterResult {
  /** The speed part: one row per token count and case. */
  results: SpeedRow[];
  /** The quality part: one row per data set and arm, over the seeds. */
  quality: QualityRow[];
  /** What was measured, and how. */
  setup: {
    speed: MoeSpeedConfig & {
      experts: number;
      k: number;
      /** Hidden units of the dense FFN (experts x expert hidden). */
      dense_hidden: number;
      params: { moe: number; dense: number };
      /** FLOPs per token the compute reports count (the MoE's: router, the two experts' and combining). */
      mflops_per_token: { moe: number; dense: number };
      /** Largest difference between the masked computation's output and the MoE layer's (same weights, same routing). */
      masked_max_diff: number;
      /** What one training step is. */
      train_step: string;
    };
    /** The Fashion-MNIST configuration and each arm's parameter count. */
    image: ImageQualityConfig & { params: Record<QualityArm, number> };
    /**
     * The Austen configuration, each arm's parameter count, the training characters and the
     * unigram reference (test bits per character under the training split's character frequencies).
     */
    text: TextQualityConfig & {
      params: Record<QualityArm, number>;
      train_chars: number;
      unigram_bpc: number;
    };
    /** Experts of every MoE layer. */
    experts: number;
    /** Experts per token. */
    k: number;
    /** Weight of the load-balancing loss in the quality part's training. */
    balance_loss: number;
    /** Seeds of the quality part. */
    seeds: number[];
  };
  /** Every trained model. */
  quality_runs: QualityRun[];
  /** Per-expert load and co-activation of the trained Fashion-MNIST MoE over the test images' tokens. */
  expert_load: ExpertLoad;
  /** The issue's goals, as measured. */
  goals: {
    /** Speed-up over the dense FFN at 1,024 tokens and more. */
    speed: {
      /** The goal, in words. */
      statement: string;
      /** The smallest speed-up over the dense FFN at the goal's token counts; null when none was measured (`--quick`). */
      worst_speedup: number | null;
      /** Whether it held. */
      met: boolean;
    };
    /** The MoE against the dense FFN of equal active compute, in mean over the seeds. */
    quality: {
      /** The goal, in words. */
      statement: string;
      /** Mean test accuracies; met when the MoE's is higher. */
      fashion_mnist: { moe: number; dense_active: number; met: boolean };
      /** Mean bits per character; met when the MoE's is lower. */
      austen: { moe: number; dense_active: number; met: boolean };
      /** Both held. */
      met: boolean;
    };
  };
  /** Wall-clock seconds of the whole bench. */
  seconds: number;
}

/** The result with where its files went. */
export interface BenchMoeRouterRun {
  result: BenchMoeRouterResult;
  /** Absolute folder the report files were written to. */
  reportDir: string;
}

/** The speed-up over the dense FFN the issue asks for at 1,024 tokens and more (FLOP ratio 4). */
export const SPEED_GOAL = 2.5;
/** The token count from which the speed goal applies. */
export const SPEED_GOAL_TOKENS = 1024;

/** The learning rate of the speed part's training step (plain SGD: no optimizer state to time). */
const SPEED_SGD_RATE = 1e-4;

/**
 * Adds a feed-forward block to `b` on `x` (`[..., width]` to `[..., width]`): the MoE layer
 * (`experts` experts of `hidden` units, top-`k`, node `name`), or a dense FFN of `units` hidden
 * units (nodes `<name>/up`, `<name>/down`).
 */
function ffnBlock(
  b: GraphBuilder,
  runtime: Runtime,
  x: string,
  block: { name: string; width: number } & (
    | { kind: 'moe'; hidden: number; balanceLoss: number }
    | { kind: 'dense'; units: number }
  ),
): string {
  if (block.kind === 'moe') {
    return addMoeLayer(b, runtime, x, {
      name: block.name,
      experts: MOE_EXPERTS,
      expert: { hidden: block.hidden },
      router: 'top-k',
      k: MOE_K,
      balanceLoss: block.balanceLoss,
    });
  }
  const up = b.add('core.Dense', x, { units: block.units, activation: 'relu' }, { name: `${block.name}/up` });
  return b.add('core.Dense', up, { units: block.width }, { name: `${block.name}/down` });
}

/** The speed part's two dynn models: the MoE layer alone and the dense FFN of equal total parameters. */
function speedGraphs(
  runtime: Runtime,
  config: MoeSpeedConfig,
  balanceLoss: number,
): { moe: Graph; dense: Graph } {
  const graph = (kind: 'moe' | 'dense') => {
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', config.dModel]);
    const y =
      kind === 'moe'
        ? ffnBlock(b, runtime, x, {
            name: 'moe',
            width: config.dModel,
            kind,
            hidden: config.expertHidden,
            balanceLoss,
          })
        : ffnBlock(b, runtime, x, {
            name: 'ffn',
            width: config.dModel,
            kind,
            units: MOE_EXPERTS * config.expertHidden,
          });
    return b.build({ y });
  };
  return { moe: graph('moe'), dense: graph('dense') };
}

/**
 * Every expert on every token, masked by the routing: the MoE layer's weights stacked into one
 * wide FFN (`up` `[d, experts * hidden]`, `down` `[experts * hidden, d]`), each token's hidden
 * units scaled by its combine weight for their expert (0 for experts it was not routed to), in
 * plain tfjs with the router on the device (top-k, normalised weights: the MoE layer's combine).
 * Its FLOPs are the dense FFN's; its output is the MoE layer's.
 */
class MaskedFfn {
  private readonly router: tf.Variable;
  private readonly up: tf.Variable;
  private readonly upBias: tf.Variable;
  private readonly down: tf.Variable;
  /** The experts' output biases, `[experts, d]`, weighted per token by a matMul. */
  private readonly downBias: tf.Variable;
  readonly variables: tf.Variable[];

  /** Copies of the weights of `moe`, whose MoE node is `node`. */
  constructor(moe: Model, node: string) {
    const p = (name: string) => {
      const v = moe.params.get(`${node}/${name}`);
      if (v === undefined) throw new Error(`the MoE model has no parameter ${node}/${name}`);
      return v;
    };
    const experts = Array.from({ length: MOE_EXPERTS }, (_, e) => `experts/${e}`);
    // A variable holds its own reference to the data: the tensor it starts from is disposed here.
    const variable = (make: () => tf.Tensor) => {
      const initial = tf.tidy(make);
      const v = tf.variable(initial);
      initial.dispose();
      return v;
    };
    this.router = variable(() => tf.clone(p('kernel')));
    this.up = variable(() =>
      tf.concat(
        experts.map((e) => p(`${e}/up/kernel`)),
        1,
      ),
    );
    this.upBias = variable(() => tf.concat(experts.map((e) => p(`${e}/up/bias`))));
    this.down = variable(() =>
      tf.concat(
        experts.map((e) => p(`${e}/down/kernel`)),
        0,
      ),
    );
    this.downBias = variable(() => tf.stack(experts.map((e) => p(`${e}/down/bias`))));
    this.variables = [this.router, this.up, this.upBias, this.down, this.downBias];
  }

  /**
   * Which experts each token is routed to, `[tokens, experts]` (1 where chosen): the router's top
   * k. Data, as the MoE layer's decide step makes it: computed before a taped step, not on it.
   */
  choose(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const { indices } = tf.topk(tf.matMul(x, this.router), MOE_K);
      // int32, then cast: wasm's OneHot gives zeros for a float32 dtype (tfjs 4.22).
      return tf.cast(tf.sum(tf.oneHot(indices, MOE_EXPERTS), 1), 'float32') as tf.Tensor2D;
    });
  }

  /** The combine weights `[tokens, experts]`: router probabilities of the chosen experts, normalised. */
  private weights(x: tf.Tensor2D, chosen: tf.Tensor2D): tf.Tensor2D {
    const masked = tf.mul(tf.softmax(tf.matMul(x, this.router)), chosen);
    return tf.div(masked, tf.sum(masked, 1, true));
  }

  /** Scales each expert's block of hidden units by the token's weight for that expert. */
  private mask(h: tf.Tensor, w: tf.Tensor2D): tf.Tensor2D {
    const [tokens, units] = h.shape as [number, number];
    return tf.reshape(
      tf.mul(
        tf.reshape(h, [tokens, MOE_EXPERTS, units / MOE_EXPERTS]),
        tf.reshape(w, [tokens, MOE_EXPERTS, 1]),
      ),
      [tokens, units],
    );
  }

  /** The output `[tokens, d]` for inference (fused matMul, bias and relu, as dynn's Dense in inference). */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const w = this.weights(x, this.choose(x));
      const h = tf.fused.matMul({ a: x, b: this.up, bias: this.upBias, activation: 'relu' });
      return tf.add(tf.matMul(this.mask(h, w), this.down), tf.matMul(w, this.downBias));
    });
  }

  /**
   * The output under a gradient tape, with dynn's fast gradients (`linear`: explicit transposes,
   * as dynn's Dense in training), the input's gradient included; `chosen` from {@link choose}.
   */
  taped(x: tf.Tensor2D, chosen: tf.Tensor2D): tf.Tensor2D {
    const w = this.weights(x, chosen);
    const h = tf.relu(linear(x, this.up as tf.Tensor2D, this.upBias, true));
    return tf.add(linear(this.mask(h, w), this.down as tf.Tensor2D), tf.matMul(w, this.downBias));
  }

  dispose(): void {
    tf.dispose(this.variables);
  }
}

/**
 * One SGD step of a feed-forward block as it trains inside a network: the decide step (routing,
 * for the MoE), the taped forward with the gradient of the block's input as well as of its
 * weights (a block's input is an earlier layer's output, so its gradient is part of the step),
 * the mean squared error to `target` plus the layer's auxiliary losses, the update, then the
 * loss read back.
 */
async function blockStep(
  model: Model,
  x: tf.Tensor,
  target: tf.Tensor,
  optimizer: tf.Optimizer,
): Promise<void> {
  const feeds = new Map([[model.graph.inputs[0]!.name, x]]);
  const decisions = await decideForTraining(model, feeds, {}, 0);
  const variables = [...model.params.values()];
  const { value, grads } = tf.variableGrads(() => {
    const step = forwardForTraining(model, feeds, {}, 0, { decisions, inputGradients: true });
    tf.dispose([...step.stateUpdates.values()]);
    let loss = tf.losses.meanSquaredError(target, step.outputs.y!) as tf.Scalar;
    for (const aux of step.losses) loss = tf.add(loss, aux.value);
    return loss;
  }, variables);
  optimizer.applyGradients(grads);
  await value.data();
  tf.dispose([value, ...Object.values(grads)]);
}

/** FLOPs per token of one run of `model` on `x`, from its compute report. */
async function flopsPerToken(model: Model, x: tf.Tensor): Promise<number> {
  const { outputs, report } = await model.run(x, { report: true });
  tf.dispose(Object.values(outputs));
  return report!.flops / x.shape[0]!;
}

/** Largest absolute difference between two tensors of one shape. */
async function maxDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const [value] = await d.data();
  d.dispose();
  return value!;
}

/**
 * The speed part: the MoE layer, the dense FFN of equal total parameters and the masked
 * computation (every expert on every token, same weights), timed side by side per token count,
 * forward (inference, output read back) and one training step each.
 */
async function measureSpeed(
  runtime: Runtime,
  config: MoeSpeedConfig,
  balanceLoss: number,
  progress: boolean,
): Promise<{ rows: SpeedRow[]; setup: BenchMoeRouterResult['setup']['speed'] }> {
  const graphs = speedGraphs(runtime, config, balanceLoss);
  const moe = createModel(runtime, graphs.moe, { seed: 1 });
  const dense = createModel(runtime, graphs.dense, { seed: 1 });
  const masked = new MaskedFfn(moe, 'moe');
  const params = { moe: moe.paramCount, dense: dense.paramCount };
  // Plain SGD (no slots), one per arm: every arm updates its own weights the same way.
  const optimizers = [0, 1, 2].map(() => tf.train.sgd(SPEED_SGD_RATE));
  const cases: SpeedCase[] = ['forward', 'train'];
  const bar = progressBar('speed', progress);
  const rows: SpeedRow[] = [];
  let flops = { moe: 0, dense: 0 };
  let maskedDiff = 0;
  try {
    bar.start(config.tokens.length * cases.length, 0, { status: '' });
    for (const [t, tokens] of config.tokens.entries()) {
      const x = tf.randomNormal([tokens, config.dModel], 0, 1, 'float32', 100 + t) as tf.Tensor2D;
      const target = tf.randomNormal([tokens, config.dModel], 0, 1, 'float32', 200 + t);
      try {
        if (t === 0) {
          flops = { moe: await flopsPerToken(moe, x), dense: await flopsPerToken(dense, x) };
          // Same weights and routing: the masked computation gives the MoE layer's output.
          const { outputs } = await moe.run(x, { report: false });
          const reference = masked.forward(x);
          maskedDiff = await maxDiff(outputs.y!, reference);
          tf.dispose([...Object.values(outputs), reference]);
        }
        const forward = (model: Model) => async () => {
          const { outputs } = await model.run(x, { report: false });
          await outputs.y!.data();
          tf.dispose(Object.values(outputs));
        };
        const bodies: Record<SpeedCase, Array<() => Promise<void>>> = {
          forward: [
            forward(moe),
            forward(dense),
            async () => {
              const y = masked.forward(x);
              await y.data();
              y.dispose();
            },
          ],
          train: [
            () => blockStep(moe, x, target, optimizers[0]!),
            () => blockStep(dense, x, target, optimizers[1]!),
            async () => {
              const chosen = masked.choose(x);
              const { value, grads } = tf.variableGrads(
                () => tf.losses.meanSquaredError(target, masked.taped(x, chosen)) as tf.Scalar,
                masked.variables,
              );
              optimizers[2]!.applyGradients(grads);
              await value.data();
              tf.dispose([value, chosen, ...Object.values(grads)]);
            },
          ],
        };
        for (const c of cases) {
          const [moeMs, denseMs, maskedMs] = await timeSideBySide(bodies[c], {
            warmup: config.warmup,
            repeats: config.repeats,
          });
          rows.push({
            tokens,
            case: c,
            moe_ms: moeMs!,
            dense_ms: denseMs!,
            masked_ms: maskedMs!,
            speedup_vs_dense: denseMs! / moeMs!,
            speedup_vs_masked: maskedMs! / moeMs!,
          });
          bar.increment(1, {
            status: `${tokens} tokens, ${c}: ${(denseMs! / moeMs!).toFixed(2)}x the dense FFN`,
          });
        }
      } finally {
        tf.dispose([x, target]);
      }
    }
  } finally {
    bar.stop();
    moe.dispose();
    dense.dispose();
    masked.dispose();
    for (const o of optimizers) o.dispose();
  }
  return {
    rows,
    setup: {
      ...config,
      experts: MOE_EXPERTS,
      k: MOE_K,
      dense_hidden: MOE_EXPERTS * config.expertHidden,
      params,
      mflops_per_token: { moe: flops.moe / 1e6, dense: flops.dense / 1e6 },
      masked_max_diff: maskedDiff,
      train_step:
        'SGD on the mean squared error to a fixed random target (plus the MoE balance loss), with the gradient of ' +
        "the block's input as well as of its weights, as for a block inside a network; the loss read back",
    },
  };
}

/** Hidden units of a dense arm: twice an expert's (equal active compute) or eight times (equal total parameters). */
function denseUnits(arm: Exclude<QualityArm, 'moe'>, expertHidden: number): number {
  return (arm === 'dense_active' ? MOE_K : MOE_EXPERTS) * expertHidden;
}

/**
 * The quality models' common end: a pre-norm feed-forward block on `token` (`[batch, width]` or
 * `[batch, tokens, width]`): a layer norm (`norm`), the arm's feed-forward block (node `ffn`; for
 * the MoE, the `moe-router.MoE` node `ffn`), added back to the token (`residual`); then the tokens
 * of a row concatenated (`flatten`, when there are several) and a linear head (`head`) of
 * `classes` logits.
 */
function ffnHead(
  b: GraphBuilder,
  runtime: Runtime,
  token: string,
  arm: QualityArm,
  config: QualityModelConfig,
  classes: number,
  balanceLoss: number,
): Graph {
  const normed = b.add('core.LayerNorm', token, {}, { name: 'norm' });
  const block =
    arm === 'moe'
      ? ffnBlock(b, runtime, normed, {
          name: 'ffn',
          width: config.width,
          kind: 'moe',
          hidden: config.expertHidden,
          balanceLoss,
        })
      : ffnBlock(b, runtime, normed, {
          name: 'ffn',
          width: config.width,
          kind: 'dense',
          units: denseUnits(arm, config.expertHidden),
        });
  let h = b.add('core.Add', [token, block], {}, { name: 'residual' });
  if (b.info(h).shape.length > 2) h = b.add('core.Flatten', h, {}, { name: 'flatten' });
  return b.build({ logits: b.add('core.Dense', h, { units: classes }, { name: 'head' }) });
}

/**
 * The Fashion-MNIST model of arm `arm`: each image as `(28 / patch)^2` patches of `patch x patch`
 * pixels (`[batch, patches, patch^2]`, see {@link imageBatch}), each patch mapped to one token of
 * `width` features (`token`, relu), the pre-norm feed-forward block on every token, then the
 * 10-way head over the concatenated tokens.
 */
export function imageQualityGraph(
  runtime: Runtime,
  arm: QualityArm,
  config: Pick<ImageQualityConfig, 'patch'> & QualityModelConfig,
  balanceLoss = 0.01,
): Graph {
  const b = new GraphBuilder(runtime);
  const patches = (28 / config.patch) ** 2;
  const pixels = b.input('pixels', 'float32', ['batch', patches, config.patch ** 2]);
  const token = b.add('core.Dense', pixels, { units: config.width, activation: 'relu' }, { name: 'token' });
  return ffnHead(b, runtime, token, arm, config, 10, balanceLoss);
}

/**
 * The Austen model of arm `arm`: a window language model. Each of the window's `context`
 * characters (`[batch, context]` ids) is embedded in `embedding` features (`embed`), the
 * embeddings are concatenated (`window`) and mapped to one token of `width` features (`token`,
 * relu), then the pre-norm feed-forward block and the next-character head.
 */
export function textQualityGraph(
  runtime: Runtime,
  arm: QualityArm,
  config: Pick<TextQualityConfig, 'width' | 'expertHidden' | 'context' | 'embedding'> & QualityModelConfig,
  vocab: number,
  balanceLoss = 0.01,
): Graph {
  const b = new GraphBuilder(runtime);
  const chars = b.input('chars', 'int32', ['batch', config.context]);
  const embedded = b.add(
    'core.Embedding',
    chars,
    { inputDim: vocab, outputDim: config.embedding },
    { name: 'embed' },
  );
  const flat = b.add('core.Flatten', embedded, {}, { name: 'window' });
  const token = b.add('core.Dense', flat, { units: config.width, activation: 'relu' }, { name: 'token' });
  return ffnHead(b, runtime, token, arm, config, vocab, balanceLoss);
}

/**
 * Trains `model` for `steps` steps of sparse cross-entropy (plus the MoE's balance loss), with
 * Adam and a cosine decay of the learning rate to 0, on the batches `batchAt(step)` gives (the
 * caller's tensors, disposed here). Returns the seconds spent.
 */
async function trainSteps(
  model: Model,
  steps: number,
  learningRate: number,
  batchAt: (step: number) => { x: tf.Tensor; y: tf.Tensor },
  onStep: (loss: number) => void,
): Promise<number> {
  const optimizer = tf.train.adam(learningRate);
  const trainer = new Trainer(model, { optimizer, loss: 'sparseCategoricalCrossentropy' });
  const started = performance.now();
  try {
    for (let step = 0; step < steps; step++) {
      trainer.setLearningRate((learningRate / 2) * (1 + Math.cos((Math.PI * step) / steps)));
      const { x, y } = batchAt(step);
      try {
        const { loss } = await trainer.step(x, y, step);
        onStep(loss);
      } finally {
        tf.dispose([x, y]);
      }
      // Let the progress bar redraw (readbacks on wasm resolve as microtasks).
      if (step % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } finally {
    trainer.dispose();
    optimizer.dispose();
  }
  return (performance.now() - started) / 1000;
}

/**
 * Rows `rows` of 28x28 images (0-255 bytes) cut into `patch x patch` patches, row by row of
 * patches, as a `[rows, patches, patch^2]` tensor of pixels in [0, 1], and their labels.
 */
function imageBatch(
  images: Uint8Array,
  labels: Uint8Array,
  rows: ArrayLike<number>,
  patch: number,
): { x: tf.Tensor3D; y: tf.Tensor1D } {
  const grid = 28 / patch;
  const x = new Float32Array(rows.length * 784);
  const y = new Int32Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const image = rows[i]! * 784;
    for (let r = 0; r < 28; r++) {
      for (let c = 0; c < 28; c++) {
        const p = Math.floor(r / patch) * grid + Math.floor(c / patch);
        x[i * 784 + p * patch * patch + (r % patch) * patch + (c % patch)] =
          images[image + r * 28 + c]! / 255;
      }
    }
    y[i] = labels[rows[i]!]!;
  }
  return { x: tf.tensor3d(x, [rows.length, grid * grid, patch * patch]), y: tf.tensor1d(y, 'int32') };
}

/** Expert counts over a test set: tokens per expert and per pair of experts. */
class CoActivation {
  readonly counts: number[][] = Array.from({ length: MOE_EXPERTS }, () =>
    new Array<number>(MOE_EXPERTS).fill(0),
  );
  tokens = 0;

  /** Adds one run's `assignment` (the experts that computed each token). */
  add(assignment: readonly (readonly number[])[]): void {
    for (const experts of assignment) {
      this.tokens++;
      for (const i of experts) for (const j of experts) this.counts[i]![j]! += 1;
    }
  }

  /** Shares of the tokens. */
  result(seed: number): ExpertLoad {
    const share = (n: number) => (this.tokens === 0 ? 0 : n / this.tokens);
    return {
      data: 'fashion-mnist',
      seed,
      tokens: this.tokens,
      load: this.counts.map((row, i) => share(row[i]!)),
      co_activation: this.counts.map((row) => row.map(share)),
    };
  }
}

/** The assignment the MoE node `node` recorded in a run's report. */
function assignmentOf(
  report: { nodes: { name: string; op: string; stats: Record<string, unknown> }[] },
  node: string,
) {
  const entry = report.nodes.find((n) => n.op === MOE_OP && n.name === node);
  const assignment = entry?.stats.assignment;
  if (!Array.isArray(assignment)) throw new Error(`the report has no assignment for the MoE node '${node}'`);
  return assignment as number[][];
}

/** Runs `model` over `count` rows in batches; `measure` reads each batch's logits (and the report). */
async function overBatches(
  model: Model,
  count: number,
  batch: number,
  inputs: (start: number, rows: number) => { x: tf.Tensor; y: tf.Tensor },
  measure: (
    logits: tf.Tensor,
    y: tf.Tensor,
    report: Parameters<typeof assignmentOf>[0] | undefined,
  ) => Promise<void>,
  record: boolean,
): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    const rows = Math.min(batch, count - start);
    const { x, y } = inputs(start, rows);
    try {
      const { outputs, report } = await model.run(x, {
        report: record,
        ...(record ? { options: moeOptions({ recordAssignment: true }) } : {}),
      });
      await measure(outputs.logits!, y, report);
      tf.dispose(Object.values(outputs));
    } finally {
      tf.dispose([x, y]);
    }
  }
}

/** The quality part's arms per data set, trained seed by seed. */
async function measureQuality(
  runtime: Runtime,
  image: ImageQualityConfig,
  text: TextQualityConfig,
  seeds: readonly number[],
  balanceLoss: number,
  progress: boolean,
  log: (line: string) => void,
): Promise<{
  runs: QualityRun[];
  load: ExpertLoad;
  imageParams: Record<QualityArm, number>;
  textParams: Record<QualityArm, number>;
  trainChars: number;
  unigramBpc: number;
}> {
  const fashion = await loadFashionMnist();
  const trainImages = Math.min(image.trainImages, fashion.train.count);
  const testImages = Math.min(image.testImages, fashion.test.count);
  const austen = await loadAusten();
  const ids = austen.ids;
  const vocab = austen.vocab.length;
  // The early-exit text bench's splits: train on the first 90%, test on windows of the last 5%.
  const trainEnd = Math.floor(ids.length * 0.9);
  const testStart = Math.floor(ids.length * 0.95);
  const test = windowsAt(
    ids,
    spacedTargets(testStart, ids.length, text.testWindows, text.context),
    text.context,
  );
  const testLabels = await test.y.data();
  const unigramBpc = unigramBits(ids, trainEnd, vocab, testLabels);
  log(
    `Fashion-MNIST: ${trainImages} training images, ${testImages} test images; Austen: ` +
      `${trainEnd.toLocaleString('en-US')} training characters, ${test.y.shape[0]} test windows of ${text.context}`,
  );
  const runs: QualityRun[] = [];
  const imageParams = {} as Record<QualityArm, number>;
  const textParams = {} as Record<QualityArm, number>;
  const coActivation = new CoActivation();
  const bar = progressBar('quality', progress);
  const total = seeds.length * QUALITY_ARMS.length * (image.steps + text.steps);
  let smoothed = Number.NaN;
  const onStep = (label: string) => (loss: number) => {
    smoothed = Number.isNaN(smoothed) ? loss : 0.95 * smoothed + 0.05 * loss;
    bar.increment(1, { status: `${label} loss ${smoothed.toFixed(3)}` });
  };
  try {
    bar.start(total, 0, { status: '' });
    for (const seed of seeds) {
      for (const arm of QUALITY_ARMS) {
        // Fashion-MNIST: the same batches for every arm of a seed.
        const model = createModel(runtime, imageQualityGraph(runtime, arm, image, balanceLoss), { seed });
        imageParams[arm] = model.paramCount;
        try {
          const rng = createRng(seed);
          let order = shuffledIndices(trainImages, rng);
          let position = 0;
          smoothed = Number.NaN;
          const seconds = await trainSteps(
            model,
            image.steps,
            image.learningRate,
            () => {
              if (position + image.batchSize > trainImages) {
                order = shuffledIndices(trainImages, rng);
                position = 0;
              }
              const rows = order.subarray(position, position + image.batchSize);
              position += image.batchSize;
              return imageBatch(fashion.train.images, fashion.train.labels, rows, image.patch);
            },
            onStep(`seed ${seed} fashion-mnist ${arm}`),
          );
          // The first seed's MoE also records where each test image went.
          const record = arm === 'moe' && seed === seeds[0];
          let correct = 0;
          await overBatches(
            model,
            testImages,
            1000,
            (start, rows) =>
              imageBatch(
                fashion.test.images,
                fashion.test.labels,
                Int32Array.from({ length: rows }, (_, i) => start + i),
                image.patch,
              ),
            async (logits, y, report) => {
              const predicted = tf.argMax(logits, -1);
              const [p, truth] = [await predicted.data(), await y.data()];
              predicted.dispose();
              for (let i = 0; i < p.length; i++) if (p[i] === truth[i]) correct++;
              if (record) coActivation.add(assignmentOf(report!, 'ffn'));
            },
            record,
          );
          const accuracy = correct / testImages;
          runs.push({ data: 'fashion-mnist', model: arm, seed, value: accuracy, train_seconds: seconds });
          log(
            `seed ${seed} fashion-mnist ${arm}: ${(accuracy * 100).toFixed(2)}% (trained in ${seconds.toFixed(0)} s)`,
          );
        } finally {
          model.dispose();
        }
      }
      for (const arm of QUALITY_ARMS) {
        // Austen: random windows of the training split, the same for every arm of a seed.
        const model = createModel(runtime, textQualityGraph(runtime, arm, text, vocab, balanceLoss), {
          seed,
        });
        textParams[arm] = model.paramCount;
        try {
          const rng = createRng(seed);
          smoothed = Number.NaN;
          const seconds = await trainSteps(
            model,
            text.steps,
            text.learningRate,
            () =>
              windowsAt(
                ids,
                Array.from({ length: text.batchSize }, () => text.context + rng.int(trainEnd - text.context)),
                text.context,
              ),
            onStep(`seed ${seed} austen ${arm}`),
          );
          let bits = 0;
          await overBatches(
            model,
            test.y.shape[0],
            1024,
            (start, rows) => ({ x: tf.slice(test.x, start, rows), y: tf.slice(test.y, start, rows) }),
            async (logits, y) => {
              bits += (await bitsOf(logits, y)).bits;
            },
            false,
          );
          const bpc = bits / test.y.shape[0];
          runs.push({ data: 'austen', model: arm, seed, value: bpc, train_seconds: seconds });
          log(`seed ${seed} austen ${arm}: ${bpc.toFixed(3)} bits/char (trained in ${seconds.toFixed(0)} s)`);
        } finally {
          model.dispose();
        }
      }
    }
  } finally {
    bar.stop();
    tf.dispose([test.x, test.y]);
  }
  return {
    runs,
    load: coActivation.result(seeds[0]!),
    imageParams,
    textParams,
    trainChars: trainEnd,
    unigramBpc,
  };
}

/** The mean and standard deviation per data set and arm. */
function summarize(runs: readonly QualityRun[]): QualityRow[] {
  const rows: QualityRow[] = [];
  for (const data of ['fashion-mnist', 'austen'] as const) {
    for (const model of QUALITY_ARMS) {
      const values = runs.filter((r) => r.data === data && r.model === model).map((r) => r.value);
      if (values.length === 0) continue;
      const { mean, std } = spreadOf(values);
      rows.push({ data, model, metric: data === 'austen' ? 'bpc' : 'accuracy', mean, std });
    }
  }
  return rows;
}

/** The issue's goals, judged on the measured rows. */
function judgeGoals(
  results: readonly SpeedRow[],
  quality: readonly QualityRow[],
): BenchMoeRouterResult['goals'] {
  const large = results.filter((r) => r.tokens >= SPEED_GOAL_TOKENS);
  const worst = large.length === 0 ? null : Math.min(...large.map((r) => r.speedup_vs_dense));
  const mean = (data: QualityData, model: QualityArm) =>
    quality.find((q) => q.data === data && q.model === model)?.mean ?? Number.NaN;
  const fashion = { moe: mean('fashion-mnist', 'moe'), dense_active: mean('fashion-mnist', 'dense_active') };
  const austen = { moe: mean('austen', 'moe'), dense_active: mean('austen', 'dense_active') };
  const fashionMet = fashion.moe > fashion.dense_active;
  const austenMet = austen.moe < austen.dense_active;
  return {
    speed: {
      statement:
        `the MoE layer is >= ${SPEED_GOAL}x faster than the dense FFN of equal total parameters at ` +
        `${SPEED_GOAL_TOKENS.toLocaleString('en-US')} tokens and more, forward and training step`,
      worst_speedup: worst,
      met: worst !== null && worst >= SPEED_GOAL,
    },
    quality: {
      statement:
        'the MoE beats the dense FFN of equal active compute in mean over the seeds: higher Fashion-MNIST ' +
        'accuracy and lower Austen bits per character',
      fashion_mnist: { ...fashion, met: fashionMet },
      austen: { ...austen, met: austenMet },
      met: fashionMet && austenMet,
    },
  };
}

/**
 * Mixture of experts on wasm, in one process:
 *
 * - speed: one feed-forward block (d_model 256): the `moe-router.MoE` layer (8 experts of 1,024
 *   hidden units, top-2) against the dense FFN of equal total parameters (d_ff 8,192, dynn
 *   `core.Dense` layers) and against every expert computed on every token then masked by the same
 *   routing (plain tfjs, the same weights), at 256, 1,024 and 4,096 tokens: forward (inference,
 *   output read back) and one SGD training step with the input's gradient, side by side, medians
 *   after warm-up;
 * - quality, 3 seeds: an MLP whose feed-forward block is the MoE (top-2 of 8, balance loss 0.01),
 *   a dense FFN of equal active compute (2 x an expert's hidden units) or of equal total
 *   parameters (8 x), on Fashion-MNIST (test accuracy) and as a window language model on Austen
 *   (bits per character on held-out text), the same batches per seed for every arm.
 *
 * Writes `expert-load.svg` and `co-activation.svg` (the first seed's Fashion-MNIST MoE over the
 * test images' tokens, with the run option `recordAssignment`) and `quality-runs.json`.
 */
export async function runBenchMoeRouter(
  options: BenchMoeRouterOptions = {},
  log: (line: string) => void = () => {},
): Promise<BenchMoeRouterRun> {
  const started = performance.now();
  const speed: MoeSpeedConfig = { ...DEFAULT_SPEED, ...options.speed };
  const image: ImageQualityConfig = { ...DEFAULT_IMAGE, ...options.image };
  const text: TextQualityConfig = { ...DEFAULT_TEXT, ...options.text };
  const seeds = [...(options.seeds ?? [1, 2, 3])];
  const balanceLoss = options.balanceLoss ?? 0.01;
  const progress = options.progress ?? true;
  if (seeds.length === 0) throw new DynnError('INVALID_OPTION', 'seeds must list at least one seed.');
  if (!Number.isInteger(image.patch) || image.patch < 1 || 28 % image.patch !== 0) {
    throw new DynnError(
      'INVALID_OPTION',
      `the patch side must divide 28 (1, 2, 4, 7, 14, 28), got ${image.patch}.`,
    );
  }
  for (const [name, value] of Object.entries({
    'image steps': image.steps,
    'text steps': text.steps,
    repeats: speed.repeats,
  })) {
    if (!Number.isInteger(value) || value < 1) {
      throw new DynnError('INVALID_OPTION', `${name} must be a positive integer, got ${value}.`);
    }
  }
  await useBackend('wasm');
  const runtime = createRuntime({ plugins: [moeRouter()] });

  log(
    `speed: d_model ${speed.dModel}, ${MOE_EXPERTS} experts of ${speed.expertHidden} (top-${MOE_K}) against a dense ` +
      `FFN of ${MOE_EXPERTS * speed.expertHidden} and the masked computation at ${speed.tokens.join(', ')} tokens`,
  );
  const measured = await measureSpeed(runtime, speed, balanceLoss, progress);
  for (const r of measured.rows) {
    log(
      `${r.tokens} tokens ${r.case}: MoE ${r.moe_ms.toFixed(1)} ms, dense ${r.dense_ms.toFixed(1)} ms ` +
        `(${r.speedup_vs_dense.toFixed(2)}x), masked ${r.masked_ms.toFixed(1)} ms (${r.speedup_vs_masked.toFixed(2)}x)`,
    );
  }
  const quality = await measureQuality(runtime, image, text, seeds, balanceLoss, progress, log);
  const summary = summarize(quality.runs);
  const result: BenchMoeRouterResult = {
    results: measured.rows,
    quality: summary,
    setup: {
      speed: measured.setup,
      image: { ...image, params: quality.imageParams },
      text: {
        ...text,
        params: quality.textParams,
        train_chars: quality.trainChars,
        unigram_bpc: quality.unigramBpc,
      },
      experts: MOE_EXPERTS,
      k: MOE_K,
      balance_loss: balanceLoss,
      seeds,
    },
    quality_runs: quality.runs,
    expert_load: quality.load,
    goals: judgeGoals(measured.rows, summary),
    seconds: (performance.now() - started) / 1000,
  };
  const labels = Array.from({ length: MOE_EXPERTS }, (_, e) => `${e}`);
  const loadSvg = await barChartSvg({
    title: `Fashion-MNIST MoE (seed ${quality.load.seed}): share of the ${quality.load.tokens.toLocaleString('en-US')} test tokens per expert`,
    xLabel: 'expert',
    yLabel: 'share of test tokens (image patches)',
    bars: quality.load.load.map((value, e) => ({ label: labels[e]!, value })),
    reference: MOE_K / MOE_EXPERTS,
  });
  const coSvg = await heatmapSvg({
    title: 'Share of test tokens routed to both experts',
    xLabel: 'expert',
    yLabel: 'expert',
    rows: labels,
    columns: labels,
    values: quality.load.co_activation,
  });
  const reportDir = await writeReport(options.out ?? 'reports/moe-router', {
    'expert-load.svg': loadSvg,
    'co-activation.svg': coSvg,
    'quality-runs.json': `${JSON.stringify(quality.runs, null, 2)}\n`,
  });
  return { result, reportDir };
}

const ARM_NAMES: Record<QualityArm, string> = {
  moe: `MoE top-${MOE_K} of ${MOE_EXPERTS}`,
  dense_active: 'dense, equal active',
  dense_total: 'dense, equal total',
};

/** The run as the markdown docs/benchmarks.md shows. */
export function benchMoeRouterMarkdown(run: BenchMoeRouterRun, head: BenchHead): string {
  const { result } = run;
  const { setup, goals } = result;
  const s = setup.speed;
  const ms = (v: number) => v.toFixed(v >= 100 ? 0 : 1);
  const speedTable = markdownTable(
    ['tokens', 'case', 'MoE ms', 'dense FFN ms', 'masked ms', 'vs dense', 'vs masked'],
    result.results.map((r) => [
      r.tokens.toLocaleString('en-US'),
      r.case === 'train' ? 'training step' : 'forward',
      ms(r.moe_ms),
      ms(r.dense_ms),
      ms(r.masked_ms),
      `${r.speedup_vs_dense.toFixed(2)}x`,
      `${r.speedup_vs_masked.toFixed(2)}x`,
    ]),
  );
  const cell = (data: QualityData, model: QualityArm) => {
    const q = result.quality.find((r) => r.data === data && r.model === model);
    if (q === undefined) return '';
    return q.metric === 'accuracy'
      ? `${(q.mean * 100).toFixed(2)}% ± ${(q.std * 100).toFixed(2)}`
      : `${q.mean.toFixed(3)} ± ${q.std.toFixed(3)}`;
  };
  const params = (p: Record<QualityArm, number>) =>
    QUALITY_ARMS.map((a) => p[a].toLocaleString('en-US')).join(' / ');
  const qualityTable = markdownTable(
    ['data', 'metric', ...QUALITY_ARMS.map((a) => ARM_NAMES[a])],
    [
      ['Fashion-MNIST', 'test accuracy', ...QUALITY_ARMS.map((a) => cell('fashion-mnist', a))],
      ['Austen', 'bits / char (lower is better)', ...QUALITY_ARMS.map((a) => cell('austen', a))],
    ],
  );
  const trainSeconds = (data: QualityData, model: QualityArm) => {
    const runs = result.quality_runs.filter((r) => r.data === data && r.model === model);
    return (runs.reduce((a, r) => a + r.train_seconds, 0) / Math.max(1, runs.length)).toFixed(0);
  };
  const seconds = (data: QualityData) => QUALITY_ARMS.map((a) => trainSeconds(data, a)).join(' / ');
  const load = result.expert_load;
  const met = (m: boolean) => (m ? 'met' : 'not met');
  return [
    `${measuredOn(head)}.`,
    '',
    `Speed: one feed-forward block, d_model ${s.dModel}: the MoE layer (${s.experts} experts of ` +
      `${s.expertHidden.toLocaleString('en-US')} hidden units, top-${s.k}, ${s.params.moe.toLocaleString('en-US')} ` +
      `parameters, ${s.mflops_per_token.moe.toFixed(2)} MFLOPs/token) against the dense FFN of equal total ` +
      `parameters (d_ff ${s.dense_hidden.toLocaleString('en-US')}, ${s.params.dense.toLocaleString('en-US')} ` +
      `parameters, ${s.mflops_per_token.dense.toFixed(2)} MFLOPs/token) and against every expert on every token ` +
      `masked by the same routing (plain tfjs, the same weights; largest output difference ` +
      `${s.masked_max_diff.toExponential(1)}). Forward: inference, output read back. Training step: ${s.train_step}. ` +
      `Medians of ${s.repeats} interleaved runs after ${s.warmup} warm-up.`,
    '',
    speedTable,
    '',
    `Quality, ${setup.seeds.length} seeds (mean ± std): an MLP whose pre-norm feed-forward block (layer norm, ` +
      `block, residual add) is the MoE (top-${setup.k} of ${setup.experts}, balance loss ${setup.balance_loss}), a dense FFN of ` +
      "equal active compute (2x an expert's hidden units) or of equal total parameters (8x), the same batches per " +
      `seed. Fashion-MNIST: each image ${(28 / setup.image.patch) ** 2} tokens (${setup.image.patch}x${setup.image.patch} ` +
      `patches) of ${setup.image.width} features, a linear head over them, experts of ` +
      `${setup.image.expertHidden} hidden units, ${setup.image.steps.toLocaleString('en-US')} steps of ${setup.image.batchSize} ` +
      `(parameters ${params(setup.image.params)}; seconds per training ${seconds('fashion-mnist')}), accuracy on ` +
      `${setup.image.testImages.toLocaleString('en-US')} test images. Austen: a window language model ` +
      `(${setup.text.context} characters embedded in ${setup.text.embedding} features each, one token of ` +
      `${setup.text.width}), experts of ${setup.text.expertHidden}, ${setup.text.steps.toLocaleString('en-US')} steps of ` +
      `${setup.text.batchSize} windows (parameters ${params(setup.text.params)}; seconds per training ` +
      `${seconds('austen')}), bits per character on ${setup.text.testWindows.toLocaleString('en-US')} held-out ` +
      `windows (unigram reference ${setup.text.unigram_bpc.toFixed(3)}).`,
    '',
    qualityTable,
    '',
    `Expert load of the seed-${load.seed} Fashion-MNIST MoE over ${load.tokens.toLocaleString('en-US')} test ` +
      'tokens (share per expert; an even load is ' +
      `${(setup.k / setup.experts).toFixed(3)}): ${load.load.map((v) => v.toFixed(3)).join(', ')} ` +
      '([expert-load.svg](results/moe-router/expert-load.svg), ' +
      '[co-activation.svg](results/moe-router/co-activation.svg)).',
    '',
    `Goals: speed (${met(goals.speed.met)}): ${goals.speed.statement}; worst measured ` +
      `${goals.speed.worst_speedup === null ? 'none (no token count of the goal measured)' : `${goals.speed.worst_speedup.toFixed(2)}x`}. Quality (${met(goals.quality.met)}): ${goals.quality.statement}; ` +
      `Fashion-MNIST ${(goals.quality.fashion_mnist.moe * 100).toFixed(2)}% against ` +
      `${(goals.quality.fashion_mnist.dense_active * 100).toFixed(2)}% (${met(goals.quality.fashion_mnist.met)}), ` +
      `Austen ${goals.quality.austen.moe.toFixed(3)} against ${goals.quality.austen.dense_active.toFixed(3)} bpc ` +
      `(${met(goals.quality.austen.met)}). The whole bench took ${(result.seconds / 60).toFixed(1)} min.`,
  ].join('\n');
}
