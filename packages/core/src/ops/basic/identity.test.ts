import { checkOpGradients, describeEachBackend, guardLeaks, runOp, seededUniform } from '@dynn/testing';
import { describe, expect, it } from 'vitest';
import { inputTensor, outputTensor } from '../../channel-axes.js';
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

describe('core.Identity channels', () => {
  it('ties each numeric non-batch axis of input and output', () => {
    const x = { name: 'x', dtype: 'int32' as const, shape: [BATCH, 'time', 5] };
    expect(identityOp.channels!({}, [x], [x])).toEqual({
      spaces: { axis2: 5 },
      axes: [
        { tensor: outputTensor(0), axis: 2, space: 'axis2' },
        { tensor: inputTensor(0), axis: 2, space: 'axis2' },
      ],
    });
  });
});
