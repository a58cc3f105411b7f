// A recurrent network as one `core.Scan` node: the UCI digits read row by row, each 8x8 image a
// sequence of 8 rows of 8 pixels, through a tanh RNN cell, then classified from its last state.
// The cell is a sub-graph (the Scan's `body` attribute), so it is plain data like the rest of the
// graph and trains with `fit` as any other layer; the compute report lists the body's nodes under
// the Scan, with one call per time step. CI runs `main()` (examples/core.node.test.ts).
import {
  type BackendName,
  createModel,
  createRuntime,
  evaluate,
  fit,
  type Graph,
  GraphBuilder,
  type NodeReport,
  type Runtime,
  useBackend,
} from '@dynn/core';
import { loadDigits } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** Units of the recurrent state. */
const HIDDEN = 32;

/** What the example measured. */
export interface ScanRnnResult {
  /** Accuracy on the 297 held-out digits. */
  accuracy: number;
  /** The report's entries: the Scan, its body's nodes (per-step calls summed), the head. */
  nodes: NodeReport[];
  /** FLOPs of the test run, summed over the report's nodes. */
  flops: number;
}

/**
 * The row-by-row RNN: `h0` `[batch, 32]` and `rows` `[batch, time, 8]` in, 10 class `logits` out,
 * through one `core.Scan` node (`rnn`) whose body is a tanh cell (`rnn/body/cell`).
 */
export function rowRnnGraph(runtime: Runtime): Graph {
  // #region body
  // One step: the state and one row in, the next state out. Its inputs are the Scan's inputs
  // in order: the carried values (`h`), then one time slice of each sequence (`row`).
  const body = new GraphBuilder(runtime);
  const h = body.input('h', 'float32', ['batch', HIDDEN]);
  const row = body.input('row', 'float32', ['batch', 8]);
  const joined = body.add('core.Concat', [h, row], {}, { name: 'join' });
  const next = body.add('core.Dense', joined, { units: HIDDEN, activation: 'tanh' }, { name: 'cell' });
  // #endregion body

  // #region graph
  const b = new GraphBuilder(runtime);
  const h0 = b.input('h0', 'float32', ['batch', HIDDEN]); // the initial state, a graph input
  const rows = b.input('rows', 'float32', ['batch', 'time', 8]); // any number of steps
  // One carried value (h), so the Scan's first output is the last state; the body's weights are
  // declared once, as `rnn/body/cell/kernel`, and shared by every step.
  const [last] = b.addMulti('core.Scan', [h0, rows], { body: body.subGraph({ next }) }, { name: 'rnn' });
  const logits = b.add('core.Dense', last!, { units: 10 }, { name: 'classifier' });
  // #endregion graph
  return b.build({ logits });
}

/** The digits as sequences of rows, `{ h0, rows }` by graph input, and their labels, split 1,500 / 297. */
export async function digitRows() {
  const digits = await loadDigits();
  const { features, labels } = digits.toTensors();
  // [n, 64] -> [n, 8 rows (time), 8 pixels]; every sequence starts from a zero state.
  const split = (from: number, count: number) => ({
    x: {
      h0: tf.zeros([count, HIDDEN]),
      rows: tf.tidy(() => tf.reshape(tf.slice(features, from, count), [count, 8, 8])),
    },
    y: tf.slice(labels, from, count),
  });
  const data = { train: split(0, 1500), test: split(1500, digits.count - 1500) };
  tf.dispose([features, labels]);
  return data;
}

/** Trains a row-by-row RNN on 1,500 digits for a few epochs and reports a run on the other 297. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<ScanRnnResult> {
  await useBackend(backend);
  const runtime = createRuntime();
  const model = createModel(runtime, rowRnnGraph(runtime), { seed: 1 });
  const { train, test } = await digitRows();

  // #region train
  // Backpropagation through time happens in one tape: the Scan runs its body per step, taped.
  const optimizer = tf.train.adam(0.02);
  await fit(model, train, { epochs: 15, batchSize: 50, optimizer, seed: 1 });
  const { accuracy } = await evaluate(model, test);
  // #endregion train

  // #region report
  const { outputs, report } = await model.run(test.x);
  log(
    `test accuracy ${(accuracy! * 100).toFixed(1)}%, ${report!.flops} FLOPs for ${report!.batchSize} digits:`,
  );
  for (const node of report!.nodes) {
    // A body node comes after its Scan (`parent`) and ran once per step: `calls` counts the
    // steps, `rows` and `flops` sum over them. The Scan's own entry counts no FLOPs: its body's do.
    const indent = node.parent === undefined ? '  ' : '    ';
    log(`${indent}${node.name} (${node.op}): ${node.calls} calls, ${node.rows} rows, ${node.flops} FLOPs`);
  }
  // #endregion report

  tf.dispose([
    ...Object.values(train.x),
    train.y,
    ...Object.values(test.x),
    test.y,
    ...Object.values(outputs),
  ]);
  optimizer.dispose();
  model.dispose();
  return { accuracy: accuracy!, nodes: report!.nodes, flops: report!.flops };
}
