import { DynnError } from '@dynn/core';
import { contiguousIds } from './contiguous-ids.js';
import { type EdgeList, edgeList } from './edge-list.js';

/** The edges of one time step of a {@link TemporalGraph}. */
export interface GraphSnapshot extends EdgeList {
  /** Index of the step, from 0. */
  step: number;
  /** First second of the step (inclusive), unix seconds. */
  startTime: number;
  /** End of the step (exclusive), unix seconds. */
  endTime: number;
}

/**
 * A temporal graph: timed edges between nodes renumbered `0..numNodes-1`, in the order of the
 * source file (which is by time for the bundled sets).
 */
export interface TemporalGraph extends EdgeList {
  /** Number of distinct nodes. */
  numNodes: number;
  /** Original (file) id of each node, by its index; ascending. */
  nodeIds: Int32Array;
  /** Length of a time step in the EvolveGCN setup for this graph, in seconds. */
  stepSeconds: number;
  /**
   * The graph split into consecutive time steps of `stepSeconds` (default: the EvolveGCN step),
   * counted from the first edge's time; every step up to the last edge's is present, even if
   * empty. Node numbers are the graph's, so all snapshots share one node set. Throws an
   * `INVALID_OPTION` `DynnError` unless `stepSeconds` is positive and finite.
   */
  snapshots(stepSeconds?: number): GraphSnapshot[];
}

function splitIntoSnapshots(graph: EdgeList, stepSeconds: number): GraphSnapshot[] {
  if (!(stepSeconds > 0) || !Number.isFinite(stepSeconds)) {
    throw new DynnError(
      'INVALID_OPTION',
      `stepSeconds must be a positive number of seconds, got ${stepSeconds}.`,
    );
  }
  const { time, src, dst, weight, numEdges } = graph;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < numEdges; i++) {
    first = Math.min(first, time[i]!);
    last = Math.max(last, time[i]!);
  }
  const numSteps = numEdges === 0 ? 0 : Math.floor((last - first) / stepSeconds) + 1;
  const stepOf = new Int32Array(numEdges);
  const offsets = new Int32Array(numSteps + 1);
  for (let i = 0; i < numEdges; i++) {
    stepOf[i] = Math.floor((time[i]! - first) / stepSeconds);
    offsets[stepOf[i]! + 1]!++;
  }
  for (let step = 0; step < numSteps; step++) offsets[step + 1]! += offsets[step]!;
  const next = offsets.slice(0, numSteps);
  const order = new Int32Array(numEdges);
  for (let i = 0; i < numEdges; i++) order[next[stepOf[i]!]!++] = i;
  const pick = <T extends Int32Array | Float32Array | Float64Array>(values: T, out: T): T => {
    for (let k = 0; k < numEdges; k++) out[k] = values[order[k]!]!;
    return out;
  };
  const stepSrc = pick(src, new Int32Array(numEdges));
  const stepDst = pick(dst, new Int32Array(numEdges));
  const stepTime = pick(time, new Float64Array(numEdges));
  const stepWeight = weight === undefined ? undefined : pick(weight, new Float32Array(numEdges));
  return Array.from({ length: numSteps }, (_, step) => {
    const from = offsets[step]!;
    const to = offsets[step + 1]!;
    return {
      ...edgeList(
        stepSrc.subarray(from, to),
        stepDst.subarray(from, to),
        stepTime.subarray(from, to),
        stepWeight?.subarray(from, to),
      ),
      step,
      startTime: first + step * stepSeconds,
      endTime: first + (step + 1) * stepSeconds,
    };
  });
}

/**
 * A {@link TemporalGraph} from edges given by original node ids: the ids are renumbered
 * `0..n-1` in ascending order, edges keep their order.
 */
export function temporalGraph(
  edges: { src: ArrayLike<number>; dst: ArrayLike<number>; time: Float64Array; weight?: Float32Array },
  stepSeconds: number,
): TemporalGraph {
  const {
    ids,
    indices: [src = new Int32Array(0), dst = new Int32Array(0)],
  } = contiguousIds(edges.src, edges.dst);
  const graph: TemporalGraph = {
    ...edgeList(src, dst, edges.time, edges.weight),
    numNodes: ids.length,
    nodeIds: ids,
    stepSeconds,
    snapshots: (seconds = stepSeconds) => splitIntoSnapshots(graph, seconds),
  };
  return graph;
}
