import { type Attrs, defineOp } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { depthOf, readSubNetwork } from './options.js';

/** The type of the depth-nested residual op. */
export const RESIDUAL_OP = 'sorted-net.Residual';

/** Attributes of `sorted-net.Residual`. */
export interface ResidualAttrs extends Attrs {
  /** The stage the block belongs to (0-based; a stage is a run of blocks at one shape). */
  stage: number;
  /** The block's position in its stage (1-based): it runs when the depth is at least this. */
  block: number;
}

/**
 * The end of a depth-nested residual block: `skip + branch` when the sub-network's depth for the
 * block's stage reaches it, else `skip` alone, and then the branch is not computed at all (the
 * op skips that input, so the nodes that only feed it do not run).
 */
export const residualOp = defineOp<ResidualAttrs>({
  type: RESIDUAL_OP,
  version: 1,
  description:
    'Adds a residual branch to its skip input when the sub-network is deep enough, else passes the skip input on without computing the branch.',
  attrs: {
    stage: { kind: 'int', min: 0, doc: 'the stage of the block (0-based)' },
    block: { kind: 'int', min: 1, doc: "the block's position in its stage (1-based)" },
  },
  inputs: { min: 2 },
  inferShape(_attrs, [skip, branch]) {
    if (skip!.dtype !== branch!.dtype || skip!.shape.length !== branch!.shape.length) {
      throw new Error('the skip input and the branch must have the same dtype and rank');
    }
    skip!.shape.forEach((d, i) => {
      if (d !== branch!.shape[i]) throw new Error(`the skip input and the branch differ in dimension ${i}`);
    });
    return [{ shape: [...skip!.shape], dtype: skip!.dtype }];
  },
  skipsInputs: (attrs, options) => (depthOf(readSubNetwork(options), attrs.stage) < attrs.block ? [1] : []),
  forward(_ctx, inputs) {
    const [skip, branch] = inputs;
    return [branch === undefined ? skip! : tf.add(skip!, branch)];
  },
  flops(attrs, [skip], _outputs, ctx) {
    const skipped =
      ctx?.options !== undefined && depthOf(readSubNetwork(ctx.options), attrs.stage) < attrs.block;
    return skipped ? 0 : skip!.reduce((a, b) => a * b, 1);
  },
});
