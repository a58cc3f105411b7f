// A mixture-of-experts layer end to end on the UCI digits (8x8 images, 1,797 of them): an MLP
// whose middle layer is eight feed-forward experts, each digit routed to two of them (top-2),
// trained with `fit` and a load-balancing loss, then run with its compute report: how many digits
// each expert computed, the FLOPs the experts really executed against all eight on every digit,
// the test accuracy, and what an inference capacity limit or another `k` changes, per call.
// docs/moe-router.md and docs/packages/moe-router.md quote its regions;
// examples/moe-router.node.test.ts runs `main()`.
import {
  type BackendName,
  createModel,
  createRng,
  createRuntime,
  evaluate,
  fit,
  GraphBuilder,
  type Model,
  type NodeReport,
  shuffledIndices,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import { addMoeLayer, moeOptions, moeRouter } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';

/** Experts in the layer, and experts each digit goes to. */
export const EXPERTS = 8;
export const K = 2;

/** One way of running the trained model, measured on the test digits. */
export interface MoeRow {
  /** What the run options changed. */
  setting: string;
  /** Experts per digit. */
  k: number;
  /** Inference capacity factor; 0: dropless. */
  capacityFactor: number;
  /** Fraction of the test digits classified right. */
  accuracy: number;
  /** Digits each expert computed, over the whole test set in one batch. */
  load: number[];
  /** Digit-expert pairs the capacity dropped. */
  dropped: number;
  /** Digits no expert computed (only the residual path carried them). */
  unrouted: number;
  /** FLOPs per digit the experts executed (the sum over their nodes in the compute report). */
  expertFlops: number;
  /** FLOPs per digit of the whole run. */
  flops: number;
}

/** What the example measured. */
export interface DigitsMoeResult {
  /** Test digits. */
  testDigits: number;
  /** The layer's own settings, then other `k` and capacities chosen per call. */
  rows: MoeRow[];
  /** FLOPs per digit if all eight experts computed every digit. */
  denseExpertFlops: number;
  /** For each class, the expert that computed most of its test digits. */
  topExpertByClass: number[];
  /** The unweighted load-balancing loss of the dropless run (1: perfectly balanced). */
  balanceLoss: number;
}

/** The MoE node's entry and the experts' FLOPs, from a compute report. */
function moeStats(nodes: readonly NodeReport[]): { stats: Record<string, unknown>; expertFlops: number } {
  const stats = nodes.find((n) => n.name === 'moe')!.stats;
  const expertFlops = nodes
    .filter((n) => n.name.startsWith('moe/experts/'))
    .reduce((sum, n) => sum + n.flops, 0);
  return { stats, expertFlops };
}

/** Trains a top-2-of-8 MoE MLP on the digits once and measures it under several run options. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<DigitsMoeResult> {
  await useBackend(backend);
  const digits = await loadDigits();
  // A seeded shuffle, then 80% training, 20% test.
  const order = shuffledIndices(digits.count, createRng(7));
  const cut = Math.round(digits.count * 0.8);
  const split = (from: number, to: number) => {
    const { features, labels } = digits.toTensors(order.subarray(from, to));
    return { x: features, y: labels };
  };
  const [train, test] = [split(0, cut), split(cut, digits.count)];
  let model: Model | undefined;
  try {
    // #region build
    const runtime = createRuntime({ plugins: [moeRouter()] });
    const b = new GraphBuilder(runtime);
    const pixels = b.input('pixels', 'float32', ['batch', 64]);
    const h = b.add('core.Dense', pixels, { units: 32, activation: 'relu' }, { name: 'embed' });
    // Eight feed-forward experts (32 -> 64 -> 32), each digit routed to its top two; in training an
    // expert takes at most 1.25x an even share of the batch's choices, and a small loss keeps the
    // router from sending everything to a few experts.
    const moe = addMoeLayer(b, runtime, h, {
      name: 'moe',
      experts: EXPERTS,
      expert: { hidden: 64 },
      router: 'top-k',
      k: K,
      capacityFactor: 1.25,
      balanceLoss: 0.01,
    });
    // A residual connection: a token no expert computes keeps its embedding.
    const mixed = b.add('core.Add', [h, moe], {}, { name: 'residual' });
    const logits = b.add('core.Dense', mixed, { units: 10 }, { name: 'classifier' });
    model = createModel(runtime, b.build({ logits }), { seed: 1 });
    // #endregion build

    // #region train
    const optimizer = tf.train.adam(1e-2);
    // The balance loss is one of the ops' auxiliary losses: fit adds it to the cross-entropy.
    await fit(model, train, { epochs: 20, batchSize: 64, optimizer, seed: 1 });
    optimizer.dispose();
    // #endregion train

    const testDigits = test.x.shape[0]!;
    const labels = await test.y.data();
    const measure = async (setting: string, k: number, capacityFactor: number): Promise<MoeRow> => {
      const options = moeOptions({ k, capacityFactor });
      const { accuracy = 0 } = await evaluate(model!, test, { options, batchSize: testDigits });
      const { outputs, report } = await model!.run(test.x, { options });
      tf.dispose(Object.values(outputs));
      const { stats, expertFlops } = moeStats(report!.nodes);
      return {
        setting,
        k,
        capacityFactor,
        accuracy,
        load: stats.load as number[],
        dropped: stats.dropped as number,
        unrouted: stats.unrouted as number,
        expertFlops: expertFlops / testDigits,
        flops: report!.flops / testDigits,
      };
    };

    // #region run
    // Inference is dropless by default: every digit reaches its two experts, however unbalanced.
    const { outputs, report } = await model.run(test.x, {
      options: moeOptions({ recordAssignment: true }),
    });
    const stats = report!.nodes.find((n) => n.name === 'moe')!.stats;
    const load = stats.load as number[]; // digits each expert computed
    const assignment = stats.assignment as number[][]; // each digit's experts
    log(`digits per expert: ${load.join(' ')} (${testDigits} digits x ${K} experts each)`);
    // #endregion run
    tf.dispose(Object.values(outputs));

    // Which expert serves each class most.
    const counts = Array.from({ length: 10 }, () => new Array<number>(EXPERTS).fill(0));
    assignment.forEach((experts, t) => {
      for (const e of experts) counts[labels[t]!]![e]!++;
    });
    const topExpertByClass = counts.map((row) => row.indexOf(Math.max(...row)));
    log(`the expert most digits of each class go to: ${topExpertByClass.join(' ')} (classes 0-9)`);

    // #region options
    // Per call, no rebuild: an inference capacity (a full expert drops its latest tokens), fewer
    // experts per token, or every expert on every token.
    const rows = [
      await measure(`top-${K}, dropless (the layer's own)`, K, 0),
      await measure(`top-${K}, capacity factor 1`, K, 1),
      await measure(`top-${K}, capacity factor 0.5`, K, 0.5),
      await measure('top-1, dropless', 1, 0),
      await measure(`all ${EXPERTS} experts`, EXPERTS, 0),
    ];
    // #endregion options
    const denseExpertFlops = rows.at(-1)!.expertFlops;
    log('setting                             accuracy  dropped  unrouted  expert MFLOPs/digit');
    for (const r of rows) {
      log(
        `${r.setting.padEnd(34)}  ${`${(r.accuracy * 100).toFixed(1)}%`.padStart(8)}  ${String(r.dropped).padStart(7)}  ` +
          `${String(r.unrouted).padStart(8)}  ${(r.expertFlops / 1e6).toFixed(4).padStart(19)}`,
      );
    }
    return {
      testDigits,
      rows,
      denseExpertFlops,
      topExpertByClass,
      balanceLoss: stats.balanceLoss as number,
    };
  } finally {
    model?.dispose();
    tf.dispose([train.x, train.y, test.x, test.y]);
  }
}
