import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';

it('dynn demo sparse-attention --quick trains, decodes in a session as by recomputing, and reports attention FLOPs', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-demo-sparse-attention-'));
  try {
    const run = await runDynn(['demo', 'sparse-attention', '--quick', '--no-progress', '--out', out]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/trained 8 steps on Austen \(\d+ s\): \d\.\d\d bits per character/);
    expect(run.out).toContain('recomputing the prefix for every character: the same text');
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    expect(result.lengths.map((l: { length: number }) => l.length)).toEqual([256, 1024]);
    for (const l of result.lengths) expect(l.attentionFlops).toBeLessThan(l.denseAttentionFlops);
    // Longer text: a smaller share of dense attention's quadratic FLOPs.
    const share = result.lengths.map(
      (l: { attentionFlops: number; denseAttentionFlops: number }) =>
        l.attentionFlops / l.denseAttentionFlops,
    );
    expect(share[1]).toBeLessThan(share[0]);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);

it('dynn bench sparse-attention --quick --json writes the envelope with the sweep and the quality fields', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-bench-sparse-attention-'));
  try {
    const run = await runDynn(['bench', 'sparse-attention', '--quick', '--json', '--out', out]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    const envelope = JSON.parse(run.out);
    const rows = envelope.results as {
      n: number;
      pattern: string;
      case: string;
      ms: number | null;
      speedup_vs_dense: number | null;
    }[];
    expect(new Set(rows.map((r) => r.n))).toEqual(new Set([128, 256]));
    expect(rows.filter((r) => r.pattern === 'dense').every((r) => r.speedup_vs_dense === 1)).toBe(true);
    for (const key of ['full_bpc', 'local_bpc', 'routing_bpc', 'retrieval_local', 'retrieval_routing']) {
      expect(Number.isFinite(envelope.quality[key])).toBe(true);
    }
    expect(typeof envelope.goals.speed).toBe('boolean');
    expect(await readFile(join(out, 'forward-time.svg'), 'utf8')).toMatch(/^<svg/);
    const refused = await runDynn(['bench', 'sparse-attention', '--parts', 'speed,fast']);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('unknown part fast');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 300_000);
