import {
  describeEachBackend,
  expectClose,
  expectRemovalMatchesMask,
  guardLeaks,
  mobileNetV2Like,
  seededUniform,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { channelGroups } from './channel-groups.js';
import { loadModel } from './io/load-model.js';
import { saveModel } from './io/save-model.js';
import { importLayersModel } from './keras/import.js';
import { createModel, type Model } from './model.js';
import { applyPass, runPass } from './run-pass.js';
import { createRuntime } from './runtime.js';

const runtime = createRuntime();
let artifacts: tf.io.ModelArtifacts | undefined;

/** The Keras model imported on the active backend (built once: its artifacts are plain data). */
async function imported(): Promise<Model> {
  if (artifacts === undefined) {
    artifacts = await mobileNetV2Like({ size: 16, classes: 5, seed: 3 });
  }
  return importLayersModel(runtime, artifacts);
}

/** The changeable groups' first parameter names, to read the groups at a glance. */
function groupHeads(model: Model) {
  return channelGroups(runtime, model.graph)
    .groups.filter((g) => g.fixed.length === 0)
    .map((g) => ({ size: g.size, first: g.params[0]!.name, params: new Set(g.params.map((p) => p.name)) }));
}

describeEachBackend('channel groups of an imported MobileNetV2-like model', () => {
  guardLeaks();

  it('finds the residual stream, each expansion and the head as groups; the input and the classes stay', async () => {
    const model = await imported();
    const { groups, barriers } = channelGroups(runtime, model.graph);
    expect(barriers).toEqual([]);
    const changeable = groupHeads(model);
    expect(changeable.map((g) => g.size).sort((a, b) => a - b)).toEqual([8, 12, 24, 32, 36]);
    // The stem's 8 channels flow through block 1's depthwise, its projection and the residual Add.
    const stream = changeable.find((g) => g.size === 8)!;
    for (const name of [
      'stem/kernel',
      'stem_bn/gamma',
      'block1_dw/depthwiseKernel',
      'block1_project/kernel',
      'block2_expand/kernel',
    ]) {
      expect(stream.params.has(name), name).toBe(true);
    }
    // Blocks 2 and 3 share their 12-channel stream through block 3's Add.
    const second = changeable.find((g) => g.size === 12)!;
    for (const name of [
      'block2_project/kernel',
      'block3_project/kernel',
      'block3_expand/kernel',
      'head/kernel',
    ]) {
      expect(second.params.has(name), name).toBe(true);
    }
    // The head conv's channels reach the classifier's kernel rows through the global pool.
    const head = changeable.find((g) => g.size === 32)!;
    const logits = channelGroups(runtime, model.graph)
      .groups.find((g) => g.size === 32)!
      .params.find((p) => p.name === 'logits/kernel')!;
    expect(head.params.has('logits/kernel')).toBe(true);
    expect(logits.axis).toBe(0);
    // The image's 3 channels and the 5 classes are fixed, and say so.
    const fixed = groups.filter((g) => g.fixed.length === g.size);
    expect(fixed.map((g) => g.size).sort()).toEqual([3, 5]);
    expect(fixed.flatMap((g) => g.blockers).join('\n')).toMatch(
      /graph input 'image'[\s\S]*graph output|graph output[\s\S]*graph input 'image'/,
    );
    model.dispose();
  });

  it('removing channels of any one group gives a smaller model equal to the original with them masked', async () => {
    const model = await imported();
    const x = seededUniform([2, 16, 16, 3], { seed: 5 });
    const checks = await expectRemovalMatchesMask(model, x);
    expect(checks.map((c) => c.group.size).sort((a, b) => a - b)).toEqual([8, 12, 24, 32, 36]);
    for (const check of checks) expect(check.params.after).toBeLessThan(check.params.before);
    x.dispose();
    model.dispose();
  });

  it('reorders channels and splits a layer without changing the outputs', async () => {
    const model = await imported();
    const x = seededUniform([2, 16, 16, 3], { seed: 6 });
    const want = await model.predict(x);
    const stream = channelGroups(runtime, model.graph).groups.find(
      (g) => g.size === 8 && g.fixed.length === 0,
    )!;
    const reversed = applyPass(model, 'core.reorder-channels', {
      group: stream.id,
      order: [7, 6, 5, 4, 3, 2, 1, 0],
    });
    const split = applyPass(model, 'core.split-layer', { node: 'head', sizes: [20, 12] });
    expect(split.graph.nodes.filter((n) => n.name.startsWith('head_part')).length).toBe(2);
    for (const other of [reversed, split]) {
      const got = await other.predict(x);
      await expectClose(got, want);
      got.dispose();
      other.dispose();
    }
    tf.dispose([x, want]);
    model.dispose();
  });

  it('exports the features as a standalone, physically smaller model file that plain @dynn/core loads', async () => {
    const model = await imported();
    const head = channelGroups(runtime, model.graph).groups.find((g) => g.size === 32)!;
    const narrow = runPass(runtime, 'core.remove-channels', model, {
      group: head.id,
      channels: Array.from({ length: 16 }, (_, i) => i),
    });
    const features = runPass(runtime, 'core.extract', narrow, { outputs: ['pool'] });
    tf.dispose([...narrow.weights.values()]);
    let saved: tf.io.ModelArtifacts | undefined;
    await saveModel(
      features,
      tf.io.withSaveHandler(async (a) => {
        saved = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const reference = createModel(runtime, features.graph, { weights: features.weights });
    const loaded = await loadModel(createRuntime(), tf.io.fromMemory(saved!));
    expect(loaded.graph.outputs.map((o) => [o.name, o.shape])).toEqual([['pool', ['batch', 16]]]);
    expect(loaded.graph.nodes.some((n) => n.name === 'logits')).toBe(false);
    const x = seededUniform([2, 16, 16, 3], { seed: 7 });
    const got = await loaded.predict(x);
    const want = await reference.predict(x);
    await expectClose(got, want);
    tf.dispose([x, got, want]);
    loaded.dispose();
    reference.dispose();
    model.dispose();
  });
});
