// Small models the tests of this package share. Not exported from the package.
import { createRuntime, type Graph, GraphBuilder } from '@dynn/core';
import { sortedNet } from './plugin.js';

/** A runtime with the sorted-net plugin. */
export const runtime = createRuntime({ plugins: [sortedNet()] });

/** Options of {@link residualCnn}. */
export interface ResidualCnnOptions {
  /** Image side (default 8). */
  size?: number;
  /** Channels per stage (default [8, 16]). */
  widths?: readonly number[];
  /** Residual blocks per stage (default 2). */
  blocks?: number;
  /** Kernel size of the block convolutions (default 3). */
  kernel?: number;
  /** Classes (default 10). */
  classes?: number;
}

/**
 * A residual CNN: per stage a (strided after the first) 3x3 convolution with batch norm and relu,
 * then `blocks` residual blocks (conv-BN-relu-conv-BN, add, relu), then global average pooling and
 * a dense classifier writing `logits`. Stage `s`, block `b` names its layers `s<s>b<b>c1`....
 */
export function residualCnn(options: ResidualCnnOptions = {}): Graph {
  const { size = 8, widths = [8, 16], blocks = 2, kernel = 3, classes = 10 } = options;
  const b = new GraphBuilder(runtime);
  let h = b.input('image', 'float32', ['batch', size, size, 1]);
  widths.forEach((width, s) => {
    h = b.add(
      'core.Conv2D',
      h,
      {
        filters: width,
        kernelSize: [3, 3],
        strides: s === 0 ? [1, 1] : [2, 2],
        padding: 'same',
        useBias: false,
      },
      { name: `s${s}conv` },
    );
    h = b.add('core.BatchNorm', h, {}, { name: `s${s}bn` });
    h = b.add('core.Activation', h, { fn: 'relu' }, { name: `s${s}relu` });
    for (let k = 0; k < blocks; k++) {
      const p = `s${s}b${k}`;
      let r = b.add(
        'core.Conv2D',
        h,
        { filters: width, kernelSize: [kernel, kernel], padding: 'same', useBias: false },
        { name: `${p}c1` },
      );
      r = b.add('core.BatchNorm', r, {}, { name: `${p}bn1` });
      r = b.add('core.Activation', r, { fn: 'relu' }, { name: `${p}relu1` });
      r = b.add(
        'core.Conv2D',
        r,
        { filters: width, kernelSize: [kernel, kernel], padding: 'same', useBias: false },
        { name: `${p}c2` },
      );
      r = b.add('core.BatchNorm', r, {}, { name: `${p}bn2` });
      h = b.add('core.Add', [h, r], {}, { name: `${p}add` });
      h = b.add('core.Activation', h, { fn: 'relu' }, { name: `${p}out` });
    }
  });
  h = b.add('core.GlobalAvgPool2D', h, {}, { name: 'pool' });
  const logits = b.add('core.Dense', h, { units: classes }, { name: 'head' });
  return b.build({ logits });
}
