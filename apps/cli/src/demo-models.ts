import { type Graph, GraphBuilder, type Runtime } from '@dynn/core';

/** Channels of the demo CNN's three conv blocks. */
export const DEMO_CNN_FILTERS = [8, 32, 64] as const;

/**
 * A Fashion-MNIST CNN: 3x3 conv blocks (`conv1`, `conv2`...: same padding, relu) of `filters`
 * channels, each followed by 2x2 max pooling (`pool1`...) except the last when `poolLast` is
 * false, then a 10-way linear classifier (`classifier`).
 */
export function fashionCnnGraph(
  runtime: Runtime,
  filters: readonly number[],
  { poolLast = true }: { poolLast?: boolean } = {},
): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('image', 'float32', ['batch', 28, 28, 1]);
  for (const [i, channels] of filters.entries()) {
    h = b.add(
      'core.Conv2D',
      h,
      { filters: channels, kernelSize: [3, 3], padding: 'same', activation: 'relu' },
      { name: `conv${i + 1}` },
    );
    if (poolLast || i < filters.length - 1) {
      h = b.add('core.MaxPool2D', h, { poolSize: [2, 2] }, { name: `pool${i + 1}` });
    }
  }
  h = b.add('core.Flatten', h, {}, { name: 'flatten' });
  const logits = b.add('core.Dense', h, { units: 10 }, { name: 'classifier' });
  return b.build({ logits });
}

/**
 * The demo's Fashion-MNIST CNN: three 3x3 conv blocks (8, 32, 64 channels) with max pooling, then
 * a 10-way linear classifier. The first block runs at full 28x28 resolution, so it stays narrow:
 * two epochs train on two CPU cores in about two minutes.
 */
export function demoCnnGraph(runtime: Runtime): Graph {
  return fashionCnnGraph(runtime, DEMO_CNN_FILTERS);
}

/**
 * The pooling node the demo's early exit follows: after the first conv block (0.1 of 2.9
 * MFLOPs), where a small MLP on the flattened map is already sure of most images.
 */
export const DEMO_EXIT_POINTS = ['pool1'] as const;

/** Hidden units of the demo exit's MLP head: small, so training stays within the demo's time. */
export const DEMO_EXIT_HIDDEN = 32;

/** The MLP of the core benchmark: 784-512-512-10 with ReLU. */
export function mlpGraph(runtime: Runtime): Graph {
  const b = new GraphBuilder(runtime);
  let h = b.input('pixels', 'float32', ['batch', 784]);
  h = b.add('core.Dense', h, { units: 512, activation: 'relu' }, { name: 'dense1' });
  h = b.add('core.Dense', h, { units: 512, activation: 'relu' }, { name: 'dense2' });
  const logits = b.add('core.Dense', h, { units: 10 }, { name: 'classifier' });
  return b.build({ logits });
}
