import { createModel, DynnError, type Model } from '@dynn/core';
import { describeEachBackend, seededNormal } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { describeNesting } from './describe-nesting.js';
import { type LatencyTable, measureLatencyTable, predictLatency, subNetworkFlops } from './latency-table.js';
import { nestModel } from './nest-model.js';
import { type SubNetwork, subNetworkKey } from './options.js';
import { paretoFront, type SearchPoint, searchSubNetwork } from './search.js';
import { residualCnn, runtime } from './test-models.js';

async function nestedCnn(seed: number, kernelSizes?: number[]): Promise<Model> {
  const plain = createModel(runtime, residualCnn(), { seed });
  const nested = await nestModel(plain, { multiple: 2, ...(kernelSizes ? { kernelSizes } : {}) });
  plain.dispose();
  return nested;
}

const isInvalidOption = (e: unknown) => e instanceof DynnError && e.code === 'INVALID_OPTION';

/** Knob importances of the synthetic accuracy: some knobs matter more than their cost. */
const IMPORTANCE = [5, 1, 3, 4, 0.5, 2];

/** A synthetic accuracy, a known function of the choices, and a counter of its calls. */
function syntheticEvaluate(model: Model) {
  const knobs = describeNesting(model.graph).knobs.map((k) => k.name);
  const calls: string[] = [];
  const accuracy = (sub: SubNetwork): number => {
    const width = sub.width as Record<string, number>;
    const depth = (sub.depth as number[] | undefined) ?? [2, 2];
    const kernels = Object.values((sub.kernel as Record<string, number> | undefined) ?? {});
    return (
      knobs.reduce((s, k, i) => s + IMPORTANCE[i]! * width[k]!, 0) +
      depth.reduce((s, d) => s + 0.7 * d, 0) +
      kernels.reduce((s, k) => s + 0.1 * k, 0)
    );
  };
  const evaluate = async (sub: SubNetwork) => {
    calls.push(subNetworkKey(sub));
    return accuracy(sub);
  };
  return { evaluate, calls, accuracy };
}

/** Every combination of `widths` over the model's knobs. */
function allWidths(model: Model, widths: number[]): SubNetwork[] {
  const knobs = describeNesting(model.graph).knobs.map((k) => k.name);
  let subs: Record<string, number>[] = [{}];
  for (const k of knobs) subs = subs.flatMap((s) => widths.map((w) => ({ ...s, [k]: w })));
  return subs.map((width) => ({ width }));
}

/** A table of known times over a measured table's structure: 1 ms plus 10 ms times the work fraction. */
function knownTable(measured: LatencyTable, model: Model): LatencyTable {
  const sizes = new Map(describeNesting(model.graph).knobs.map((k) => [k.name, k.size]));
  return {
    ...measured,
    nodes: measured.nodes.map((n) => ({
      ...n,
      entries: n.entries.map((e) => ({
        ...e,
        ms: 1 + 10 * n.knobs.reduce((p, k) => (p * e.channels[k]!) / sizes.get(k)!, 1),
      })),
    })),
  };
}

