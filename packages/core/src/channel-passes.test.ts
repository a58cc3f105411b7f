import { describeEachBackend, expectRemovalMatchesMask, guardLeaks, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { channelGroups } from './channel-groups.js';
import { isDynnError } from './errors.js';
import type { Graph } from './ir.js';
import { createModel } from './model.js';
import { defineOp } from './op.js';
import { coreOps } from './ops/index.js';
import { definePlugin } from './plugin.js';
import { runPass } from './run-pass.js';
import { createRuntime } from './runtime.js';
import { tensorOwners } from './tensor-owners.js';

const runtime = createRuntime();

/** Self-attention with a residual Add, a feed-forward layer and a dense head over the last position. */
function attentionBlock(): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3, 4]);
  const h = b.add('core.Dense', x, { units: 6 }, { name: 'embed' });
  const attended = b.add(
    'core.MultiHeadAttention',
    [h, h],
    { numHeads: 3, keyDim: 2, valueDim: 3 },
    { name: 'attn' },
  );
  const mixed = b.add('core.Add', [h, attended], {}, { name: 'residual' });
  const ffn = b.add('core.Dense', mixed, { units: 5, activation: 'relu' }, { name: 'ffn' });
  const last = b.add('core.TimeStep', ffn, { index: -1 });
  return b.build({ logits: b.add('core.Dense', last, { units: 2 }, { name: 'head' }) });
}

/** Two convolutions concatenated, a conv over both, flattened into a dense head. */
function concatFlatten(): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4, 4, 2]);
  const left = b.add('core.Conv2D', x, { filters: 3, kernelSize: [3, 3], padding: 'same' }, { name: 'left' });
  const right = b.add(
    'core.Conv2D',
    x,
    { filters: 2, kernelSize: [1, 1], activation: 'relu' },
    { name: 'right' },
  );
  const joined = b.add('core.Concat', [left, right], {}, { name: 'joined' });
  const mixed = b.add(
    'core.Conv2D',
    joined,
    { filters: 3, kernelSize: [1, 1], strides: [2, 2] },
    { name: 'mix' },
  );
  const flat = b.add('core.Flatten', mixed, {}, { name: 'flat' });
  return b.build({ logits: b.add('core.Dense', flat, { units: 2 }, { name: 'head' }) });
}

/** A tanh RNN as a Scan over a Dense body, read out by a Dense. */
function scanRnn(): Graph {
  const body = new GraphBuilder(runtime);
  const h = body.input('h', 'float32', ['batch', 4]);
  const xt = body.input('x', 'float32', ['batch', 3]);
  const next = body.add(
    'core.Dense',
    body.add('core.Concat', [h, xt]),
    { units: 4, activation: 'tanh' },
    { name: 'cell' },
  );
  const b = new GraphBuilder(runtime);
  const h0 = b.input('h0', 'float32', ['batch', 4]);
  const xs = b.input('xs', 'float32', ['batch', 'time', 3]);
  const start = b.add('core.Dense', h0, { units: 4 }, { name: 'init' });
  const [last] = b.addMulti('core.Scan', [start, xs], { body: body.subGraph({ next }) }, { name: 'rnn' });
  return b.build({ y: b.add('core.Dense', last!, { units: 2 }, { name: 'readout' }) });
}

describeEachBackend('channel passes on built graphs', () => {
  guardLeaks();

  it('removes attention heads, value and feature channels: equal to masking them', async () => {
    const model = createModel(runtime, attentionBlock(), { seed: 1 });
    const x = seededUniform([2, 3, 4], { seed: 2 });
    const checks = await expectRemovalMatchesMask(model, x);
    const heads = checks.find((c) =>
      c.group.params.some((p) => p.name === 'attn/outputKernel' && p.axis === 0),
    )!;
    expect(heads.group.size).toBe(3);
    x.dispose();
    model.dispose();
  });

  it('removes channels through a Concat and a Flatten', async () => {
    const model = createModel(runtime, concatFlatten(), { seed: 3 });
    const x = seededUniform([2, 4, 4, 2], { seed: 4 });
    const checks = await expectRemovalMatchesMask(model, x);
    // left's 3 and right's 2 filters join one 5-channel group at the Concat; mix's 3 reach the head.
    expect(checks.map((c) => c.group.size).sort()).toEqual([3, 5]);
    x.dispose();
    model.dispose();
  });

  it('removes hidden units of a Scan body with the state it carries, not the input features beside them', async () => {
    const model = createModel(runtime, scanRnn(), { seed: 5 });
    const inputs = { h0: seededUniform([2, 4], { seed: 6 }), xs: seededUniform([2, 3, 3], { seed: 7 }) };
    const checks = await expectRemovalMatchesMask(model, inputs);
    const hidden = checks.find((c) =>
      c.group.params.some((p) => p.name === 'rnn/body/cell/kernel' && p.axis === 1),
    )!;
    expect(hidden.group.params.map((p) => `${p.name}:${p.axis}`)).toEqual(
      expect.arrayContaining(['init/kernel:1', 'rnn/body/cell/kernel:0', 'readout/kernel:0']),
    );
    // The body concatenates the state (4) with the step's input (3, from a graph input): one group
    // of 7 channels whose last 3 stay.
    expect(hidden.group.size).toBe(7);
    expect(hidden.group.fixed).toEqual([4, 5, 6]);
    tf.dispose(Object.values(inputs));
    model.dispose();
  });
});

