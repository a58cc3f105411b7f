// A nested network end to end on the UCI digits (8x8 images, 1,797 of them): a residual CNN
// nested into width knobs and depth-nested blocks, trained once with sorted training (the sandwich
// rule and in-place distillation), batch norm recalibrated per sub-network, every sub-network
// measured (accuracy, FLOPs from the compute report, time), a search within a FLOP budget, and one
// sub-network exported to a plain model that a runtime without the plugin loads. docs/sorted-net.md
// and docs/packages/sorted-net.md quote its regions; examples/sorted-net.node.test.ts runs `main()`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BackendName,
  createModel,
  createRng,
  createRuntime,
  evaluate,
  fit,
  loadModel,
  type Model,
  runPass,
  saveModel,
  shuffledIndices,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import {
  calibrateBatchNorm,
  describeNesting,
  nestModel,
  residualCnnGraph,
  type SubNetwork,
  searchSubNetwork,
  sortedNet,
  sortedObjective,
  sortedWindows,
  subNetworkKey,
  subNetworkOptions,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';

/** Width fractions trained and measured. */
export const WIDTHS = [0.25, 0.5, 1] as const;
/** Residual blocks kept per stage, trained and measured (the network has one per stage). */
export const DEPTHS = [0, 1] as const;

/** One sub-network measured on the test digits. */
export interface SubNetworkRow {
  width: number;
  depth: number;
  /** Fraction of the test digits classified right. */
  accuracy: number;
  /** The same before batch-norm recalibration: with the moving statistics every sub-network shared in training. */
  uncalibratedAccuracy: number;
  /** FLOPs per digit executed, from the compute report, in millions. */
  mflops: number;
  /** Median milliseconds of a batch of every test digit (3 timed runs after one untimed). */
  ms: number;
}

/** What the example measured. */
export interface NestedDigitsResult {
  /** Test digits. */
  testDigits: number;
  /** Every sub-network of {@link WIDTHS} x {@link DEPTHS}, smallest width first. */
  rows: SubNetworkRow[];
  /** The search within a FLOP budget. */
  search: { budgetMflops: number; best: SubNetwork; accuracy: number; mflops: number; evaluated: number };
  /** The exported sub-network against the nested model running it. */
  exported: {
    sub: SubNetwork;
    /** Parameters of the nested model (every sub-network) and of the exported plain model. */
    paramsNested: number;
    paramsExported: number;
    /** Op domains of the exported graph: `core` only. */
    domains: string[];
    /** Largest difference between the saved-and-loaded plain model's logits and the nested run's. */
    maxDifference: number;
  };
}

async function maxAbsDifference(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const [value] = await d.data();
  tf.dispose(d);
  return value!;
}

/** Median milliseconds of `runs` timed runs of `sub` on `x`, after one untimed run. */
async function timeRun(model: Model, x: tf.Tensor, sub: SubNetwork, runs = 3): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const started = performance.now();
    const { outputs } = await model.run(x, { options: subNetworkOptions(sub) });
    await outputs.logits!.data();
    if (i > 0) times.push(performance.now() - started);
    tf.dispose(Object.values(outputs));
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}

