import { readFileSync } from 'node:fs';
import { createRuntime, useBackend, validateGraph } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { digitsInNode } from './snippets/datasets.js';
import { main as earlyExit } from './snippets/early-exit.js';
import { fashionMnistInNode } from './snippets/fashion-mnist.js';
import { main as gettingStarted } from './snippets/getting-started.js';
import { tinyGraphJson } from './snippets/graph-as-data.js';
import { main as skipPadding } from './snippets/skip-padding.js';

// The snippets the docs quote that read files (the bundled data sets, the outputs the docs show),
// in Node, on the backends Node has.
const snippetFile = (name: string) => readFileSync(new URL(`./snippets/${name}`, import.meta.url), 'utf8');

describe('docs outputs agree with the code that makes them', () => {
  it('tiny-graph.json is the graph graph-as-data.ts builds, and a valid graph', () => {
    const graph = JSON.parse(tinyGraphJson());
    expect(graph).toEqual(JSON.parse(snippetFile('tiny-graph.json')));
    expect(() => validateGraph(createRuntime(), graph)).not.toThrow();
  });

  it('skip-padding.output.txt is what skip-padding.ts logs', async () => {
    const lines: string[] = [];
    await skipPadding('wasm', (line) => lines.push(line));
    expect(`${lines.join('\n')}\n`).toBe(snippetFile('skip-padding.output.txt'));
  });
});

describe.each(['wasm', 'cpu'] as const)('docs snippets reading the data sets, on %s', (backend) => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend(backend));
  guardLeaks();

  it('getting-started trains a digits classifier and reports its FLOPs per node', async () => {
    const lines: string[] = [];
    const { accuracy, flops } = await gettingStarted(backend, (line) => lines.push(line));
    expect(accuracy).toBeGreaterThan(0.85);
    // 297 digits through 64->32 and 32->10 dense layers (a multiply-add counts 2, plus bias and relu).
    expect(flops).toBe(1_428_570);
    expect(lines).toContain('  hidden (core.Dense): 297 rows, 1235520 FLOPs');
  });

  it('early-exit saves FLOPs at a fixed and at a calibrated threshold', async () => {
    const lines: string[] = [];
    const result = await earlyExit(backend, (line) => lines.push(line));
    expect(result.fixedThresholdFlops).toBeLessThan(result.fullFlops);
    expect(result.calibratedFlops).toBeLessThan(result.fullFlops);
    expect(result.servedBy.filter((node) => node !== 'classifier').length).toBeGreaterThan(0);
    expect(lines[0]).toMatch(/^max softmax >= [\d.]+: \d+ of 297 digits left at an exit$/);
  });

  it('datasets loads the digits with their tensors', async () => {
    expect(await digitsInNode()).toEqual({ count: 1_797, shapes: [[1_797, 64], [1_797]] });
  });

  it('data-fashion-mnist loads Fashion-MNIST with its tensors', async () => {
    expect(await fashionMnistInNode()).toEqual({
      counts: [60_000, 10_000],
      first: 'Ankle boot',
      shapes: [[10_000, 28, 28, 1], [10_000]],
    });
  });
});
