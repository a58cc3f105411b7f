import { beforeAll, describe, expect, it } from 'vitest';
import { BITCOIN_OTC_STEP_SECONDS, loadBitcoinOtc } from './bitcoin-otc.js';
import type { TemporalGraph } from './temporal-graph.js';
import { loadUciMessages, UCI_MESSAGES_STEP_SECONDS } from './uci-messages.js';

function expectContiguousNodes(graph: TemporalGraph): void {
  const used = new Uint8Array(graph.numNodes);
  for (const node of graph.src) used[node] = 1;
  for (const node of graph.dst) used[node] = 1;
  expect(used.every((flag) => flag === 1)).toBe(true);
  expect(graph.nodeIds).toHaveLength(graph.numNodes);
}

describe.each([
  {
    name: 'UCI messages',
    load: loadUciMessages,
    edges: 59_835,
    nodes: 1_899,
    steps: 89,
    stepSeconds: UCI_MESSAGES_STEP_SECONDS,
    firstEdge: [1, 2, 1_082_040_961],
  },
  {
    name: 'Bitcoin-OTC',
    load: loadBitcoinOtc,
    edges: 35_592,
    nodes: 5_881,
    steps: 138,
    stepSeconds: BITCOIN_OTC_STEP_SECONDS,
    firstEdge: [6, 2, 1_289_241_912],
  },
])('$name', ({ load, edges, nodes, steps, stepSeconds, firstEdge }) => {
  let graph: TemporalGraph;
  beforeAll(async () => {
    graph = await load();
  });

  it(`has ${edges} edges between ${nodes} nodes numbered 0..n-1`, () => {
    expect(graph.numEdges).toBe(edges);
    expect([graph.src.length, graph.dst.length, graph.time.length]).toEqual([edges, edges, edges]);
    expect(graph.numNodes).toBe(nodes);
    expectContiguousNodes(graph);
  });

  it('keeps the original ids and the file order', () => {
    const [src, dst, time] = firstEdge;
    expect([graph.nodeIds[graph.src[0]!], graph.nodeIds[graph.dst[0]!], graph.time[0]]).toEqual([
      src,
      dst,
      time,
    ]);
  });

  it(`splits into ${steps} EvolveGCN snapshots that hold every edge once`, () => {
    expect(graph.stepSeconds).toBe(stepSeconds);
    const snapshots = graph.snapshots();
    expect(snapshots).toHaveLength(steps);
    expect(snapshots.reduce((total, snapshot) => total + snapshot.numEdges, 0)).toBe(edges);
    const outside = snapshots.filter((snapshot) =>
      snapshot.time.some((time) => time < snapshot.startTime || time >= snapshot.endTime),
    );
    expect(outside).toEqual([]);
    expect(snapshots[0]!.startTime).toBe(graph.time[0]);
  });
});

describe('Bitcoin-OTC ratings', () => {
  it('are the edge weights, -10..10', async () => {
    const graph = await loadBitcoinOtc();
    expect(graph.weight).toHaveLength(35_592);
    expect(Array.from(graph.weight!.subarray(0, 3))).toEqual([4, 2, 1]);
    expect([Math.min(...graph.weight!), Math.max(...graph.weight!)]).toEqual([-10, 10]);
  });
});

describe('UCI messages', () => {
  it('have no weights', async () => {
    expect((await loadUciMessages()).weight).toBeUndefined();
  });
});