describe('channel analysis', () => {
  it('has a channel declaration for every core op', () => {
    expect(coreOps.filter((op) => op.channels === undefined).map((op) => op.type)).toEqual([]);
  });

  it('names an op without a declaration as a barrier and blocks the groups that reach it', () => {
    const opaque = defineOp({
      type: 'demo.Opaque',
      version: 1,
      description: 'Passes its input on; declares no channels.',
      attrs: {},
      inputs: { min: 1 },
      inferShape: (_, [x]) => [{ shape: x!.shape, dtype: x!.dtype }],
      forward: (_, [x]) => [x!.clone()],
      flops: () => 0,
    });
    const withOpaque = createRuntime({
      plugins: [definePlugin({ name: 'demo', domain: 'demo', opset: 1, ops: [opaque] })],
    });
    const b = new GraphBuilder(withOpaque);
    const x = b.input('x', 'float32', ['batch', 4]);
    const hidden = b.add('core.Dense', x, { units: 3 }, { name: 'fc1' });
    const passed = b.add('demo.Opaque', hidden, {}, { name: 'mystery' });
    const graph = b.build({ y: b.add('core.Dense', passed, { units: 2 }, { name: 'fc2' }) });
    const { groups, barriers } = channelGroups(withOpaque, graph);
    expect(barriers).toEqual([{ node: 'mystery', op: 'demo.Opaque' }]);
    const blocked = groups.find((g) => g.params.some((p) => p.name === 'fc1/bias'))!;
    expect(blocked.blockers).toContain("node 'mystery' (demo.Opaque) declares no channels");
    const error = (() => {
      try {
        runPass(withOpaque, 'core.remove-channels', graph, { group: blocked.id, channels: [0] });
      } catch (e) {
        return e;
      }
    })();
    expect(isDynnError(error) && error.code === 'INVALID_OPTION' && /mystery/.test(error.message)).toBe(true);
  });

  it('ties every parameter to the node that declares it, shared ones to each', () => {
    const owners = tensorOwners(runtime, scanRnn());
    expect(owners.get('rnn/body/cell/kernel')).toEqual([
      { node: 'rnn/body/cell', op: 'core.Dense', local: 'kernel', kind: 'param' },
    ]);
    expect(owners.get('init/bias')?.[0]?.node).toBe('init');
  });

  it('refuses bad options with the fix named', () => {
    const graph = concatFlatten();
    const model = createModel(runtime, graph, { seed: 1 });
    const { groups } = channelGroups(runtime, graph);
    const group = groups.find((g) => g.fixed.length === 0)!;
    const fails = (pass: string, options: unknown) => {
      try {
        runPass(runtime, pass, model, options);
      } catch (e) {
        return isDynnError(e) ? e.message : String(e);
      }
      return 'no error';
    };
    expect(fails('core.remove-channels', { group: 99, channels: [0] })).toMatch(/channel groups 0 to/);
    expect(fails('core.remove-channels', { group: group.id, channels: [0, 0] })).toMatch(/distinct integers/);
    expect(
      fails('core.remove-channels', { group: group.id, channels: [...Array(group.size).keys()] }),
    ).toMatch(/keep at least one/);
    expect(fails('core.reorder-channels', { group: group.id, order: [0] })).toMatch(/permutation/);
    expect(fails('core.split-layer', { node: 'flat', sizes: [1, 1] })).toMatch(
      /no output channel axis|follow its input/,
    );
    expect(fails('core.split-layer', { node: 'mix', sizes: [1, 1] })).toMatch(/summing to 3/);
    expect(fails('core.extract', { outputs: ['nowhere'] })).toMatch(/no value 'nowhere'/);
    expect(() => runPass(runtime, 'core.remove-channels', graph, { group: group.id, channels: [0] })).toThrow(
      /was not given/,
    );
    model.dispose();
  });
});
