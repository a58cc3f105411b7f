import { createModel, DynnError, type Model } from '@dynn/core';
import { describeEachBackend, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { describeNesting } from './describe-nesting.js';
import { type LatencyTable, measureLatencyTable, predictLatency, subNetworkFlops } from './latency-table.js';
import { nestModel } from './nest-model.js';
import { NESTED_OP } from './nested-op.js';
import type { SubNetwork } from './options.js';
import { residualCnn, runtime } from './test-models.js';

async function nestedCnn(seed: number, kernelSizes?: number[]): Promise<Model> {
  const plain = createModel(runtime, residualCnn(), { seed });
  const nested = await nestModel(plain, { multiple: 2, ...(kernelSizes ? { kernelSizes } : {}) });
  plain.dispose();
  return nested;
}

const isInvalidOption = (e: unknown) => e instanceof DynnError && e.code === 'INVALID_OPTION';

function thrown(body: () => unknown): unknown {
  try {
    body();
  } catch (error) {
    return error;
  }
  return undefined;
}

/**
 * A table with the structure of a measured one and known times: 1 ms plus 10 ms times the node's
 * work fraction (the product of its knobs' kept fractions), times (kernel / 3)^2 for elastic layers.
 */
function knownTable(measured: LatencyTable, model: Model): LatencyTable {
  const sizes = new Map(describeNesting(model.graph).knobs.map((k) => [k.name, k.size]));
  return {
    ...measured,
    nodes: measured.nodes.map((n) => ({
      ...n,
      entries: n.entries.map((e) => {
        const work = n.knobs.reduce((p, k) => (p * e.channels[k]!) / sizes.get(k)!, 1);
        return { ...e, ms: (1 + 10 * work) * ((e.kernel ?? 3) / 3) ** 2 };
      }),
    })),
  };
}

describeEachBackend('sorted-net latency table', () => {
  it('measures each node once per configuration: an entry per nested node, width and kernel, as plain JSON', async () => {
    const nested = await nestedCnn(1, [1, 3]);
    const x = seededNormal([1, 8, 8, 1], { seed: 2 });
    const before = tf.memory().numTensors;
    const table = await measureLatencyTable(nested, {
      input: x,
      widths: [1, 0.25, 0.5],
      kernels: [1, 3],
      warmup: 1,
      repeats: 2,
    });
    // The model keeps the weights it narrowed for each sub-network it ran (freed on demand).
    nested.clearDerived();
    expect(tf.memory().numTensors).toBe(before);
    expect(JSON.parse(JSON.stringify(table))).toEqual(table);
    expect(table.backend).toBe(tf.getBackend());
    expect(table.inputShapes).toEqual({ image: [1, 8, 8, 1] });
    expect(table.nodes.map((n) => n.node)).toEqual(nested.graph.nodes.map((n) => n.name));
    const elastic = new Set(describeNesting(nested.graph).kernels.map((k) => k.node));
    const nestedNodes = nested.graph.nodes.filter((n) => n.op === NESTED_OP);
    expect(nestedNodes.length).toBeGreaterThan(20);
    for (const node of nestedNodes) {
      const entry = table.nodes.find((n) => n.node === node.name)!;
      expect(entry.knobs.length).toBeGreaterThan(0);
      // Three widths (distinct channel counts at multiple 2), times two kernels for elastic layers.
      expect(entry.entries).toHaveLength(elastic.has(node.name) ? 6 : 3);
      const configs = entry.entries.map((e) => JSON.stringify([e.channels, e.kernel]));
      expect(new Set(configs).size).toBe(configs.length);
      for (const e of entry.entries) {
        expect(Object.keys(e.channels).sort()).toEqual([...entry.knobs].sort());
        expect(e.kernel === undefined).toBe(!elastic.has(node.name));
        expect(Number.isFinite(e.ms) && e.ms >= 0).toBe(true);
      }
    }
    // A convolution depends on its input's knob and its own; the plain relu after it on its knob.
    expect(table.nodes.find((n) => n.node === 's0b0c1')!.knobs).toEqual(['s0conv#out', 's0b0c1#out']);
    expect(table.nodes.find((n) => n.node === 's0b0relu1')!.knobs).toEqual(['s0b0c1#out']);
    // The full network is the sum of its full-width entries; a shallower one drops some of them.
    const sizes = new Map(describeNesting(nested.graph).knobs.map((k) => [k.name, k.size]));
    const fullEntries = table.nodes.map((n) =>
      n.entries.find((e) => (e.kernel ?? 3) === 3 && n.knobs.every((k) => e.channels[k] === sizes.get(k))),
    );
    const full = predictLatency(table, nested.graph, {});
    expect(full).toBeCloseTo(
      fullEntries.reduce((s, e) => s + e!.ms, 0),
      9,
    );
    expect(predictLatency(table, nested.graph, { depth: 0 })).toBeLessThanOrEqual(full);
    nested.dispose();
    x.dispose();
  });

  it('predicts the latency of any sub-network from the table: narrower, shallower and smaller kernels cost less', async () => {
    const nested = await nestedCnn(3, [1, 3]);
    const x = seededNormal([1, 8, 8, 1], { seed: 4 });
    const measured = await measureLatencyTable(nested, {
      input: x,
      widths: [0.5, 1],
      kernels: [1, 3],
      warmup: 0,
      repeats: 1,
    });
    const table = knownTable(measured, nested);
    const predict = (sub: SubNetwork) => predictLatency(table, nested.graph, sub);
    const nodes = nested.graph.nodes.length;
    expect(predict({})).toBeCloseTo(11 * nodes, 9);
    // A skipped block costs nothing: its five branch nodes and its residual end (6 x 11 ms) are gone.
    expect(predict({ depth: [0, 2] })).toBeCloseTo(11 * nodes - 2 * 6 * 11, 9);
    expect(predict({ depth: 1 })).toBeLessThan(predict({}));
    expect(predict({ depth: 0 })).toBeLessThan(predict({ depth: 1 }));
    expect(predict({ kernel: 1 })).toBeLessThan(predict({}));
    expect(predict({ width: 0.5 })).toBeLessThan(predict({}));
    // A width no entry was measured at is interpolated between its neighbours.
    expect(predict({ width: 0.75 })).toBeGreaterThan(predict({ width: 0.5 }));
    expect(predict({ width: 0.75 })).toBeLessThan(predict({}));
    expect(predict({ width: 0.25 })).toBeLessThan(predict({ width: 0.5 }));
    // Monotone per knob: shrinking any one knob lowers the prediction.
    const knobs = describeNesting(nested.graph).knobs.map((k) => k.name);
    for (const knob of knobs) expect(predict({ width: { [knob]: 0.5 } })).toBeLessThan(predict({}));
    const withoutNode: LatencyTable = { ...table, nodes: table.nodes.filter((n) => n.node !== 'head') };
    const missing = thrown(() => predictLatency(withoutNode, nested.graph, {}));
    expect(missing).toSatisfy(isInvalidOption);
    expect((missing as Error).message).toMatch(/no node 'head'/);
    const noKernels = await measureLatencyTable(nested, { input: x, widths: [1], warmup: 0, repeats: 1 });
    expect(thrown(() => predictLatency(noKernels, nested.graph, { kernel: 1 }))).toSatisfy(isInvalidOption);
    nested.dispose();
    x.dispose();
  });

  it('counts FLOPs per sample of a sub-network from the compute report, fewer for smaller ones', async () => {
    const nested = await nestedCnn(5);
    const one = seededNormal([1, 8, 8, 1], { seed: 6 });
    const three = seededNormal([3, 8, 8, 1], { seed: 7 });
    const before = tf.memory().numTensors;
    const flops = (sub: SubNetwork) => subNetworkFlops(nested, sub, one);
    const full = await flops({});
    expect(await subNetworkFlops(nested, {}, three)).toBe(full);
    expect(await flops({ width: 0.5 })).toBeLessThan(full);
    expect(await flops({ width: 0.25 })).toBeLessThan(await flops({ width: 0.5 }));
    expect(await flops({ depth: 1 })).toBeLessThan(full);
    expect(await flops({ width: { 's1b0c1#out': 0.5 } })).toBeLessThan(full);
    // The model keeps the weights it narrowed for each sub-network it ran (freed on demand).
    nested.clearDerived();
    expect(tf.memory().numTensors).toBe(before);
    nested.dispose();
    one.dispose();
    three.dispose();
  });

  it('refuses empty widths and kernels no elastic layer takes', async () => {
    const nested = await nestedCnn(8, [1, 3]);
    const x = seededNormal([1, 8, 8, 1], { seed: 9 });
    await expect(measureLatencyTable(nested, { input: x, widths: [] })).rejects.toSatisfy(isInvalidOption);
    await expect(measureLatencyTable(nested, { input: x, widths: [1.5] })).rejects.toSatisfy(isInvalidOption);
    await expect(measureLatencyTable(nested, { input: x, widths: [1], kernels: [5] })).rejects.toSatisfy(
      isInvalidOption,
    );
    nested.dispose();
    x.dispose();
  });
});
