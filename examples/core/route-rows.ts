// An op that decides per row, in training too: `route.Skip` sends the rows its learned gate opens
// for through a block (a sub-graph) and the others past it, so skipped rows cost nothing there.
// Trained with `Trainer.step` on the UCI digits, it shows the two steps of a training step: the
// decide step reads the gate scores back (async, untaped) and the taped step replays that split
// synchronously under the gradient tape. CI runs `main()` (examples/core.node.test.ts).
//
// Why an op of the example's own rather than `testing.RouteRows` from @dynn/testing: RouteRows
// is a test fixture (two branches, no cost), and a plugin author learns more from seeing every
// part of such an op in one place: `decide` + `decidesInTraining`, `ctx.decision`,
// `ctx.runGraph` on a subset of rows, `ctx.subGraph` in `inferShape`, `ctx.subGraphFlops` in
// `flops`, `ctx.addLoss`, `ctx.record` and `ctx.addCompute`. RouteRows is the same pattern with
// two sub-graphs.
import {
  type BackendName,
  createModel,
  createRuntime,
  defineOp,
  definePlugin,
  GraphBuilder,
  gatherRows,
  linear,
  type SubGraph,
  Trainer,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** Attributes of `route.Skip`. */
type SkipAttrs = {
  /** What the open rows go through: `[rows, d]` in, `[rows, d]` out (added to the input). */
  block: SubGraph;
  /** Weight of the auxiliary loss on the gates' mean opening: the price of compute. */
  cost: number;
};

/** The gate's opening per row, `[rows, 1]`, before the sigmoid. */
const gateScore = (x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) =>
  linear(x, kernel as tf.Tensor2D, bias);

// #region op
/** `route.Skip`: `y = x + p * block(x)` on the rows whose gate `p = sigmoid(x·w + b)` is above 1/2; `y = x` on the others. */
export const skipOp = defineOp<SkipAttrs>({
  type: 'route.Skip',
  version: 1,
  description: 'Sends the rows its learned gate opens for through a block; the others skip it.',
  attrs: {
    block: { kind: 'graph', doc: 'the residual block open rows go through' },
    cost: { kind: 'float', min: 0, default: 0.01, doc: 'weight of the loss on the mean gate opening' },
  },
  inputs: { min: 1 },
  params: (_, [x]) => {
    const d = x!.shape[1] as number;
    return [
      { name: 'kernel', shape: [d, 1], init: { kind: 'glorotUniform', fanIn: d, fanOut: 1 } },
      { name: 'bias', shape: [1], init: { kind: 'zeros' } },
    ];
  },
  inferShape(_, [x], ctx) {
    const block = ctx!.subGraph('block'); // the block's signature, inferred from its own inputs
    const out = block.outputs[0]!;
    if (x!.shape.length !== 2 || typeof x!.shape[1] !== 'number') throw new Error('Skip takes [batch, d]');
    if (block.inputs.length !== 1 || block.outputs.length !== 1 || out.shape[1] !== x!.shape[1]) {
      throw new Error(`the block must map [batch, ${x!.shape[1]}] to [batch, ${x!.shape[1]}]`);
    }
    return [{ shape: x!.shape, dtype: x!.dtype }];
  },
  // The decision needs values on the host, so it is made apart from `forward`: untaped and async.
  // With `decidesInTraining`, a training step makes it in its decide step, before the tape.
  decidesInTraining: true,
  async decide(ctx, [x]): Promise<Int32Array> {
    const score = gateScore(x!, ctx.params.kernel!, ctx.params.bias!);
    const values = await score.data(); // the readback a synchronous forward could not do
    score.dispose();
    const open: number[] = [];
    values.forEach((v, row) => {
      if (v > 0) open.push(row);
    });
    return Int32Array.from(open); // plain data: the taped step replays it
  },
  forward(ctx, [x]) {
    const open = ctx.decision as Int32Array; // from `decide`, in inference and in training alike
    const rows = x!.shape[0]!;
    ctx.record('block', open.length);
    ctx.record('skipped', rows - open.length);
    const gate = tf.tidy(() => tf.sigmoid(gateScore(x!, ctx.params.kernel!, ctx.params.bias!)));
    // The price of compute: pushes gates shut, against the task loss that wants them open. Made
    // outside the tidy below, which would dispose a loss it does not return.
    if (ctx.training)
      ctx.addLoss(tf.tidy(() => tf.mul(tf.mean(gate), ctx.attrs.cost)) as tf.Scalar, 'compute');
    const y = tf.tidy(() => {
      if (open.length === 0) return tf.clone(x!);
      const ids = tf.tensor1d(open, 'int32');
      const picked = gatherRows(x!, ids);
      // The block runs through dynn's interpreter on the open rows only: its nodes appear in the
      // report (with those rows), in the hooks, and under the tape.
      const [h] = ctx.runGraph('block', [picked]);
      // Scaled by the gate's opening, so the task loss reaches the gate's weights.
      const delta = tf.mul(gatherRows(gate, ids), h!);
      // Back in row order: row r adds delta[k] if it is the k-th open row, else a row of zeros.
      const from = new Int32Array(rows);
      open.forEach((row, k) => {
        from[row] = k + 1;
      });
      const padded = tf.concat([tf.zeros([1, delta.shape[1]!]), delta]);
      ctx.addCompute({ bytes: 2 * picked.size * 4 }); // the gather and the scatter back
      return tf.add(x!, gatherRows(padded, tf.tensor1d(from, 'int32')));
    });
    gate.dispose(); // the tape keeps its own copy of what the gradients need
    return [y];
  },
  // The cost on every row, the block's included: what `fullFlops` counts. A run's report counts
  // the block's nodes on the rows they ran instead.
  flops: (_, [x], __, ctx) => 2 * x![0]! * x![1]! + ctx!.subGraphFlops('block', [x!]),
});
// #endregion op

/** The plugin: domain `route`. */
export const routePlugin = () =>
  definePlugin({ name: 'route-example', domain: 'route', opset: 1, ops: [skipOp] });

/** What one training step did with the batch. */
export interface StepSplit {
  /** Rows the gate sent through the block. */
  block: number;
  /** Rows that skipped it. */
  skipped: number;
  /** Rows the block's first node computed, from the report. */
  blockRows: number;
  /** The step's loss. */
  loss: number;
}

/** What the example measured. */
export interface RouteRowsResult {
  /** Per training step, the split of the batch. */
  steps: StepSplit[];
  /** Test digits through the block, and skipping it. */
  test: { block: number; skipped: number };
  /** FLOPs the test run executed, and had every digit gone through the block. */
  flops: number;
  fullFlops: number;
}

/** Trains an MLP with a skippable block on 300 digits for a few steps, then runs it on 297 others. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<RouteRowsResult> {
  await useBackend(backend);
  const runtime = createRuntime({ plugins: [routePlugin()] });
  // #region graph
  const block = new GraphBuilder(runtime);
  const h = block.input('h', 'float32', ['batch', 32]);
  const fc1 = block.add('core.Dense', h, { units: 32, activation: 'relu' }, { name: 'fc1' });
  const fc2 = block.add('core.Dense', fc1, { units: 32 }, { name: 'fc2' });
  const b = new GraphBuilder(runtime);
  const pixels = b.input('pixels', 'float32', ['batch', 64]);
  const stem = b.add('core.Dense', pixels, { units: 32, activation: 'relu' }, { name: 'stem' });
  const skipped = b.add('route.Skip', stem, { block: block.subGraph({ fc2 }), cost: 0.01 }, { name: 'skip' });
  const logits = b.add('core.Dense', skipped, { units: 10 }, { name: 'classifier' });
  const model = createModel(runtime, b.build({ logits }), { seed: 1 });
  // #endregion graph

  const digits = await loadDigits();
  const { features, labels } = digits.toTensors();
  const [x, y] = [tf.slice(features, 0, 300), tf.slice(labels, 0, 300)];
  const [testX, testY] = [tf.slice(features, 1500), tf.slice(labels, 1500)];

  // #region train
  // `report: true` gives each step the compute report of its taped forward.
  const optimizer = tf.train.adam(0.03);
  const trainer = new Trainer(model, { optimizer, report: true });
  const steps: StepSplit[] = [];
  for (let step = 0; step < 20; step++) {
    // One batch, every step: the split moves only because the gate learns. Each step first runs
    // the graph untaped up to `skip` to decide (one readback), then the taped step replays it.
    const { loss, report } = await trainer.step(x, y, step);
    const gate = report!.nodes.find((n) => n.name === 'skip')!;
    // The block's nodes report the rows they computed; absent when no row went through.
    const fc1Rows = report!.nodes.find((n) => n.name === 'skip/block/fc1')?.rows ?? 0;
    const split = { block: gate.stats.block as number, skipped: gate.stats.skipped as number };
    steps.push({ ...split, blockRows: fc1Rows, loss });
    log(
      `step ${step + 1}: ${split.block} rows through the block, ${split.skipped} skipped, loss ${loss.toFixed(3)}`,
    );
  }
  // #endregion train

  // #region run
  const { outputs, report } = await model.run(testX);
  const gate = report!.nodes.find((n) => n.name === 'skip')!.stats;
  const right = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(outputs.logits!, -1), testY), 'int32')));
  const correct = (await right.data())[0]!;
  right.dispose();
  log(
    `test: ${gate.block} digits through the block, ${gate.skipped} skipped; ` +
      `${correct} of ${testX.shape[0]} right; ${report!.flops} FLOPs of ${report!.fullFlops} with every row through the block`,
  );
  // #endregion run

  tf.dispose([features, labels, x, y, testX, testY, ...Object.values(outputs)]);
  trainer.dispose();
  optimizer.dispose();
  model.dispose();
  return {
    steps,
    test: { block: gate.block as number, skipped: gate.skipped as number },
    flops: report!.flops,
    fullFlops: report!.fullFlops,
  };
}
