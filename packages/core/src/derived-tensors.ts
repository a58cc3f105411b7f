import type * as tf from '@tensorflow/tfjs-core';

interface Entry {
  /** The sources' data when the tensor was made: a source assigned since (a training step) makes it stale. */
  data: readonly object[];
  tensor: tf.Tensor;
}

/**
 * Tensors ops derive from a model's own tensors (a layer's weights narrowed to a sub-network's
 * channels, folded weights), kept by the model between inference runs so that each is made once
 * per change of its sources, not once per call. An entry is made again when a source was assigned
 * a new value (a tf.Variable's data changes on `assign`), the least recently used entries go when
 * there are more than `capacity`, and every one is freed with the model.
 */
export class DerivedTensors {
  private readonly entries = new Map<string, Entry>();

  /** A cache of at most `capacity` tensors. */
  constructor(private readonly capacity: number) {}

  /** The tensor under `key`, made by `make` from `sources` unless one made from their current data is kept. */
  get(key: string, sources: readonly tf.Tensor[], make: () => tf.Tensor): tf.Tensor {
    const found = this.entries.get(key);
    if (found !== undefined) {
      this.entries.delete(key);
      if (found.data.length === sources.length && found.data.every((d, i) => d === sources[i]!.dataId)) {
        this.entries.set(key, found);
        return found.tensor;
      }
      found.tensor.dispose();
    }
    const tensor = make();
    this.entries.set(key, { data: sources.map((s) => s.dataId), tensor });
    if (this.entries.size > this.capacity) {
      const [oldest, entry] = this.entries.entries().next().value as [string, Entry];
      entry.tensor.dispose();
      this.entries.delete(oldest);
    }
    return tensor;
  }

  /** Tensors kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Frees every tensor kept. */
  dispose(): void {
    for (const entry of this.entries.values()) entry.tensor.dispose();
    this.entries.clear();
  }
}
