import { isDynnError, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { temporalGraph } from './temporal-graph.js';

describe('temporalGraph', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  // Node ids 10, 20, 30, 99; times 100..135 with a gap, out of order on purpose.
  const graph = temporalGraph(
    {
      src: [10, 20, 99, 30, 10],
      dst: [20, 30, 10, 10, 99],
      time: new Float64Array([100, 104, 101, 135, 125]),
      weight: new Float32Array([1, -2, 3, -4, 5]),
    },
    10,
  );

  it('renumbers nodes 0..n-1 in ascending order of the original id and keeps edge order', () => {
    expect(graph.numNodes).toBe(4);
    expect(Array.from(graph.nodeIds)).toEqual([10, 20, 30, 99]);
    expect(Array.from(graph.src)).toEqual([0, 1, 3, 2, 0]);
    expect(Array.from(graph.dst)).toEqual([1, 2, 0, 0, 3]);
    expect(graph.numEdges).toBe(5);
  });

  it('splits into every step from the first edge to the last, empty ones included', () => {
    const snapshots = graph.snapshots();
    expect(snapshots.map((snapshot) => snapshot.step)).toEqual([0, 1, 2, 3]);
    expect(snapshots.map((snapshot) => snapshot.numEdges)).toEqual([3, 0, 1, 1]);
    const [first, , third] = snapshots;
    expect(Array.from(first!.time)).toEqual([100, 104, 101]);
    expect(Array.from(first!.weight!)).toEqual([1, -2, 3]);
    expect(Array.from(third!.src)).toEqual([0]);
    expect([third!.startTime, third!.endTime]).toEqual([120, 130]);
  });

  it('takes another step length on request and rejects a step that is not positive', () => {
    expect(graph.snapshots(100)).toHaveLength(1);
    let caught: unknown;
    try {
      graph.snapshots(0);
    } catch (error) {
      caught = error;
    }
    expect(isDynnError(caught, 'INVALID_OPTION')).toBe(true);
  });

  it('gives int32 edge and float32 weight tensors for the graph and its snapshots', async () => {
    const before = tf.memory().numTensors;
    const all = graph.toTensors();
    const step = graph.snapshots()[3]!.toTensors();
    expect(all.src.dtype).toBe('int32');
    expect(Array.from(await all.dst.data())).toEqual([1, 2, 0, 0, 3]);
    expect(all.weight?.dtype).toBe('float32');
    expect(Array.from(await step.weight!.data())).toEqual([-4]);
    tf.dispose([all.src, all.dst, all.weight!, step.src, step.dst, step.weight!]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
