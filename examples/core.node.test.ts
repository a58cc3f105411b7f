import { useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { main as carriedState } from './core/carried-state.js';
import { main as hostTable } from './core/host-table.js';
import { main as nodeHooks } from './core/node-hooks.js';
import { main as pruneChannels } from './core/prune-channels.js';
import { main as routeRows } from './core/route-rows.js';
import { main as scanRnn } from './core/scan-rnn.js';
import { main as sessionDecoding } from './core/session-decoding.js';
import { main as signedMessagePassing } from './core/signed-message-passing.js';

// The core examples of sub-graphs, decisions in training and hooks. They read the UCI digits from
// the file system, so they run in Node, on wasm: the cpu backend computes the same numbers, five
// to ten times slower (the ops themselves run on every backend in packages/core's tests).
describe('core examples on wasm', () => {
  // The backend first, so the leak guard counts its tensors.
  beforeAll(() => useBackend('wasm'));
  guardLeaks();

  it('core/scan-rnn trains an RNN over digit rows and reports its body per step', async () => {
    const lines: string[] = [];
    const { accuracy, nodes, flops } = await scanRnn('wasm', (line) => lines.push(line));
    expect(accuracy).toBeGreaterThan(0.75);
    // The body's nodes come after the Scan, named by path, once per time step (8 rows of pixels).
    expect(nodes.map((n) => [n.name, n.parent, n.calls, n.rows])).toEqual([
      ['rnn', undefined, 1, 297],
      ['rnn/body/join', 'rnn', 8, 8 * 297],
      ['rnn/body/cell', 'rnn', 8, 8 * 297],
      ['classifier', undefined, 1, 297],
    ]);
    const cell = nodes.find((n) => n.name === 'rnn/body/cell')!;
    expect(cell.flops).toBeGreaterThanOrEqual(8 * 297 * 2 * (32 + 8) * 32); // [h, row] x kernel, per step
    expect(flops).toBe(nodes.reduce((sum, n) => sum + n.flops, 0));
    expect(lines).toContain(`    rnn/body/cell (core.Dense): 8 calls, 2376 rows, ${cell.flops} FLOPs`);
  });

  it('core/route-rows trains a gate that decides per row, and the split moves as it learns', async () => {
    const lines: string[] = [];
    const { steps, test, flops, fullFlops } = await routeRows('wasm', (line) => lines.push(line));
    expect(steps).toHaveLength(20);
    for (const step of steps) {
      expect(step.block + step.skipped).toBe(300);
      // The taped step ran the block on the rows the decide step chose, and no others.
      expect(step.blockRows).toBe(step.block);
    }
    const moved = steps.slice(1).filter((step, i) => step.block !== steps[i]!.block).length;
    expect(moved).toBeGreaterThanOrEqual(10);
    expect(steps.at(-1)!.loss).toBeLessThan(steps[0]!.loss / 4);
    expect(lines[0]).toMatch(/^step 1: \d+ rows through the block, \d+ skipped, loss \d\.\d{3}$/);
    // In inference too some digits skip the block, and the report shows the FLOPs that saves.
    expect(test.block + test.skipped).toBe(297);
    expect(test.block).toBeGreaterThan(0);
    expect(test.skipped).toBeGreaterThan(0);
    expect(flops).toBeLessThan(fullFlops);
  });

  it('core/node-hooks profiles every node and keeps pruned weights at zero through fit', async () => {
    const lines: string[] = [];
    const { profile, pruned, accuracy } = await nodeHooks('wasm', (line) => lines.push(line));
    for (const kernel of pruned) {
      expect(kernel.pruned).toBe(Math.round(kernel.size * 0.4));
      expect(kernel.nonzero).toBe(kernel.size - kernel.pruned);
    }
    expect(accuracy.fineTuned).toBeGreaterThan(accuracy.pruned);
    expect(profile.map((n) => [n.name, n.parent, n.calls, n.shape])).toEqual([
      ['rnn', undefined, 1, [297, 32]],
      ['rnn/body/join', 'rnn', 8, [297, 40]],
      ['rnn/body/cell', 'rnn', 8, [297, 32]],
      ['classifier', undefined, 1, [297, 10]],
    ]);
    // The Scan's interval holds its body's: hooks nest as the nodes do.
    const ms = Object.fromEntries(profile.map((n) => [n.name, n.ms]));
    expect(ms.rnn).toBeGreaterThanOrEqual(ms['rnn/body/join']! + ms['rnn/body/cell']!);
    expect(lines).toContain('rnn/body/cell/kernel: 512 of 1280 weights pruned, 768 nonzero after training');
  });

  it('core/prune-channels removes half of one channel group of an imported MobileNetV2-like model', async () => {
    const lines: string[] = [];
    const { groups, group, removed, before, after } = await pruneChannels('wasm', (line) => lines.push(line));
    // The residual streams, each expansion and the head conv can shrink; the image and the classes cannot.
    expect(
      groups
        .filter((g) => g.fixed.length === 0)
        .map((g) => g.size)
        .sort((a, b) => a - b),
    ).toEqual([8, 12, 24, 32, 36]);
    expect(group.size).toBe(36);
    expect(removed).toHaveLength(18);
    expect(after.params).toBeLessThan(before.params);
    expect(after.flops).toBeLessThan(before.flops);
    expect(before.ms).toBeGreaterThan(0);
    expect(after.ms).toBeGreaterThan(0);
    expect(lines).toContain(`pruned group ${group.id}: 18 of 36 channels (lowest L1 magnitude)`);
    expect(
      lines.some((l) =>
        /^latency on wasm, median ms per batch: \d+\.\d\d -> \d+\.\d\d \(x\d+\.\d\d\)$/.test(l),
      ),
    ).toBe(true);
  });

  it('core/session-decoding generates the same text with a KV cache as by recomputing, for far fewer FLOPs', async () => {
    const lines: string[] = [];
    const { bitsPerChar, same, text, flops } = await sessionDecoding('wasm', (line) => lines.push(line));
    // A uniform guess over Austen's 81 symbols is log2(81) = 6.3 bits.
    expect(bitsPerChar).toBeLessThan(3.2);
    expect(same).toBe(true);
    expect(text.startsWith('It is a truth universally')).toBe(true);
    expect(flops.session * 10).toBeLessThan(flops.full);
    expect(lines[0]).toMatch(/^trained 1000 steps on Austen: \d\.\d\d bits per character on held-out text$/);
  }, 120_000);

  it('core/host-table trains UCI message embeddings from a host table, moving only the rows a batch touches', async () => {
    const lines: string[] = [];
    const result = await hostTable('wasm', (line) => lines.push(line));
    expect(result.losses).toHaveLength(6);
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]! / 2);
    // Well above chance and above ranking receivers by popularity.
    expect(result.chanceMrr).toBeCloseTo(0.0515, 3);
    expect(result.popularityMrr).toBeGreaterThan(0.08);
    expect(result.mrr).toBeGreaterThan(0.2);
    expect(result.mrr).toBeGreaterThan(2 * result.popularityMrr);
    expect(result.testEdges).toBeGreaterThan(8000);
    // 3,798 rows x 32 floats, plus as many Adagrad accumulators; a batch moves its distinct rows only.
    expect(result.tableBytes).toBe(2 * 3798 * 32 * 4);
    expect(result.rowBytesPerBatch).toBeLessThan(3798 * 32 * 4);
    expect(result.peakBackendBytes).toBeLessThan(1024 * 1024);
    expect(lines.at(-2)).toMatch(
      /^test MRR over \d+ later messages \(100 negatives each\): embeddings 0\.\d{3}, popularity 0\.\d{3}, chance 0\.051$/,
    );
  });

  it('core/carried-state: a GRU trained with its state carried across windows beats one reset every window', async () => {
    const lines: string[] = [];
    const { carried, reset } = await carriedState('wasm', (line) => lines.push(line));
    expect(carried).toBeLessThan(3.5);
    expect(carried).toBeLessThan(reset);
    expect(lines[0]).toMatch(/^state carried across windows \(4 per tape\): \d\.\d\d bits per character$/);
  }, 180_000);

  it('core/signed-message-passing trains Gather and SegmentMean message passing on Bitcoin-OTC', async () => {
    const lines: string[] = [];
    const { messagePassing, embeddingsOnly, allNegative } = await signedMessagePassing('wasm', (line) =>
      lines.push(line),
    );
    expect(messagePassing).toBeGreaterThan(allNegative);
    expect(embeddingsOnly).toBeGreaterThan(allNegative);
    expect(lines[1]).toMatch(/^with message passing: F1 of negative ratings 0\.\d{3}$/);
  }, 120_000);
});
