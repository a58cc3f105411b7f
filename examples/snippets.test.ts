import { activeBackend, isDynnError } from '@dynn/core';
import { describeEachBackend, expectClose, guardLeaks, inBrowser } from '@dynn/testing';
import { describe, expect, it } from 'vitest';
import { startBackend, startInBrowser } from './snippets/backends.js';
import { digitsInBrowser } from './snippets/datasets.js';
import { layerScaleRuntime } from './snippets/plugins.js';
import { main as skipPadding } from './snippets/skip-padding.js';

// The snippets the docs quote (examples/snippets/), run on every backend so the docs cannot drift
// from the code. Those that read the file system run in examples/snippets.node.test.ts.
describeEachBackend('docs snippets', (backend) => {
  guardLeaks();

  it('concepts: padding rows leave at the skip op with zeros, the others compute as before', async () => {
    const lines: string[] = [];
    const { full, skipped } = await skipPadding(backend, (line) => lines.push(line));
    expect(lines).toContain('  hidden (core.Dense): 2 rows, 4352 FLOPs');
    expect(lines).toContain('  logits served by: classifier, skip, classifier, skip');
    expect(skipped[1]).toEqual([0, 0, 0, 0]);
    expect(skipped[3]).toEqual([0, 0, 0, 0]);
    await expectClose([...skipped[0]!, ...skipped[2]!], [...full[0]!, ...full[2]!]);
  });

  it('plugins: a runtime built from the plugin provides its op and its pass', () => {
    const runtime = layerScaleRuntime();
    expect(runtime.op('layer-scale.Scale').type).toBe('layer-scale.Scale');
    expect(runtime.pass('layer-scale.insert').name).toBe('layer-scale.insert');
  });
});

describe('backends snippet', () => {
  it('starts the first preferred backend that runs here', async () => {
    // Node has no WebGPU or WebGL, so it falls back to wasm; headless Chromium has both.
    const started = inBrowser() ? await startInBrowser() : await startBackend(['webgpu', 'webgl', 'wasm']);
    expect(started).toBe(inBrowser() ? 'webgpu' : 'wasm');
    expect(activeBackend()).toBe(started);
  });

  it.skipIf(inBrowser())('fails with BACKEND_UNAVAILABLE, naming the fix, when none runs', async () => {
    const error = await startBackend(['webgpu', 'webgl']).catch((caught: unknown) => caught);
    expect(isDynnError(error, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain("add 'wasm'");
  });
});

describe.runIf(inBrowser())('datasets snippet in the browser', () => {
  it('loads the digits from the URL serving the data folder', async () => {
    // The vitest browser server serves the repository root.
    const digits = await digitsInBrowser('/packages/datasets/data/');
    expect(digits.count).toBe(1_797);
  });
});
