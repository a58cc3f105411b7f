import { DynnError } from '@dynn/core';
import { type DataLocation, parseIdx, readBundledFile } from '@dynn/datasets';
import { type Tensor1D, type Tensor4D, tensor1d, tensor4d } from '@tensorflow/tfjs-core';
import { FASHION_MNIST_BUNDLE, type FashionMnistFile } from './data-files.js';

/** Fashion-MNIST's ten classes; a label is an index into this list. */
export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** Tensors made by {@link ImageSplit.toTensors}; the caller disposes them. */
export interface ImageTensors {
  /** `[count, height, width, 1]` float32 pixels scaled to [0, 1]. */
  images: Tensor4D;
  /** `[count]` int32 class labels. */
  labels: Tensor1D;
}

/** One split of an image set: grey images and their labels. */
export interface ImageSplit {
  /** Number of images. */
  count: number;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** `count * height * width` pixels, 0 (background) to 255, image after image, row-major. */
  images: Uint8Array;
  /** `count` class labels, indices into the class names. */
  labels: Uint8Array;
  /** The split as tfjs tensors (see {@link ImageTensors}); the caller disposes them. */
  toTensors(): ImageTensors;
}

/** Fashion-MNIST with its official split. */
export interface FashionMnist {
  /** The 60,000 training images; carve any validation set out of these. */
  train: ImageSplit;
  /** The 10,000 test images, 1,000 per class. */
  test: ImageSplit;
  /** Class names by label, see {@link FASHION_MNIST_CLASS_NAMES}. */
  classNames: readonly string[];
}

function imageTensors(split: ImageSplit): ImageTensors {
  const pixels = new Float32Array(split.images.length);
  for (let i = 0; i < pixels.length; i++) pixels[i] = split.images[i]! / 255;
  return {
    images: tensor4d(pixels, [split.count, split.height, split.width, 1], 'float32'),
    labels: tensor1d(Int32Array.from(split.labels), 'int32'),
  };
}

async function loadSplit(
  imagesFile: FashionMnistFile,
  labelsFile: FashionMnistFile,
  location: DataLocation,
): Promise<ImageSplit> {
  const bundle = FASHION_MNIST_BUNDLE;
  const [imageBytes, labelBytes] = await Promise.all([
    readBundledFile(bundle, imagesFile, location),
    readBundledFile(bundle, labelsFile, location),
  ]);
  const images = parseIdx(imageBytes, imagesFile, bundle.packageName);
  const labels = parseIdx(labelBytes, labelsFile, bundle.packageName);
  const [count = 0, height = 0, width = 0] = images.shape;
  if (images.shape.length !== 3 || labels.shape.length !== 1 || labels.shape[0] !== count) {
    throw new DynnError(
      'DATA_CORRUPT',
      `Data files '${imagesFile}' and '${labelsFile}' do not match: images have shape ` +
        `[${images.shape.join(', ')}], labels [${labels.shape.join(', ')}]. Reinstall ${bundle.packageName}.`,
      { file: imagesFile },
    );
  }
  const split: ImageSplit = {
    count,
    height,
    width,
    images: images.data,
    labels: labels.data,
    toTensors: () => imageTensors(split),
  };
  return split;
}

/**
 * Loads Fashion-MNIST (Zalando Research, MIT): 28x28 grey images of clothing in ten classes,
 * with the official 60,000/10,000 train/test split. In Node the files come from this package's
 * own `data/` folder (or `dataDir`); a browser passes `baseUrl`, the URL serving that folder.
 * Checks every file's SHA-256 first; throws a `DATA_MISSING` or `DATA_CORRUPT` `DynnError`
 * naming the file when one is absent or damaged.
 *
 * @example
 * ```ts
 * const { train, test, classNames } = await loadFashionMnist();
 * const { images, labels } = test.toTensors(); // [10000, 28, 28, 1] and [10000]
 * images.dispose();
 * labels.dispose();
 * ```
 */
export async function loadFashionMnist(location: DataLocation = {}): Promise<FashionMnist> {
  const [train, test] = await Promise.all([
    loadSplit('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', location),
    loadSplit('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz', location),
  ]);
  return { train, test, classNames: FASHION_MNIST_CLASS_NAMES };
}