/** Trains a nested residual CNN on the digits once and measures, searches and exports its sub-networks. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<NestedDigitsResult> {
  await useBackend(backend);
  const digits = await loadDigits();
  // A seeded shuffle, then 60% training, 20% validation (for the search), 20% test.
  const order = shuffledIndices(digits.count, createRng(7));
  const split = (from: number, to: number) => {
    const { features, labels } = digits.toTensors(order.subarray(from, to));
    const x = tf.reshape(features, [-1, 8, 8, 1]);
    features.dispose();
    return { x, y: labels };
  };
  const [a, b] = [Math.round(digits.count * 0.6), Math.round(digits.count * 0.8)];
  const [train, validation, test] = [split(0, a), split(a, b), split(b, digits.count)];
  const models: Model[] = [];
  const outDir = await mkdtemp(join(tmpdir(), 'dynn-sorted-net-'));
  try {
    // #region nest
    const runtime = createRuntime({ plugins: [sortedNet()] });
    // Two stages (8 then 16 channels), one residual block each, batch norm after every conv.
    const graph = residualCnnGraph(runtime, { size: 8, widths: [8, 16], blocks: 1 });
    const plain = createModel(runtime, graph, { seed: 1 });
    // Width knobs from the channel groups, depth-nested residual blocks; channel counts rounded to
    // multiples of 2. A fresh model has no channel worth more than another: keep their order.
    const nested = await nestModel(plain, { multiple: 2, sort: 'none' });
    const { knobs, stages } = describeNesting(nested.graph);
    log(`knobs: ${knobs.map((k) => `${k.name} (${k.size})`).join(', ')}; stages: ${stages.length}`);
    // #endregion nest
    models.push(plain, nested);

    // #region train
    const optimizer = tf.train.adam(1e-2);
    await fit(nested, train, {
      epochs: 6,
      batchSize: 64,
      optimizer,
      seed: 1,
      // Each step: the largest, the smallest and one random sub-network on the same batch, their
      // gradients accumulated into one update; the smaller ones also learn from the largest's logits.
      windows: sortedWindows({ widths: [...WIDTHS], depths: [...DEPTHS], strategy: 'sandwich', perStep: 3 }),
      loss: sortedObjective({ temperature: 1 }),
    });
    optimizer.dispose();
    // #endregion train

    // #region calibrate
    const grid: SubNetwork[] = WIDTHS.flatMap((width) => DEPTHS.map((depth) => ({ width, depth })));
    // Batch-norm statistics of each sub-network, from training images: a new model whose nested
    // batch norms hold one state variant per sub-network, picked by the run options.
    const calibrated = await calibrateBatchNorm(nested, grid, { x: train.x });
    // #endregion calibrate
    models.push(calibrated);

    // #region measure
    const rows: SubNetworkRow[] = [];
    for (const sub of grid) {
      const options = subNetworkOptions(sub);
      const { accuracy = 0 } = await evaluate(calibrated, test, { options });
      const { outputs, report } = await calibrated.run(test.x, { options, report: true });
      tf.dispose(Object.values(outputs));
      const mflops = report!.flops / test.x.shape[0]! / 1e6;
      rows.push({
        width: sub.width as number,
        depth: sub.depth as number,
        accuracy,
        uncalibratedAccuracy: 0,
        mflops,
        ms: 0,
      });
    }
    // #endregion measure
    // What recalibration changed: the trained model before it, on the same digits.
    for (const [i, sub] of grid.entries()) {
      const { accuracy = 0 } = await evaluate(nested, test, { options: subNetworkOptions(sub) });
      rows[i]!.uncalibratedAccuracy = accuracy;
    }
    // Timed after every sub-network has run once: each keeps its narrowed weights between runs.
    for (const [i, sub] of grid.entries()) rows[i]!.ms = await timeRun(calibrated, test.x, sub);
    log('width  depth  accuracy  (before recalibration)  MFLOPs/digit  ms/batch');
    for (const r of rows) {
      const percent = (v: number) => `${(v * 100).toFixed(1)}%`;
      log(
        `${r.width.toFixed(2).padStart(5)}  ${String(r.depth).padStart(5)}  ${percent(r.accuracy).padStart(8)}  ` +
          `${`(${percent(r.uncalibratedAccuracy)})`.padStart(22)}  ${r.mflops.toFixed(4).padStart(12)}  ${r.ms.toFixed(1).padStart(8)}`,
      );
    }

    // #region search
    // The most accurate sub-network within 0.05 MFLOPs per digit, each knob's width chosen on its
    // own. A candidate's batch norms are recalibrated before it is scored on the validation digits.
    const budgetMflops = 0.05;
    const oneDigit = tf.slice(test.x, 0, 1);
    const found = await searchSubNetwork(nested, {
      budget: { mflops: budgetMflops },
      input: oneDigit,
      widths: [...WIDTHS],
      depths: [...DEPTHS],
      population: 6,
      generations: 3,
      seed: 1,
      evaluate: async (sub) => {
        const candidate = await calibrateBatchNorm(nested, [sub], { x: train.x }, { batches: 2 });
        const { accuracy = 0 } = await evaluate(candidate, validation, { options: subNetworkOptions(sub) });
        candidate.dispose();
        return accuracy;
      },
    });
    oneDigit.dispose();
    log(
      `search within ${budgetMflops} MFLOPs: ${subNetworkKey(found.best.sub)}, validation ` +
        `${(found.best.accuracy * 100).toFixed(1)}% at ${found.best.mflops.toFixed(4)} MFLOPs (${found.evaluated.length} evaluated)`,
    );
    // #endregion search

    // #region export
    // One sub-network as a plain model: skipped blocks gone, dropped channels removed, its own
    // batch-norm statistics folded into the convolutions. A runtime without sorted-net loads it.
    const sub = { width: 0.5, depth: 1 };
    const exported = runPass(runtime, 'sorted-net.export', calibrated, sub);
    const small = createModel(createRuntime(), exported.graph, { weights: exported.weights });
    await saveModel(small, join(outDir, 'digits-w0.5-d1'));
    small.dispose();
    const loaded = await loadModel(createRuntime(), join(outDir, 'digits-w0.5-d1', 'model.json'));
    const { outputs: fromFile } = await loaded.run(test.x);
    const { outputs: fromNested } = await calibrated.run(test.x, { options: subNetworkOptions(sub) });
    // #endregion export
    models.push(loaded);
    const maxDifference = await maxAbsDifference(fromFile.logits!, fromNested.logits!);
    tf.dispose([...Object.values(fromFile), ...Object.values(fromNested)]);
    const domains = [...new Set(loaded.graph.nodes.map((n) => n.op.split('.')[0]!))];
    log(
      `exported ${subNetworkKey(sub)}: ${loaded.paramCount} parameters (nested: ${calibrated.paramCount}), ` +
        `ops from ${domains.join(', ')}; max difference to the nested run ${maxDifference.toExponential(1)}`,
    );
    return {
      testDigits: test.x.shape[0]!,
      rows,
      search: {
        budgetMflops,
        best: found.best.sub,
        accuracy: found.best.accuracy,
        mflops: found.best.mflops,
        evaluated: found.evaluated.length,
      },
      exported: {
        sub,
        paramsNested: calibrated.paramCount,
        paramsExported: loaded.paramCount,
        domains,
        maxDifference,
      },
    };
  } finally {
    for (const m of models) m.dispose();
    tf.dispose([train.x, train.y, validation.x, validation.y, test.x, test.y]);
    await rm(outDir, { recursive: true, force: true });
  }
}
