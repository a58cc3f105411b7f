import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { benchHead } from '../bench-envelope.js';
import { spreadOf } from '../spread.js';
import {
  benchSortedNetRobustMarkdown,
  EVAL_PGD_STEPS,
  QUICK_BENCH_SORTED_NET_ROBUST,
  ROBUST_EPSILON,
  ROBUST_STRATEGIES,
  runBenchSortedNetRobust,
} from './bench-sorted-net-robust.js';

it('the robust-students bench (--quick) trains both strategies per seed, measures clean and PGD-10 accuracy and writes its report', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-sorted-net-robust-'));
  try {
    await useBackend('wasm');
    const before = tf.memory().numTensors;
    const lines: string[] = [];
    const run = await runBenchSortedNetRobust(
      { ...QUICK_BENCH_SORTED_NET_ROBUST, out, progress: false },
      (line) => lines.push(line),
    );
    expect(tf.memory().numTensors).toBe(before);
    const { result } = run;
    expect(Object.keys(result)).toEqual(['setup', 'runs', 'summary', 'goal', 'seconds']);
    const seeds = QUICK_BENCH_SORTED_NET_ROBUST.seeds!;
    expect(result.setup).toMatchObject({
      dataset: 'fashion-mnist',
      test_rows: QUICK_BENCH_SORTED_NET_ROBUST.testRows,
      epsilon: ROBUST_EPSILON,
      eval_pgd_steps: EVAL_PGD_STEPS,
      seeds,
      smallest: { width: 0.5, depth: 1 },
      largest: {},
    });
    expect(result.setup.mflops.smallest).toBeLessThan(result.setup.mflops.largest);
    // One trained model per seed and strategy, each measured at both ends.
    expect(result.runs.map((r) => [r.seed, r.strategy])).toEqual(
      seeds.flatMap((seed) => ROBUST_STRATEGIES.map((strategy) => [seed, strategy])),
    );
    for (const r of result.runs) {
      for (const accuracy of [r.smallest.clean, r.smallest.pgd, r.largest.clean, r.largest.pgd]) {
        expect(accuracy).toBeGreaterThanOrEqual(0);
        expect(accuracy).toBeLessThanOrEqual(1);
        // A fraction of the test rows.
        expect(accuracy * result.setup.test_rows).toBeCloseTo(
          Math.round(accuracy * result.setup.test_rows),
          6,
        );
      }
    }
    for (const strategy of ROBUST_STRATEGIES) {
      const mine = result.runs.filter((r) => r.strategy === strategy);
      expect(result.summary[strategy].largest.pgd).toEqual(spreadOf(mine.map((r) => r.largest.pgd)));
      expect(result.summary[strategy].smallest.clean).toEqual(spreadOf(mine.map((r) => r.smallest.clean)));
    }
    const { goal } = result;
    expect(goal.smallest_pgd.progressive).toBe(result.summary.progressive.smallest.pgd.mean);
    expect(goal.largest_pgd.random).toBe(result.summary.random.largest.pgd.mean);
    expect(goal.smallest_pgd.met).toBe(goal.smallest_pgd.progressive >= goal.smallest_pgd.random);
    expect(goal.met).toBe(goal.smallest_pgd.met && goal.largest_pgd.met);
    expect(lines.some((line) => line.includes('seed 1 progressive'))).toBe(true);

    expect(await readFile(join(out, 'accuracy.svg'), 'utf8')).toMatch(/^<svg/);
    expect(JSON.parse(await readFile(join(out, 'runs.json'), 'utf8'))).toEqual(result.runs);
    const markdown = benchSortedNetRobustMarkdown(run, benchHead('sorted-net/robust', true));
    expect(markdown).toContain('smoke run');
    expect(markdown).toContain('| progressive |');
    expect(markdown).toContain(`Goal (progressive >= random`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 300_000);
