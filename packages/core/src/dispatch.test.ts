import { describeEachBackend, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { applyCapacity, capacityFor, type Grouping, groupByIds } from './dispatch.js';
import { createModel } from './model.js';
import { defineOp } from './op.js';
import { gatherRows } from './ops/basic/gather-rows.js';
import { scatterAddRows } from './ops/sparse/scatter-add.js';
import { definePlugin } from './plugin.js';
import { createRuntime } from './runtime.js';
import { Trainer } from './train.js';

/** A grouping as plain arrays, for readable expectations. */
function plain(g: Grouping) {
  return { order: Array.from(g.order), offsets: Array.from(g.offsets), counts: Array.from(g.counts) };
}

describe('groupByIds', () => {
  it('sorts rows by id stably, with offsets and counts; unnamed groups are empty', () => {
    expect(plain(groupByIds(Int32Array.of(2, 0, 2, 3, 0, 2), 5))).toEqual({
      order: [1, 4, 0, 2, 5, 3],
      offsets: [0, 2, 2, 5, 6, 6],
      counts: [2, 0, 3, 1, 0],
    });
  });

  it('handles no rows, no groups and a single group', () => {
    expect(plain(groupByIds(new Int32Array(0), 3))).toEqual({
      order: [],
      offsets: [0, 0, 0, 0],
      counts: [0, 0, 0],
    });
    expect(plain(groupByIds(new Int32Array(0), 0))).toEqual({ order: [], offsets: [0], counts: [] });
    expect(plain(groupByIds(Int32Array.of(0, 0, 0), 1))).toEqual({
      order: [0, 1, 2],
      offsets: [0, 3],
      counts: [3],
    });
  });

  it('names the row of an id out of range and a bad group count', () => {
    expect(() => groupByIds(Int32Array.of(0, 3, 1), 3)).toThrow('groupByIds: row 1 has id 3, outside [0, 3)');
    expect(() => groupByIds(Int32Array.of(0, -1), 3)).toThrow(/row 1 has id -1/);
    expect(() => groupByIds([0, 1.5], 3)).toThrow(/row 1 has id 1.5/);
    expect(() => groupByIds(Int32Array.of(0), -1)).toThrow(
      'numGroups must be a non-negative integer, got -1',
    );
  });
});

describe('applyCapacity', () => {
  // Group 0: rows 1, 4, 6; group 1: rows 0, 2, 3, 5, 7; group 2: empty.
  const ids = Int32Array.of(1, 0, 1, 1, 0, 1, 0, 1);
  const grouping = groupByIds(ids, 3);
  const scores = Float32Array.of(0.1, 0.9, 0.5, 0.7, 0.2, 0.5, 0.9, 0.3);

  it("'position' keeps each group's first rows in row order and drops the later ones", () => {
    const { kept, dropped } = applyCapacity(grouping, 2, 'position');
    expect(plain(kept)).toEqual({ order: [1, 4, 0, 2], offsets: [0, 2, 4, 4], counts: [2, 2, 0] });
    expect(Array.from(dropped)).toEqual([3, 5, 6, 7]);
    // The default policy.
    expect(plain(applyCapacity(grouping, 2).kept)).toEqual(plain(kept));
  });

  it("'score' keeps the highest scores, ties to the lower row, kept rows in row order", () => {
    const { kept, dropped } = applyCapacity(grouping, 2, 'score', scores);
    // Group 0: 0.9 (row 1) and 0.9 (row 6) beat 0.2 (row 4). Group 1: 0.7 (row 3), then 0.5
    // (rows 2 and 5 tie: row 2 wins).
    expect(plain(kept)).toEqual({ order: [1, 6, 2, 3], offsets: [0, 2, 4, 4], counts: [2, 2, 0] });
    expect(Array.from(dropped)).toEqual([0, 4, 5, 7]);
  });

  it('ranks NaN scores below every number', () => {
    const withNaN = Float32Array.of(Number.NaN, -5, 0, Number.NaN, 1, 2, 3, Number.NEGATIVE_INFINITY);
    const { kept, dropped } = applyCapacity(grouping, 3, 'score', withNaN);
    expect(Array.from(kept.order)).toEqual([1, 4, 6, 2, 5, 7]);
    expect(Array.from(dropped)).toEqual([0, 3]);
  });

  it('keeps every row of groups within capacity, drops every row at capacity 0', () => {
    for (const policy of ['position', 'score'] as const) {
      const all = applyCapacity(grouping, 5, policy, scores);
      expect(plain(all.kept)).toEqual(plain(grouping));
      expect(all.dropped).toHaveLength(0);
      const none = applyCapacity(grouping, 0, policy, scores);
      expect(plain(none.kept)).toEqual({ order: [], offsets: [0, 0, 0, 0], counts: [0, 0, 0] });
      expect(Array.from(none.dropped)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    }
  });

  it('does not modify its input and handles an empty grouping', () => {
    const before = plain(grouping);
    applyCapacity(grouping, 1, 'score', scores);
    expect(plain(grouping)).toEqual(before);
    const empty = applyCapacity(groupByIds(new Int32Array(0), 2), 1);
    expect(plain(empty.kept)).toEqual({ order: [], offsets: [0, 0, 0], counts: [0, 0] });
    expect(empty.dropped).toHaveLength(0);
  });

  it('names what is wrong', () => {
    expect(() => applyCapacity(grouping, -1)).toThrow('capacity must be a non-negative integer, got -1');
    expect(() => applyCapacity(grouping, 1.5)).toThrow(/capacity must be a non-negative integer/);
    expect(() => applyCapacity(grouping, 1, 'score')).toThrow(/'score' policy needs scores/);
    expect(() => applyCapacity(grouping, 1, 'score', Float32Array.of(1, 2))).toThrow(
      /row 4 has no score \(2 scores given\)/,
    );
    expect(() => applyCapacity(grouping, 1, 'random' as 'score')).toThrow(/expected 'position' or 'score'/);
    expect(() => applyCapacity({ ...grouping, offsets: Int32Array.of(0, 3) }, 1)).toThrow(
      /ending at order.length/,
    );
  });
});

describe('capacityFor', () => {
  it('is ceil(tokens * factor / groups), without float rounding adding a row', () => {
    expect(capacityFor(64, 8)).toBe(8);
    expect(capacityFor(65, 8)).toBe(9);
    expect(capacityFor(64, 8, 1.25)).toBe(10);
    expect(capacityFor(10, 11, 1.1)).toBe(1);
    expect(capacityFor(3, 10, 0.5)).toBe(1);
    expect(capacityFor(0, 4, 2)).toBe(0);
  });

  it('names a bad argument', () => {
    expect(() => capacityFor(-1, 2)).toThrow('tokens must be a non-negative integer, got -1');
    expect(() => capacityFor(4, 0)).toThrow('groups must be a positive integer, got 0');
    expect(() => capacityFor(4, 2, 0)).toThrow('factor must be a positive number, got 0');
    expect(() => capacityFor(4, 2, Number.NaN)).toThrow(/factor must be a positive number/);
  });
});

/** Attributes of {@link topOneExperts}. */
type ExpertAttrs = { experts: number; units: number; capacityFactor: number };

/** What the decide step of {@link topOneExperts} hands its forward. */
interface ExpertDecision {
  kept: Grouping;
  dropped: Int32Array;
}

/**
 * A top-1 mixture of linear experts: the decide step reads the router's probabilities back,
 * groups rows by their best expert (groupByIds) and caps each expert at capacityFor(batch,
 * experts, factor) rows, keeping the highest-probability ones (applyCapacity 'score'). The
 * forward gathers each expert's rows (gatherRows), applies the expert's weight scaled by the
 * router's probability, and adds the results into the output rows (scatterAddRows); dropped rows
 * give 0.
 */
const topOneExperts = defineOp<ExpertAttrs>({
  type: 'test.TopOneExperts',
  version: 1,
  description: 'A top-1 mixture of linear experts with capacity.',
  attrs: {
    experts: { kind: 'int', min: 1 },
    units: { kind: 'int', min: 1 },
    capacityFactor: { kind: 'float', default: 1.25 },
  },
  inputs: { min: 1 },
  params: (attrs, [x]) => {
    const d = x!.shape[1] as number;
    return [
      {
        name: 'router',
        shape: [d, attrs.experts],
        init: { kind: 'glorotUniform', fanIn: d, fanOut: attrs.experts },
      },
      {
        name: 'kernels',
        shape: [attrs.experts, d, attrs.units],
        init: { kind: 'glorotUniform', fanIn: d, fanOut: attrs.units },
      },
    ];
  },
  inferShape: (attrs, [x]) => [{ shape: [x!.shape[0]!, attrs.units], dtype: 'float32' }],
  decidesInTraining: true,
  async decide(ctx, [x]): Promise<ExpertDecision> {
    const probs = tf.tidy(() => tf.softmax(tf.matMul(x!, ctx.params.router!)));
    const values = await probs.data();
    probs.dispose();
    const { experts } = ctx.attrs;
    const rows = x!.shape[0]!;
    const best = new Int32Array(rows);
    const scores = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      for (let e = 0; e < experts; e++) {
        if (values[r * experts + e]! > scores[r]!) {
          scores[r] = values[r * experts + e]!;
          best[r] = e;
        }
      }
    }
    const capacity = capacityFor(rows, experts, ctx.attrs.capacityFactor);
    return applyCapacity(groupByIds(best, experts), capacity, 'score', scores);
  },
  forward(ctx, [x]) {
    const { kept, dropped } = ctx.decision as ExpertDecision;
    ctx.record('kept', Array.from(kept.counts));
    ctx.record('dropped', dropped.length);
    const { experts, units } = ctx.attrs;
    return [
      tf.tidy(() => {
        const probs = tf.softmax(tf.matMul(x!, ctx.params.router!));
        const d = x!.shape[1]!;
        let out: tf.Tensor = tf.zeros([x!.shape[0]!, units]);
        for (let e = 0; e < experts; e++) {
          const rows = kept.order.subarray(kept.offsets[e]!, kept.offsets[e + 1]!);
          if (rows.length === 0) continue;
          const ids = tf.tensor1d(rows, 'int32');
          const kernel = tf.reshape(tf.slice(ctx.params.kernels!, [e, 0, 0], [1, d, units]), [d, units]);
          const gate = gatherRows(tf.slice(probs, [0, e], [-1, 1]), ids);
          const y = tf.mul(tf.matMul(gatherRows(x!, ids), kernel), gate);
          out = scatterAddRows(out, ids, y);
        }
        return out;
      }),
    ];
  },
  flops: (attrs, [x]) => 2 * x![0]! * x![1]! * (attrs.experts + attrs.units),
});

describeEachBackend('dispatch helpers in a decide step', () => {
  guardLeaks();

  it('train a capacity-limited mixture of experts with Trainer', async () => {
    const runtime = createRuntime({
      plugins: [definePlugin({ name: 'test-experts', domain: 'test', opset: 1, ops: [topOneExperts] })],
    });
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 4]);
    const y = b.add('test.TopOneExperts', x, { experts: 3, units: 2, capacityFactor: 1 }, { name: 'moe' });
    const model = createModel(runtime, b.build({ y }), { seed: 5 });
    const inputs = seededUniform([12, 4], { seed: 1, min: -1, max: 1 });
    const teacher = seededUniform([4, 2], { seed: 2, min: -1, max: 1 });
    const targets = tf.matMul(inputs, teacher);
    const optimizer = tf.train.adam(0.05);
    const trainer = new Trainer(model, { optimizer, loss: 'meanSquaredError', report: true });
    const losses: number[] = [];
    let droppedInAll = 0;
    for (let step = 0; step < 30; step++) {
      const result = await trainer.step(inputs, targets, step);
      losses.push(result.loss);
      // 12 rows over 3 experts at factor 1: at most 4 rows per expert, the rest dropped.
      const { kept, dropped } = result.report!.nodes.find((n) => n.name === 'moe')!.stats as {
        kept: number[];
        dropped: number;
      };
      expect(Math.max(...kept)).toBeLessThanOrEqual(4);
      expect(kept.reduce((a, b) => a + b, 0) + dropped).toBe(12);
      droppedInAll += dropped;
    }
    // The capacity bound: some steps dropped rows, and training still converged.
    expect(droppedInAll).toBeGreaterThan(0);
    expect(losses.at(-1)!, `losses ${losses}`).toBeLessThan(losses[0]! * 0.7);
    optimizer.dispose();
    tf.dispose([inputs, teacher, targets]);
    model.dispose();
  });
});
