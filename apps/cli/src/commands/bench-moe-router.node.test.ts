import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';
import { type BenchMoeRouterResult, QUALITY_ARMS, QUICK_BENCH_MOE_ROUTER } from './bench-moe-router.js';

it('dynn bench moe-router --quick times the MoE layer against both baselines and trains the three arms per seed', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-moe-router-'));
  try {
    const docs = join(out, 'bench.md');
    const run = await runDynn([
      'bench',
      'moe-router',
      '--quick',
      '--json',
      '--out',
      out,
      '--update-docs',
      docs,
    ]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    const envelope = JSON.parse(run.out);
    expect(Object.keys(envelope)).toEqual([
      'bench',
      'backend',
      'date',
      'machine',
      'quick',
      'results',
      'quality',
      'setup',
      'quality_runs',
      'expert_load',
      'goals',
      'seconds',
      'error',
    ]);
    expect(envelope).toMatchObject({ bench: 'moe-router', backend: 'wasm', quick: true, error: null });
    const result = envelope as BenchMoeRouterResult;

    // One row per token count and case, each arm timed.
    const tokens = QUICK_BENCH_MOE_ROUTER.speed!.tokens!;
    expect(result.results.map((r) => [r.tokens, r.case])).toEqual(
      tokens.flatMap((t) => [
        [t, 'forward'],
        [t, 'train'],
      ]),
    );
    for (const r of result.results) {
      expect(Object.keys(r)).toEqual([
        'tokens',
        'case',
        'moe_ms',
        'dense_ms',
        'masked_ms',
        'speedup_vs_dense',
        'speedup_vs_masked',
      ]);
      for (const ms of [r.moe_ms, r.dense_ms, r.masked_ms]) expect(ms).toBeGreaterThan(0);
      expect(r.speedup_vs_dense).toBeCloseTo(r.dense_ms / r.moe_ms, 10);
      expect(r.speedup_vs_masked).toBeCloseTo(r.masked_ms / r.moe_ms, 10);
    }
    const speed = result.setup.speed;
    expect(speed).toMatchObject({ experts: 8, k: 2, dense_hidden: 8 * speed.expertHidden });
    // Equal total parameters, up to the router and the experts' extra output biases.
    const extra = speed.dModel * 8 + 7 * speed.dModel;
    expect(speed.params.moe - speed.params.dense).toBe(extra);
    // The MoE computes about k/experts of the dense FFN's FLOPs (plus its router).
    expect(speed.mflops_per_token.moe).toBeLessThan(speed.mflops_per_token.dense / 2);
    // The masked computation has the MoE layer's weights and routing: the same output.
    expect(speed.masked_max_diff).toBeLessThan(1e-4);

    // Quality: every data set and arm over the seeds, mean and std of the per-seed runs.
    const seeds = QUICK_BENCH_MOE_ROUTER.seeds!;
    expect(result.setup.seeds).toEqual(seeds);
    expect(result.quality.map((q) => [q.data, q.model, q.metric])).toEqual(
      (['fashion-mnist', 'austen'] as const).flatMap((data) =>
        QUALITY_ARMS.map((model) => [data, model, data === 'austen' ? 'bpc' : 'accuracy']),
      ),
    );
    expect(result.quality_runs).toHaveLength(2 * QUALITY_ARMS.length * seeds.length);
    for (const q of result.quality) {
      expect(Object.keys(q)).toEqual(['data', 'model', 'metric', 'mean', 'std']);
      const values = result.quality_runs
        .filter((r) => r.data === q.data && r.model === q.model)
        .map((r) => r.value);
      expect(values).toHaveLength(seeds.length);
      expect(q.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 10);
      expect(q.std).toBeGreaterThanOrEqual(0);
      if (q.metric === 'accuracy') {
        expect(q.mean).toBeGreaterThanOrEqual(0);
        expect(q.mean).toBeLessThanOrEqual(1);
      } else {
        expect(q.mean).toBeGreaterThan(0);
      }
    }
    // Equal active compute: the dense arm's hidden layer is twice an expert's; equal total: eight times.
    const { image } = result.setup;
    expect(image.params.dense_active).toBeLessThan(image.params.moe);
    expect(image.params.dense_total).toBeLessThan(image.params.moe);

    // The trained MoE's load over the test images' tokens (patches): k experts per token, dropless.
    const load = result.expert_load;
    const patch = QUICK_BENCH_MOE_ROUTER.image!.patch!;
    expect(load.tokens).toBe(QUICK_BENCH_MOE_ROUTER.image!.testImages! * (28 / patch) ** 2);
    expect(load.load).toHaveLength(8);
    expect(load.load.reduce((a, b) => a + b, 0)).toBeCloseTo(2, 10);
    expect(load.co_activation.map((row, i) => row[i])).toEqual(load.load);
    for (const [i, row] of load.co_activation.entries()) {
      for (const [j, v] of row.entries()) expect(v).toBe(load.co_activation[j]![i]);
    }

    expect(typeof result.goals.speed.met).toBe('boolean');
    expect(result.goals.quality.met).toBe(
      result.goals.quality.fashion_mnist.met && result.goals.quality.austen.met,
    );

    expect(await readFile(join(out, 'expert-load.svg'), 'utf8')).toMatch(/^<svg/);
    expect(await readFile(join(out, 'co-activation.svg'), 'utf8')).toMatch(/^<svg/);
    expect(JSON.parse(await readFile(join(out, 'quality-runs.json'), 'utf8'))).toEqual(result.quality_runs);
    // The report folder holds the same envelope the command printed.
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8'))).toEqual(envelope);
    const markdown = await readFile(docs, 'utf8');
    expect(markdown).toContain('<!-- bench:moe-router:start -->');
    expect(markdown).toContain('smoke run');
    expect(markdown).toContain('| tokens | case |');
    expect(markdown).toContain('| Fashion-MNIST | test accuracy |');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 300_000);
