import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';

it('dynn demo moe-router --quick trains a top-2-of-8 MoE and reports load, drops and the class heat map', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-demo-moe-router-'));
  try {
    const run = await runDynn([
      'demo',
      'moe-router',
      '--quick',
      '--no-progress',
      '--capacity',
      '0.5',
      '--out',
      out,
    ]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    // Three settings of the same weights: dropless, the capacity asked for, and top-1.
    expect(run.out.match(/^ {2}top-\d, [^:]+: [\d.]+% accuracy/gm)).toHaveLength(3);
    expect(run.out).toContain('  top-2, capacity factor 0.5: ');
    expect(run.out).toMatch(/^per-expert load \(dropless\): ([\d.]+% ){7}[\d.]+%$/m);
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    const [dropless, limited, top1] = result.rows;
    expect([dropless.k, dropless.capacityFactor, limited.capacityFactor, top1.k]).toEqual([2, 0, 0.5, 1]);
    // Dropless drops nothing; half an even share per expert must drop pairs, and saves expert FLOPs.
    expect(dropless.droppedShare).toBe(0);
    expect(limited.droppedShare).toBeGreaterThan(0);
    expect(limited.expertMflops).toBeLessThan(dropless.expertMflops);
    // One expert per image computes half of what two do.
    expect(top1.expertMflops).toBeCloseTo(dropless.expertMflops / 2, 6);
    expect(result.expertShare.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
    // Ten classes, each image counted once per expert it reached.
    expect(result.classLoad).toHaveLength(10);
    const pairs = result.classLoad.flat().reduce((a: number, b: number) => a + b, 0);
    expect(pairs).toBe(2 * result.testImages);
    const svg = await readFile(join(out, 'experts-by-class.svg'), 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('Ankle boot');
    expect(await readFile(join(out, 'README.md'), 'utf8')).toContain('| top-2, dropless |');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);
