import { isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { type EarlyExitRunOptions, exitRunOptions } from './options.js';
import {
  argMax,
  EXIT_KERNELS,
  HALT_BIAS,
  HALT_KERNELS,
  handModel,
  ROWS,
  softmax,
  times,
} from './test-models.js';

const EXIT_NODES = ['exit0', 'exit1', 'exit2'];

/** The learned halting probability of exit k for row `x`. */
function haltOf(x: number[], k: number): number {
  return 1 / (1 + Math.exp(-(x.reduce((s, v, i) => s + v * HALT_KERNELS[k]![i]!, 0) + HALT_BIAS)));
}

/**
 * An independent reference of which exit serves each row (3 = the final layer `b4`), written
 * from the definitions of the criteria.
 */
function expectedExit(x: number[], options: EarlyExitRunOptions): number {
  const threshold = (k: number) =>
    typeof options.thresholds === 'number' ? options.thresholds : options.thresholds![k]!;
  let agreements = 0;
  let previous = -1;
  for (let k = 0; k < 3; k++) {
    const logits = times(x, EXIT_KERNELS[k]!);
    const p = softmax(logits);
    const prediction = argMax(logits);
    agreements = k > 0 && prediction === previous ? agreements + 1 : 0;
    previous = prediction;
    const entropy = -p.reduce((s, v) => s + (v > 0 ? v * Math.log(v) : 0), 0) / Math.log(3);
    const halt = haltOf(x, k);
    const leaves =
      options.criterion === 'maxProb'
        ? Math.max(...p) >= threshold(k)
        : options.criterion === 'entropy'
          ? entropy <= threshold(k)
          : options.criterion === 'patience'
            ? agreements >= options.patience!
            : options.criterion === 'learned' && halt >= threshold(k);
    if (leaves) return k;
  }
  return 3;
}

const criteria: { label: string; options: EarlyExitRunOptions; served: number[] }[] = [
  {
    label: 'max softmax probability',
    options: { criterion: 'maxProb', thresholds: 0.9 },
    served: [0, 1, 3, 0, 1, 3, 3],
  },
  {
    label: 'per-exit max probability',
    options: { criterion: 'maxProb', thresholds: [0.99, 0.9, 0.5] },
    served: [1, 1, 3, 0, 1, 3, 2],
  },
  {
    label: 'normalised entropy',
    options: { criterion: 'entropy', thresholds: 0.3 },
    served: [0, 2, 3, 0, 1, 3, 3],
  },
  { label: 'patience 1', options: { criterion: 'patience', patience: 1 }, served: [1, 1, 1, 3, 1, 1, 3] },
  { label: 'patience 2', options: { criterion: 'patience', patience: 2 }, served: [2, 2, 2, 3, 2, 2, 3] },
  {
    label: 'learned halting',
    options: { criterion: 'learned', thresholds: 0.5 },
    served: [0, 0, 3, 2, 1, 3, 2],
  },
];

describeEachBackend('early exits in a dynamic run', () => {
  guardLeaks();

  for (const { label, options, served } of criteria) {
    it(`retires the right rows: ${label}`, async () => {
      expect(ROWS.map((x) => expectedExit(x, options))).toEqual(served);
      const model = handModel({ halting: true });
      const x = tf.tensor2d(ROWS);
      // Every output is asked for (the default).
      const { outputs, report } = await model.run(x, { options: exitRunOptions(options) });
      // Rows come back in input order, each with the logits of the exit that served it.
      const expected = ROWS.flatMap((row, r) =>
        served[r]! < 3 ? times(row, EXIT_KERNELS[served[r]!]!) : row,
      );
      await expectClose(outputs.logits!, expected, { label: 'logits' });
      // `exit<j>` holds exit j's logits, or those of the earlier exit a row left at.
      for (const j of [0, 1, 2]) {
        const values = ROWS.flatMap((row, r) => times(row, EXIT_KERNELS[Math.min(j, served[r]!)]!));
        await expectClose(outputs[`exit${j}`]!, values, { label: `exit${j}` });
        const halts = ROWS.map((row, r) => haltOf(row, Math.min(j, served[r]!)));
        await expectClose(outputs[`halt${j}`]!, halts, { label: `halt${j}` });
      }
      expect(report!.servedBy.logits).toEqual(served.map((k) => (k < 3 ? EXIT_NODES[k] : 'b4')));
      // Each layer computes only the rows no earlier exit served.
      const remaining = (after: number) => served.filter((k) => k > after).length;
      const rows = Object.fromEntries(report!.nodes.map((n) => [n.name, n.rows]));
      expect(rows).toEqual({
        b1: 7,
        exit0: 7,
        b2: remaining(0),
        exit1: remaining(0),
        b3: remaining(1),
        exit2: remaining(1),
        b4: remaining(2),
      });
      for (const [k, name] of EXIT_NODES.entries()) {
        const node = report!.nodes.find((n) => n.name === name)!;
        if (node.rows > 0) expect(node.stats).toEqual({ exited: served.filter((s) => s === k).length });
      }
      expect(report!.flops).toBeLessThan(report!.fullFlops);
      tf.dispose([x, ...Object.values(outputs)]);
      model.dispose();
    });
  }

  it('retires no row without options, with criterion none, or in training mode', async () => {
    const model = handModel();
    const x = tf.tensor2d(ROWS);
    for (const request of [
      {},
      { options: exitRunOptions({ criterion: 'none' }) },
      { training: true, options: exitRunOptions({ criterion: 'maxProb', thresholds: 0 }) },
    ]) {
      const { outputs, report } = await model.run(x, request);
      await expectClose(outputs.logits!, ROWS.flat());
      expect(report!.flops).toBe(report!.fullFlops);
      expect(report!.servedBy.logits).toEqual(new Array(ROWS.length).fill('b4'));
      tf.dispose(Object.values(outputs));
    }
    x.dispose();
    model.dispose();
  });

  it('answers every output when every row leaves at the first exit', async () => {
    const model = handModel();
    const x = tf.tensor2d(ROWS);
    const { outputs, report } = await model.run(x, {
      options: exitRunOptions({ criterion: 'maxProb', thresholds: 0 }),
    });
    const first = ROWS.flatMap((row) => times(row, EXIT_KERNELS[0]!));
    for (const name of ['logits', 'exit0', 'exit1', 'exit2'])
      await expectClose(outputs[name]!, first, { label: name });
    expect(report!.nodes.filter((n) => n.rows === 0).map((n) => n.name)).toEqual([
      'b2',
      'exit1',
      'b3',
      'exit2',
      'b4',
    ]);
    tf.dispose([x, ...Object.values(outputs)]);
    model.dispose();
  });

  it('rejects bad run options with a typed error naming the field', async () => {
    const model = handModel();
    const x = tf.tensor2d(ROWS);
    const bad: [unknown, RegExp][] = [
      ['fast', /must be an object/],
      [{ criterion: 'fast' }, /'early-exit'\.criterion is "fast"/],
      [{ criterion: 'maxProb' }, /'early-exit'\.thresholds must be a number or a non-empty array/],
      [
        { criterion: 'entropy', thresholds: [0.5, Number.NaN] },
        /'early-exit'\.thresholds\[1\] must be a finite number/,
      ],
      [
        { criterion: 'maxProb', thresholds: [0.99] },
        /'early-exit'\.thresholds has 1 entries, but exit 1 needs one/,
      ],
      [{ criterion: 'patience', patience: 0 }, /'early-exit'\.patience must be an integer >= 1/],
      [{ criterion: 'maxProb', thresholds: 0.5, patience: 2, speed: 1 }, /'early-exit'\.speed is unknown/],
      [
        { criterion: 'learned', thresholds: 0.5 },
        /criterion 'learned' needs a halting head, but exit 'exit0' has none/,
      ],
    ];
    for (const [options, message] of bad) {
      const error = await model.run(x, { options: { 'early-exit': options } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isDynnError(error, 'INVALID_OPTION'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    x.dispose();
    model.dispose();
  });
});