describeEachBackend('sorted-net search', () => {
  it('finds the best sub-network under a FLOP budget (checked by brute force), never over it', async () => {
    const nested = await nestedCnn(1);
    const x = seededNormal([1, 8, 8, 1], { seed: 2 });
    const before = tf.memory().numTensors;
    const { evaluate, calls, accuracy } = syntheticEvaluate(nested);
    // The whole space, 2^6 sub-networks: their FLOPs measured by runs, the optimum by brute force.
    const space = await Promise.all(
      allWidths(nested, [0.5, 1]).map(async (sub) => ({
        sub,
        mflops: (await subNetworkFlops(nested, sub, x)) / 1e6,
      })),
    );
    const budget = [...space.map((p) => p.mflops)].sort((a, b) => a - b)[space.length >> 1]!;
    const optimum = Math.max(...space.filter((p) => p.mflops <= budget).map((p) => accuracy(p.sub)));
    const result = await searchSubNetwork(nested, {
      evaluate,
      budget: { mflops: budget },
      input: x,
      widths: [0.5, 1],
      population: 6,
      generations: 4,
      seed: 1,
    });
    expect(calls.length).toBeLessThanOrEqual(6 * 4);
    expect(result.best.accuracy).toBe(optimum);
    expect(result.best.mflops).toBeLessThanOrEqual(budget);
    // The FLOPs a point reports are the compute report's.
    for (const p of result.evaluated) {
      expect(p.mflops).toBeLessThanOrEqual(budget);
      const measured = space.find((q) => subNetworkKey(q.sub) === subNetworkKey(p.sub))!;
      expect(p.mflops).toBeCloseTo(measured.mflops, 12);
    }
    // The model keeps the weights it narrowed for each sub-network it ran (freed on demand).
    nested.clearDerived();
    expect(tf.memory().numTensors).toBe(before);
    nested.dispose();
    x.dispose();
  });

  it('searches a space far larger than its evaluations: bounded, cached, within budget, reproducible', async () => {
    const nested = await nestedCnn(3, [1, 3]);
    const x = seededNormal([1, 8, 8, 1], { seed: 4 });
    const full = (await subNetworkFlops(nested, {}, x)) / 1e6;
    const before = tf.memory().numTensors;
    const search = async () => {
      const { evaluate, calls } = syntheticEvaluate(nested);
      const progress: [number, number][] = [];
      const result = await searchSubNetwork(nested, {
        evaluate,
        budget: { mflops: full / 4 },
        input: x,
        widths: [0.25, 0.5, 0.75, 1],
        depths: [0, 1, 2],
        kernels: [1, 3],
        population: 8,
        generations: 5,
        seed: 7,
        onProgress: (done, total) => progress.push([done, total]),
      });
      return { result, calls, progress };
    };
    // 4^6 widths x 3^2 depths x 2^10 kernels: about 3.8e7 sub-networks.
    const { result, calls, progress } = await search();
    expect(calls.length).toBeLessThanOrEqual(8 * 5);
    expect(calls.length).toBeGreaterThan(8);
    expect(new Set(calls).size).toBe(calls.length);
    expect(result.evaluated.map((p) => subNetworkKey(p.sub))).toEqual(calls);
    expect(progress).toEqual([1, 2, 3, 4, 5].map((g) => [g, 5]));
    for (const p of result.evaluated) expect(p.mflops).toBeLessThanOrEqual(full / 4);
    expect(result.best.accuracy).toBe(Math.max(...result.evaluated.map((p) => p.accuracy)));
    // Plain JSON, and the same seed gives the same search.
    expect(JSON.parse(JSON.stringify(result))).toEqual(result);
    expect((await search()).result).toEqual(result);
    // The front: cheapest first, each more accurate than the last, ending at the best.
    const costs = result.front.map((p) => p.mflops);
    expect(costs).toEqual([...costs].sort((a, b) => a - b));
    for (let i = 1; i < result.front.length; i++)
      expect(result.front[i]!.accuracy).toBeGreaterThan(result.front[i - 1]!.accuracy);
    expect(result.front.at(-1)!.accuracy).toBe(result.best.accuracy);
    // FLOPs counted without a run agree with the compute report.
    for (const p of result.evaluated.slice(0, 5))
      expect(p.mflops).toBeCloseTo((await subNetworkFlops(nested, p.sub, x)) / 1e6, 12);
    // The model keeps the weights it narrowed for each sub-network it ran (freed on demand).
    nested.clearDerived();
    expect(tf.memory().numTensors).toBe(before);
    nested.dispose();
    x.dispose();
  });

  it('greedy: shrinks from the largest sub-network into the budget within the evaluation bound', async () => {
    const nested = await nestedCnn(5);
    const x = seededNormal([1, 8, 8, 1], { seed: 6 });
    const full = (await subNetworkFlops(nested, {}, x)) / 1e6;
    const accuracies: number[] = [];
    for (const [population, generations] of [
      [8, 8],
      [2, 2],
    ] as const) {
      const { evaluate, calls } = syntheticEvaluate(nested);
      const result = await searchSubNetwork(nested, {
        evaluate,
        strategy: 'greedy',
        budget: { mflops: full / 3 },
        input: x,
        widths: [0.25, 0.5, 0.75, 1],
        depths: [1, 2],
        population,
        generations,
      });
      expect(calls.length).toBeLessThanOrEqual(population * generations);
      expect(result.best.mflops).toBeLessThanOrEqual(full / 3);
      for (const p of result.front) expect(p.mflops).toBeLessThanOrEqual(full / 3);
      // It starts from the largest sub-network.
      expect(result.evaluated[0]!.mflops).toBeCloseTo(full, 9);
      accuracies.push(result.best.accuracy);
    }
    // With 4 evaluations it shrinks by cost alone; with 64 it weighs accuracy and does better.
    expect(accuracies[0]).toBeGreaterThan(accuracies[1]!);
    nested.dispose();
    x.dispose();
  });

  it('searches under a latency budget from the table, without running the candidates for it', async () => {
    const nested = await nestedCnn(7);
    const x = seededNormal([1, 8, 8, 1], { seed: 8 });
    const measured = await measureLatencyTable(nested, { input: x, widths: [0.5, 1], warmup: 0, repeats: 1 });
    const table = knownTable(measured, nested);
    const fullMs = predictLatency(table, nested.graph, {});
    const { evaluate, calls } = syntheticEvaluate(nested);
    const result = await searchSubNetwork(nested, {
      evaluate,
      budget: { latencyMs: 0.6 * fullMs },
      table,
      input: x,
      widths: [0.5, 0.75, 1],
      depths: [0, 1, 2],
      population: 6,
      generations: 3,
      seed: 2,
    });
    expect(calls.length).toBeLessThanOrEqual(18);
    for (const p of result.evaluated) {
      expect(p.latencyMs).toBe(predictLatency(table, nested.graph, p.sub));
      expect(p.latencyMs!).toBeLessThanOrEqual(0.6 * fullMs);
    }
    const costs = result.front.map((p) => p.latencyMs!);
    expect(costs).toEqual([...costs].sort((a, b) => a - b));
    nested.dispose();
    x.dispose();
  });

  it('refuses an impossible budget (naming the smallest cost), a latency budget without a table, empty widths', async () => {
    const nested = await nestedCnn(9);
    const x = seededNormal([1, 8, 8, 1], { seed: 10 });
    const { evaluate, calls } = syntheticEvaluate(nested);
    const base = { evaluate, input: x, widths: [0.25, 1], depths: [0, 2] };
    const smallest = await subNetworkFlops(nested, { width: 0.25, depth: 0 }, x);
    const impossible = searchSubNetwork(nested, { ...base, budget: { mflops: 1e-6 } });
    await expect(impossible).rejects.toSatisfy(isInvalidOption);
    await expect(impossible).rejects.toThrow(/smallest sub-network/);
    await expect(impossible).rejects.toThrow((smallest / 1e6).toPrecision(4));
    await expect(searchSubNetwork(nested, { ...base, budget: { latencyMs: 1 } })).rejects.toSatisfy(
      isInvalidOption,
    );
    await expect(searchSubNetwork(nested, { ...base, widths: [], budget: { mflops: 1 } })).rejects.toSatisfy(
      isInvalidOption,
    );
    await expect(searchSubNetwork(nested, { ...base, budget: {} })).rejects.toSatisfy(isInvalidOption);
    expect(calls).toEqual([]);
    nested.dispose();
    x.dispose();
  });
});

