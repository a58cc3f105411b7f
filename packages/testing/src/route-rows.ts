import { defineOp, definePlugin, gatherRows, linear, type SubGraph } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Attributes of {@link routeRowsOp}. */
export type RouteRowsAttrs = {
  /** Where rows with a positive gate score go. */
  left: SubGraph;
  /** Where the other rows go. */
  right: SubGraph;
};

/** The rows a {@link routeRowsOp} sends each way: positions in its input, ascending. */
export interface RouteDecision {
  /** Rows with a positive gate score. */
  left: Int32Array;
  /** The other rows. */
  right: Int32Array;
}

/** The gate's score per row, `[rows, 1]`: a linear function of the features (averaged over inner axes). */
function gateScore(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const flat = tf.reshape(x, [-1, x.shape[x.rank - 1]!]);
    const perPosition = tf.reshape(linear(flat, kernel as tf.Tensor2D, bias), [x.shape[0]!, -1]);
    return tf.mean(perPosition, 1, true);
  });
}

/**
 * `testing.RouteRows`: sends each row to one of two sub-graphs by the sign of a learned gate
 * score, and scales each branch's output by the gate's probability for it (so the gate learns).
 * The smallest real user of a data-dependent decision in training and of sub-graphs run on a
 * subset of rows: its decide step reads the scores back, its forward gathers each side's rows,
 * runs the side's sub-graph on them and puts the results back in row order. Both sub-graphs take
 * the op's input and give outputs of one shape.
 *
 * - inputs: `x` `[batch, ..., d]`; output: the branches' output `[batch, ...]`
 * - params: `kernel` `[d, 1]`, `bias` `[1]`, then each branch's, `<node>/left/...`, `<node>/right/...`
 */
export const routeRowsOp = defineOp<RouteRowsAttrs>({
  type: 'testing.RouteRows',
  version: 1,
  description: 'Routes each row to one of two sub-graphs by the sign of a learned gate.',
  attrs: {
    left: { kind: 'graph', doc: 'where rows with a positive gate score go' },
    right: { kind: 'graph', doc: 'where the other rows go' },
  },
  inputs: { min: 1 },
  params: (_, [x]) => {
    const features = x!.shape.at(-1) as number;
    return [
      { name: 'kernel', shape: [features, 1], init: { kind: 'glorotUniform', fanIn: features, fanOut: 1 } },
      { name: 'bias', shape: [1], init: { kind: 'zeros' } },
    ];
  },
  inferShape(_, [x], ctx) {
    if (typeof x!.shape.at(-1) !== 'number') throw new Error('RouteRows needs a known feature size');
    const left = ctx!.subGraph('left');
    const right = ctx!.subGraph('right');
    if (left.inputs.length !== 1 || right.inputs.length !== 1) throw new Error('each branch takes one input');
    const [l, r] = [left.outputs[0]!, right.outputs[0]!];
    if (left.outputs.length !== 1 || right.outputs.length !== 1 || l.shape.join() !== r.shape.join()) {
      throw new Error('both branches must give one output of one shape');
    }
    return [{ shape: l.shape, dtype: l.dtype }];
  },
  decidesInTraining: true,
  async decide(ctx, [x]): Promise<RouteDecision> {
    const score = gateScore(x!, ctx.params.kernel!, ctx.params.bias!);
    const values = await score.data();
    score.dispose();
    const left: number[] = [];
    const right: number[] = [];
    values.forEach((v, row) => {
      (v > 0 ? left : right).push(row);
    });
    return { left: Int32Array.from(left), right: Int32Array.from(right) };
  },
  forward(ctx, [x]) {
    const { left, right } = ctx.decision as RouteDecision;
    ctx.record('left', left.length);
    ctx.record('right', right.length);
    return [
      tf.tidy(() => {
        const gate = tf.sigmoid(gateScore(x!, ctx.params.kernel!, ctx.params.bias!));
        const parts: tf.Tensor[] = [];
        for (const [side, rows] of [
          ['left', left],
          ['right', right],
        ] as const) {
          if (rows.length === 0) continue;
          const ids = tf.tensor1d(rows, 'int32');
          const [y] = ctx.runGraph(side, [gatherRows(x!, ids)]);
          const p = gatherRows(gate, ids);
          const weight = side === 'left' ? p : tf.sub(1, p);
          parts.push(tf.mul(y!, tf.reshape(weight, [rows.length, ...y!.shape.slice(1).map(() => 1)])));
          ctx.addCompute({ bytes: 2 * rows.length * (x!.size / x!.shape[0]!) * 4 });
        }
        // Row r of the output is row `order[r]` of the joined branches.
        const order = new Int32Array(left.length + right.length);
        left.forEach((row, k) => {
          order[row] = k;
        });
        right.forEach((row, k) => {
          order[row] = left.length + k;
        });
        const joined = parts.length === 1 ? parts[0]! : tf.concat(parts);
        return gatherRows(joined, tf.tensor1d(order, 'int32'));
      }),
    ];
  },
  flops(_, [x], __, ctx) {
    const rows = x!.reduce((a, b) => a * b, 1) / x!.at(-1)!;
    // The gate on every position, then every row through both branches (the dense equivalent).
    return 2 * rows * x!.at(-1)! + ctx!.subGraphFlops('left', [x!]) + ctx!.subGraphFlops('right', [x!]);
  },
});

/** The plugin of {@link routeRowsOp}: domain `testing`. */
export const routingPlugin = definePlugin({
  name: '@dynn/testing',
  domain: 'testing',
  opset: 1,
  ops: [routeRowsOp],
});
