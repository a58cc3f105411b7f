// Loading Fashion-MNIST from its own package. docs/packages/data-fashion-mnist.md quotes the
// region; CI runs it in Node.
import { loadFashionMnist } from '@dynn/data-fashion-mnist';
import * as tf from '@tensorflow/tfjs-core';

/** Loads Fashion-MNIST from the package's own `data/` folder; returns what the docs show. */
export async function fashionMnistInNode(): Promise<{ counts: number[]; first: string; shapes: number[][] }> {
  // #region node
  const { train, test, classNames } = await loadFashionMnist(); // 30 MB, every file SHA-256 checked
  const first = classNames[test.labels[0]!]; // 'Ankle boot'
  const { images, labels } = test.toTensors(); // [10000, 28, 28, 1] float32 in [0, 1], [10000] int32
  const shapes = [images.shape, labels.shape];
  tf.dispose([images, labels]); // the caller owns every tensor the loader makes
  // #endregion node
  return { counts: [train.count, test.count], first: first!, shapes };
}