describe('paretoFront', () => {
  const point = (name: string, mflops: number, accuracy: number, latencyMs?: number): SearchPoint => ({
    sub: { width: { [name]: 1 } },
    accuracy,
    mflops,
    ...(latencyMs === undefined ? {} : { latencyMs }),
  });
  const a = point('a', 1, 0.5, 9);
  const b = point('b', 2, 0.7, 2);
  const c = point('c', 2, 0.6, 1);
  const d = point('d', 3, 0.65, 3);
  const e = point('e', 0.5, 0.5, 5);
  const f = point('f', 4, 0.9, 4);

  it('keeps the non-dominated points, sorted by cost', () => {
    expect(paretoFront([a, b, c, d, e, f])).toEqual([e, b, f]);
    expect(paretoFront([a, b, c, d, e, f], { cost: 'latencyMs' })).toEqual([c, b, f]);
    expect(paretoFront([])).toEqual([]);
    // Of identical points the first stays.
    const twin = point('twin', 0.5, 0.5);
    expect(paretoFront([e, twin])).toEqual([e]);
  });

  it('refuses a latency front of points without latency', () => {
    let error: unknown;
    try {
      paretoFront([point('x', 1, 1)], { cost: 'latencyMs' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toSatisfy(isInvalidOption);
  });
});
