import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';

it('dynn demo sorted-net --quick trains one nested CNN and reports several sub-networks', async () => {
  const out = await mkdtemp(join(tmpdir(), 'dynn-demo-sorted-net-'));
  try {
    const run = await runDynn(['demo', 'sorted-net', '--quick', '--no-progress', '--out', out]);
    expect(run.err).not.toMatch(/Error/);
    expect(run.code).toBe(0);
    // Six sub-networks: widths 0.25, 0.5 and 1 at depths 0 and 2.
    expect(run.out.match(/^ {2}width [\d.]+, depth \d: /gm)).toHaveLength(6);
    expect(run.out).toContain('exported w0.5-d1 as a plain model');
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    expect(result.rows.map((r: { width: number; depth: number }) => [r.width, r.depth])).toEqual([
      [0.25, 0],
      [0.25, 2],
      [0.5, 0],
      [0.5, 2],
      [1, 0],
      [1, 2],
    ]);
    expect(result.export.paramsExported).toBeLessThan(result.export.paramsNested);
    expect(await readFile(join(out, 'accuracy-vs-flops.svg'), 'utf8')).toMatch(/^<svg/);
    expect(await readFile(join(out, 'README.md'), 'utf8')).toContain('| w0.25 d0 |');
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 120_000);
