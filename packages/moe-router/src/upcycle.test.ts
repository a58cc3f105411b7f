import { createModel, type Graph, isDynnError, type Model, runPass } from '@dynn/core';
import { describeEachBackend, expectClose, expectNoLeaks, seededNormal, toleranceFor } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { MOE_OP, type MoeAttrs } from './moe-op.js';
import { moeOptions } from './options.js';
import { paramValues, residualBlockGraph, residualBlockModel, runtime } from './test-models.js';
import { UPCYCLE_PASS, type UpcycleOptions, upcycleModel } from './upcycle.js';

describeEachBackend('moe-router.upcycle', (backend) => {
  const tolerance = toleranceFor(backend);

  it('computes the dense block at initialisation, whatever k: the normalised weights sum to 1', async () => {
    const dense = residualBlockModel();
    const x = seededNormal([2, 3, 8], { seed: 3 });
    await expectNoLeaks(async () => {
      const moe = upcycleModel(dense, { node: 'ffn1', experts: 4, k: 2, seed: 7 });
      const node = moe.graph.nodes.find((n) => n.op === MOE_OP)!;
      expect(moe.graph.nodes.map((n) => n.name)).toEqual(['ffn1', 'residual', 'head']);
      const attrs = node.attrs as unknown as MoeAttrs;
      expect(attrs.combine).toBe('normalized');
      expect(attrs.outputBias).toBe(true);
      expect(attrs.experts.map((g) => g.nodes.map((n) => n.attrs.units))).toEqual(Array(4).fill([16, 8]));
      // Four copies of the block's kernels and first bias, its second bias once, the router's [8, 4].
      const block = 8 * 16 + 16 + 16 * 8;
      expect(moe.paramCount).toBe(dense.paramCount + 3 * block + 8 * 4);
      // Every expert starts as the dense block.
      const w1 = await paramValues(dense, 'ffn1/kernel');
      for (let e = 0; e < 4; e++) expect(await paramValues(moe, `ffn1/experts/${e}/up/kernel`)).toEqual(w1);
      // The router starts small, normal and seeded.
      const router = await paramValues(moe, 'ffn1/kernel');
      expect(router.every((v) => Math.abs(v) < 0.1)).toBe(true);
      expect(router.some((v) => v !== 0)).toBe(true);
      const { outputs: reference } = await dense.run(x, { report: false });
      for (const k of [undefined, 1, 4]) {
        const { outputs } = await moe.run(x, {
          report: false,
          ...(k === undefined ? {} : { options: moeOptions({ k }) }),
        });
        await expectClose(outputs.y!, reference.y!, { tolerance, label: `k = ${k ?? 2}` });
        outputs.y!.dispose();
      }
      reference.y!.dispose();
      const again = upcycleModel(dense, { node: 'ffn1', experts: 4, seed: 7 });
      const other = upcycleModel(dense, { node: 'ffn1', experts: 4, seed: 8 });
      expect(await paramValues(again, 'ffn1/kernel')).toEqual(router);
      expect(await paramValues(other, 'ffn1/kernel')).not.toEqual(router);
      for (const m of [moe, again, other]) m.dispose();
    });
    x.dispose();
    dense.dispose();
  });
});

it('refuses what cannot be upcycled, naming the node and the fix', async () => {
  const dense = createModel(runtime, residualBlockGraph(), { seed: 1 });
  const refusal = (options: Partial<UpcycleOptions>, source: Model | Graph = dense): string => {
    try {
      const result = runPass(runtime, UPCYCLE_PASS, source, { node: 'ffn1', experts: 4, ...options });
      tf.dispose([...result.weights.values()]);
    } catch (error) {
      expect(isDynnError(error)).toBe(true);
      return (error as Error).message;
    }
    throw new Error(`upcycle accepted ${JSON.stringify(options)}`);
  };
  await expectNoLeaks(() => {
    expect(refusal({ node: 'head' })).toMatch(
      /moe-router.upcycle: 'y' \(the output of 'head'\) is a graph output/,
    );
    expect(refusal({ experts: 1 })).toMatch(/'experts' must be an integer from 2 to 1024 \(node 'ffn1'\)/);
    expect(refusal({ k: 0 })).toMatch(/'k' must be an integer from 1 to 4/);
    expect(refusal({ seed: 0.5 })).toMatch(/'seed' must be an integer/);
    expect(refusal({ method: 'cluster' } as Partial<UpcycleOptions>)).toMatch(/'method' is not an option/);
    expect(refusal({}, residualBlockGraph())).toMatch(
      /the weight 'ffn1\/kernel' of node 'ffn1' was not given/,
    );
  });
  dense.dispose();
});
