import { checkOpGradients, describeEachBackend, guardLeaks, runOp, seededUniform } from '@dynn/testing';
import { describe, expect, it } from 'vitest';
import { BATCH } from '../../ir.js';
import { identityOp } from './identity.js';

describeEachBackend('core.Identity', () => {
  guardLeaks();

  it('passes its input through unchanged, gradients included', async () => {
    const x = seededUniform([2, 3]);
    const { outputs } = await runOp(identityOp, { inputs: [x] });
    expect(outputs).toEqual([x]);
    expect(Array.from(await outputs[0]!.data())).toEqual(Array.from(await x.data()));
    await checkOpGradients(identityOp, { inputs: [x] });
    x.dispose();
  });
});

describe('core.Identity shapes and FLOPs', () => {
  it('keeps shape and dtype, symbolic dimensions included', () => {
    const info = { name: 'x', dtype: 'bool' as const, shape: [BATCH, 'time'] };
    expect(identityOp.inferShape({}, [info])).toEqual([{ shape: [BATCH, 'time'], dtype: 'bool' }]);
    expect(identityOp.flops({}, [[2, 3]], [[2, 3]])).toBe(0);
  });
});
