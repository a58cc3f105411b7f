import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { benchHead } from '../bench-envelope.js';
import {
  benchKeyValueBottleneckMarkdown,
  CLASS_INCREMENTAL_TASKS,
  QUICK_BENCH_KEY_VALUE_BOTTLENECK,
  runBenchKeyValueBottleneck,
} from './bench-key-value-bottleneck.js';

// In-process: the result does not depend on how the bench is started; the consumer test runs it
// through the installed bin.
it('runBenchKeyValueBottleneck --quick measures both arms task by task and writes its chart', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-kv-'));
  try {
    await useBackend('wasm');
    const before = tf.memory().numTensors;
    const run = await runBenchKeyValueBottleneck({
      ...QUICK_BENCH_KEY_VALUE_BOTTLENECK,
      out,
      progress: false,
    });
    expect(tf.memory().numTensors).toBe(before);
    const { result } = run;
    expect(result.setup).toMatchObject({
      dataset: 'fashion-mnist',
      train_images: 500,
      test_images: 300,
      seeds: [1],
    });
    expect(result.setup.tasks).toEqual(CLASS_INCREMENTAL_TASKS.map((t) => [...t]));
    for (const arm of [result.summary.key_value, result.summary.probe]) {
      expect(arm.final_accuracy.mean).toBeGreaterThan(0);
      expect(arm.final_accuracy.mean).toBeLessThanOrEqual(1);
      expect(arm.forgetting_per_task).toHaveLength(CLASS_INCREMENTAL_TASKS.length - 1);
      expect(Number.isFinite(arm.joint_accuracy.mean)).toBe(true);
    }
    const [seed] = result.runs;
    expect(seed!.result.keyValue.accuracy.map((row) => row.length)).toEqual([1, 2, 3, 4, 5]);
    expect(result.finding.key_value_forgets_less).toBe(
      result.summary.key_value.mean_forgetting.mean < result.summary.probe.mean_forgetting.mean,
    );
    expect(await readFile(join(out, 'seen-accuracy.svg'), 'utf8')).toMatch(/^<svg/);
    const markdown = benchKeyValueBottleneckMarkdown(run, benchHead('moe-router/kv-bottleneck', true));
    expect(markdown).toContain('| key-value bottleneck |');
    expect(markdown).toContain('| fine-tuned linear probe |');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
