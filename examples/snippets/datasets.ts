// Loading a bundled data set in Node and in a browser. docs/packages/datasets.md quotes the
// regions; CI runs the Node one in Node and the browser one in Chromium.
import { type Digits, loadDigits } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** Loads the digits from the package's own `data/` folder and returns their tensor shapes. */
export async function digitsInNode(): Promise<{ count: number; shapes: number[][] }> {
  // #region node
  const digits = await loadDigits(); // Node: read from the package's data/ folder, SHA-256 checked
  const { features, labels } = digits.toTensors(); // [1797, 64] float32 in [0, 1], [1797] int32
  const shapes = [features.shape, labels.shape];
  tf.dispose([features, labels]); // the caller owns every tensor a loader makes
  // #endregion node
  return { count: digits.count, shapes };
}

/** Loads the digits from `baseUrl`, the URL where a page serves the package's `data/` folder. */
export async function digitsInBrowser(baseUrl: string): Promise<Digits> {
  // #region browser
  // A browser fetches the files, checks them with crypto.subtle and gunzips them itself.
  const digits = await loadDigits({ baseUrl }); // e.g. '/node_modules/@dynn/datasets/data/'
  // #endregion browser
  return digits;
}
