import { channelGroups, DynnError, runPass } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { checkSubNetwork, describeNesting } from './describe-nesting.js';
import { nest } from './nest.js';
import { activeChannels, readSubNetwork, subNetworkKey, subNetworkOptions } from './options.js';
import { residualCnn, runtime } from './test-models.js';

describe('sub-network run options', () => {
  it('rounds widths to a multiple, keeping at least one multiple and at most every channel', () => {
    expect(activeChannels(64, 0.5, 8)).toBe(32);
    expect(activeChannels(64, 0.3, 8)).toBe(16);
    expect(activeChannels(64, 0.01, 8)).toBe(8);
    expect(activeChannels(6, 1, 4)).toBe(6);
    expect(activeChannels(3, 0.1, 4)).toBe(3);
    expect(activeChannels(10, 0.25, 1)).toBe(3);
  });

  it('names sub-networks stably, as state variants may be named', () => {
    expect(subNetworkKey({})).toBe('full');
    expect(subNetworkKey({ width: 0.5, depth: 2 })).toBe('w0.5-d2');
    expect(subNetworkKey({ width: { b: 0.5, 'a#out': 0.25 }, depth: [1, 2], kernel: 3 })).toBe(
      'wa_out_0.25_b_0.5-d1_2-k3',
    );
    expect(subNetworkKey({ width: { b: 0.5, 'a#out': 0.25 } })).toBe(
      subNetworkKey({ width: { 'a#out': 0.25, b: 0.5 } }),
    );
  });

  it.each([
    [{ width: 1.5 }, "'sorted-net'.width must be a fraction in (0, 1]"],
    [{ width: 0 }, "'sorted-net'.width must be a fraction in (0, 1]"],
    [{ width: { k: -1 } }, "'sorted-net'.width['k'] must be a fraction"],
    [{ depth: -1 }, "'sorted-net'.depth must be an integer >= 0"],
    [{ depth: [1, 0.5] }, "'sorted-net'.depth[1] must be an integer >= 0"],
    [{ kernel: 0 }, "'sorted-net'.kernel must be an integer >= 1"],
    [{ widths: 0.5 }, "'sorted-net'.widths is unknown"],
  ])('refuses %j with a clear error', (sub, message) => {
    expect(() => readSubNetwork(subNetworkOptions(sub as never))).toThrow(message);
    expect(() => readSubNetwork(subNetworkOptions(sub as never))).toThrow(DynnError);
  });

  it('checks knob, stage and kernel names against the nested graph', () => {
    const { graph } = nest(residualCnn(), { kernelSizes: [1, 3] }, { runtime, weights: new Map() });
    const nesting = describeNesting(graph);
    expect(nesting.knobs.map((k) => k.name)).toEqual([
      's0conv#out',
      's0b0c1#out',
      's0b1c1#out',
      's1conv#out',
      's1b0c1#out',
      's1b1c1#out',
    ]);
    expect(nesting.stages.map((s) => s.blocks)).toEqual([
      ['s0b0add', 's0b1add'],
      ['s1b0add', 's1b1add'],
    ]);
    // Every 3x3 convolution (stage convolutions and blocks) with `same` padding.
    expect(nesting.kernels).toHaveLength(10);
    expect(() =>
      checkSubNetwork(nesting, { width: { 's0conv#out': 0.5 }, depth: [1, 2], kernel: 1 }),
    ).not.toThrow();
    expect(() => checkSubNetwork(nesting, { width: { nope: 0.5 } })).toThrow(
      "Width knob 'nope' is not in this model",
    );
    expect(() => checkSubNetwork(nesting, { depth: [1] })).toThrow(
      'depth lists 1 stages, but this model has 2',
    );
    expect(() => checkSubNetwork(nesting, { kernel: 5 })).toThrow('Kernel 5');
    expect(() => checkSubNetwork(nesting, { kernel: { head: 1 } })).toThrow("'head' is not an elastic layer");
  });

  it('refuses an export that names what the model does not have', () => {
    const { graph } = nest(residualCnn(), {}, { runtime, weights: new Map() });
    expect(() => runPass(runtime, 'sorted-net.export', graph, { width: { nope: 0.5 } })).toThrow(DynnError);
  });
});

describe('channel analysis of a nested graph', () => {
  it('treats layers whose channel counts are chosen per run as barriers instead of failing', () => {
    const { graph } = nest(residualCnn(), {}, { runtime, weights: new Map() });
    const { barriers } = channelGroups(runtime, graph);
    expect(barriers.some((b) => b.op === 'sorted-net.Nested')).toBe(true);
  });
});
