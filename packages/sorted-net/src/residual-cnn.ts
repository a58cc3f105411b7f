import { type Graph, GraphBuilder, type Runtime } from '@dynn/core';

/** Options of {@link residualCnnGraph}. */
export interface ResidualCnnOptions {
  /** Image height and width (default 28). */
  size?: number;
  /** Image channels (default 1). */
  channels?: number;
  /** Channels per stage (default [16, 32, 64]). */
  widths?: readonly number[];
  /** Residual blocks per stage (default 3). */
  blocks?: number;
  /** Kernel size of the blocks' convolutions (default 3; 5 or more makes room for elastic kernels). */
  kernel?: number;
  /** Classes (default 10). */
  classes?: number;
}

/**
 * A ResNet-style CNN for NHWC images (the CIFAR ResNets' layout): per stage a 3x3 convolution
 * (stride 2 after the first stage) with batch norm and relu, then `blocks` residual blocks
 * (conv-BN-relu-conv-BN, add, relu), then global average pooling and a dense classifier writing
 * `logits`. Stage `s`, block `b` names its layers `s<s>b<b>c1`, `s<s>b<b>bn1`.... Every stage's
 * channels and every block's inner channels nest (`sorted-net.nest`), and its blocks are
 * depth-nested: a ready model for sorted training.
 *
 * @example
 * ```ts
 * const runtime = createRuntime({ plugins: [sortedNet()] });
 * const model = createModel(runtime, residualCnnGraph(runtime, { widths: [16, 32], blocks: 2 }));
 * ```
 */
export function residualCnnGraph(runtime: Runtime, options: ResidualCnnOptions = {}): Graph {
  const { size = 28, channels = 1, widths = [16, 32, 64], blocks = 3, kernel = 3, classes = 10 } = options;
  const b = new GraphBuilder(runtime);
  let h = b.input('image', 'float32', ['batch', size, size, channels]);
  const conv = (input: string, filters: number, k: number, name: string, stride = 1) =>
    b.add(
      'core.Conv2D',
      input,
      { filters, kernelSize: [k, k], strides: [stride, stride], padding: 'same', useBias: false },
      { name },
    );
  widths.forEach((width, s) => {
    h = conv(h, width, 3, `s${s}conv`, s === 0 ? 1 : 2);
    h = b.add('core.BatchNorm', h, {}, { name: `s${s}bn` });
    h = b.add('core.Activation', h, { fn: 'relu' }, { name: `s${s}relu` });
    for (let k = 0; k < blocks; k++) {
      const p = `s${s}b${k}`;
      let r = conv(h, width, kernel, `${p}c1`);
      r = b.add('core.BatchNorm', r, {}, { name: `${p}bn1` });
      r = b.add('core.Activation', r, { fn: 'relu' }, { name: `${p}relu1` });
      r = conv(r, width, kernel, `${p}c2`);
      r = b.add('core.BatchNorm', r, {}, { name: `${p}bn2` });
      h = b.add('core.Add', [h, r], {}, { name: `${p}add` });
      h = b.add('core.Activation', h, { fn: 'relu' }, { name: `${p}out` });
    }
  });
  h = b.add('core.GlobalAvgPool2D', h, {}, { name: 'pool' });
  const logits = b.add('core.Dense', h, { units: classes }, { name: 'head' });
  return b.build({ logits });
}
