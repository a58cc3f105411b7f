/**
 * `@dynn/data-fashion-mnist`: Fashion-MNIST (70,000 grey 28x28 clothing images, 30 MB) shipped
 * inside the package with a checksummed, typed loader. An optional companion of
 * `@dynn/datasets`, whose reading code (byte sources, SHA-256 checks, IDX parsing) it uses.
 *
 * @packageDocumentation
 */
export type { FashionMnistFile } from './data-files.js';
export { FASHION_MNIST_BUNDLE } from './data-files.js';
export type { FashionMnist, ImageSplit, ImageTensors } from './fashion-mnist.js';
export { FASHION_MNIST_CLASS_NAMES, loadFashionMnist } from './fashion-mnist.js';
