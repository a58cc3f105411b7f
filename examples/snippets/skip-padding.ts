// Row sets in one small op: padding rows (all zeros) leave the batch at once, so no later layer
// computes them, and the compute report shows it. docs/concepts.md quotes its regions and
// `skip-padding.output.txt`, what `main()` logs; CI runs `main()` on every backend and checks
// the log against that file.
import {
  type BackendName,
  createModel,
  createRuntime,
  defineOp,
  definePlugin,
  GraphBuilder,
  type OpContext,
  type OpResult,
  type RunOptions,
  useBackend,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

// #region op
/** Attributes of `padding.SkipZeroRows`. */
interface SkipZeroRowsAttrs {
  [key: string]: string | number;
  /** The graph output that rows leaving here answer for. */
  output: string;
  /** Width of that output: a leaving row answers a vector of zeros. */
  width: number;
}

/** True when the run asks to skip padding rows: the run option `{ padding: { skip: true } }`. */
function skipRequested(options: RunOptions): boolean {
  return (options.padding as { skip?: boolean } | undefined)?.skip === true;
}

/** Reads back which rows are all zeros: the decision, made before the forward. */
async function zeroRows(x: tf.Tensor): Promise<Int32Array> {
  const magnitude = tf.tidy(() => tf.sum(tf.abs(tf.reshape(x, [x.shape[0]!, -1])), 1));
  const sums = await magnitude.data(); // an async readback: works on WebGL and WebGPU too
  magnitude.dispose();
  return Int32Array.from(sums.keys()).filter((row) => sums[row] === 0);
}

/** Retires the rows the decision named, answering zeros for them. */
function retireRows(ctx: OpContext<SkipZeroRowsAttrs>, x: tf.Tensor, rows: Int32Array): OpResult {
  if (rows.length === 0) return { outputs: [x] };
  const answers = tf.zeros([rows.length, ctx.attrs.width]);
  return { outputs: [x], retire: { rows, outputs: { [ctx.attrs.output]: answers } } };
}

/** Passes its input on; in an inference run that asks for it, all-zero rows leave here. */
export const skipZeroRows = defineOp<SkipZeroRowsAttrs>({
  type: 'padding.SkipZeroRows',
  version: 1,
  description: 'Lets all-zero (padding) rows leave the batch, answering zeros for one graph output.',
  attrs: {
    output: { kind: 'string', doc: 'graph output the leaving rows answer for' },
    width: { kind: 'int', min: 1, doc: 'width of that output' },
  },
  inputs: { min: 1 },
  inferShape: (_, [x]) => [{ shape: x!.shape, dtype: x!.dtype }],
  // The decide step may read values back (async); in training it does not run (every row trains),
  // so the decision is undefined there.
  decide: (ctx, [x]) => (ctx.training || !skipRequested(ctx.options) ? undefined : zeroRows(x!)),
  // The forward is synchronous: gradients are taped synchronously.
  forward: (ctx, [x]) =>
    ctx.decision === undefined ? [x!] : retireRows(ctx, x!, ctx.decision as Int32Array),
  flops: (_, [x]) => 2 * x!.reduce((a, b) => a * b, 1),
});

/** The plugin that provides the op. */
export const padding = () =>
  definePlugin({ name: 'padding-example', domain: 'padding', opset: 1, ops: [skipZeroRows] });
// #endregion op

/** Runs a small classifier on a batch holding padding rows, without and with skipping them. */
export async function main(backend: BackendName = 'wasm', log: (line: string) => void = console.log) {
  await useBackend(backend);
  // #region graph
  const runtime = createRuntime({ plugins: [padding()] });
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 16]);
  const skip = b.add('padding.SkipZeroRows', x, { output: 'logits', width: 4 }, { name: 'skip' });
  const hidden = b.add('core.Dense', skip, { units: 64, activation: 'relu' }, { name: 'hidden' });
  const logits = b.add('core.Dense', hidden, { units: 4 }, { name: 'classifier' });
  const model = createModel(runtime, b.build({ logits }), { seed: 1 });
  // #endregion graph

  // Rows 1 and 3 of 4 are padding.
  const batch = tf.tidy(() =>
    tf.mul(tf.randomNormal([4, 16], 0, 1, 'float32', 5), tf.tensor2d([1, 0, 1, 0], [4, 1])),
  );
  // #region run
  const everyRow = await model.run(batch); // no run option: every row runs through every node
  const skipping = await model.run(batch, { options: { padding: { skip: true } } });
  // #endregion run

  // #region report
  for (const [title, { report }] of [
    ['every row', everyRow],
    ['skipping padding', skipping],
  ] as const) {
    log(`${title}: ${report!.flops} of ${report!.fullFlops} FLOPs`);
    for (const node of report!.nodes)
      log(`  ${node.name} (${node.op}): ${node.rows} rows, ${node.flops} FLOPs`);
    log(`  logits served by: ${report!.servedBy.logits!.join(', ')}`);
  }
  // #endregion report

  const [full, skipped] = await Promise.all([
    everyRow.outputs.logits!.array(),
    skipping.outputs.logits!.array(),
  ]);
  tf.dispose([batch, ...Object.values(everyRow.outputs), ...Object.values(skipping.outputs)]);
  model.dispose();
  return { full: full as number[][], skipped: skipped as number[][] };
}
