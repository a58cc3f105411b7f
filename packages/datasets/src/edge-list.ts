import { type Tensor1D, tensor1d } from '@tensorflow/tfjs-core';

/** Tensors made by {@link EdgeList.toTensors}; the caller disposes them. */
export interface EdgeTensors {
  /** `[numEdges]` int32 source nodes. */
  src: Tensor1D;
  /** `[numEdges]` int32 destination nodes. */
  dst: Tensor1D;
  /** `[numEdges]` float32 edge weights, when the graph has them. */
  weight?: Tensor1D;
}

/** Timed, directed edges between nodes numbered `0..numNodes-1`. */
export interface EdgeList {
  /** Number of edges. */
  numEdges: number;
  /** Source node of each edge. */
  src: Int32Array;
  /** Destination node of each edge. */
  dst: Int32Array;
  /** Time of each edge, in unix seconds. */
  time: Float64Array;
  /** Weight of each edge, when the graph has them (Bitcoin-OTC: the trust rating). */
  weight?: Float32Array;
  /**
   * The edges as tfjs tensors (see {@link EdgeTensors}); the caller disposes them. Times stay in
   * `time`: float32 cannot hold unix seconds exactly.
   */
  toTensors(): EdgeTensors;
}

/** An {@link EdgeList} over the given arrays (which must all have the same length). */
export function edgeList(
  src: Int32Array,
  dst: Int32Array,
  time: Float64Array,
  weight?: Float32Array,
): EdgeList {
  const tensors = (): EdgeTensors => ({
    src: tensor1d(src, 'int32'),
    dst: tensor1d(dst, 'int32'),
    ...(weight === undefined ? {} : { weight: tensor1d(weight, 'float32') }),
  });
  return {
    numEdges: src.length,
    src,
    dst,
    time,
    ...(weight === undefined ? {} : { weight }),
    toTensors: tensors,
  };
}
