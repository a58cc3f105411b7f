import {
  createModel,
  createOpContext,
  createRuntime,
  definePlugin,
  fit,
  GraphBuilder,
  isDynnError,
  type Model,
  resolveAttrs,
} from '@dynn/core';
import {
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  guardLeaks,
  runOp,
  seededInts,
  seededNormal,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { MOE_ROUTER_PLUGIN } from './identity.js';
import {
  initKeyValueKeys,
  KEY_VALUE_BOTTLENECK_OP,
  type KeyValueBottleneckAttrs,
  keyValueBottleneckOp,
  selectKeys,
} from './key-value-bottleneck.js';

const runtime = createRuntime({
  plugins: [definePlugin({ ...MOE_ROUTER_PLUGIN, ops: [keyValueBottleneckOp] })],
});

const attrs: KeyValueBottleneckAttrs = { heads: 3, keysPerHead: 4, keySize: 2, valueSize: 3 };

/**
 * Plain JS forward: per row and head, the projection, the nearest key by squared L2 (ties to the
 * lowest index), and the mean of the selected values. Also returns the selected keys and the
 * smallest gap between a row's nearest and second-nearest key, so tests can insist the choice is
 * clear on every backend.
 */
async function reference(
  z: tf.Tensor,
  projection: tf.Tensor,
  keys: tf.Tensor,
  values: tf.Tensor,
): Promise<{ output: number[]; selected: number[][]; gap: number }> {
  const [heads, d, dk] = projection.shape as [number, number, number];
  const [, k, dv] = values.shape as [number, number, number];
  const zs = await z.data();
  const p = await projection.data();
  const ks = await keys.data();
  const vs = await values.data();
  const rows = zs.length / d;
  const output: number[] = [];
  const selected: number[][] = [];
  let gap = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rows; r++) {
    const mean = new Array<number>(dv).fill(0);
    const chosen: number[] = [];
    for (let h = 0; h < heads; h++) {
      const q = Array.from({ length: dk }, (_, j) => {
        let s = 0;
        for (let i = 0; i < d; i++) s += zs[r * d + i]! * p[(h * d + i) * dk + j]!;
        return s;
      });
      const distances = Array.from({ length: k }, (_, key) =>
        q.reduce((s, v, j) => s + (v - ks[(h * k + key) * dk + j]!) ** 2, 0),
      );
      const best = distances.indexOf(Math.min(...distances));
      const sorted = [...distances].sort((a, b) => a - b);
      gap = Math.min(gap, sorted[1]! - sorted[0]!);
      chosen.push(best);
      for (let j = 0; j < dv; j++) mean[j]! += vs[(h * k + best) * dv + j]! / heads;
    }
    output.push(...mean);
    selected.push(chosen);
  }
  return { output, selected, gap };
}

/** Distinct keys per head in a selection. */
function distinctPerHead(selected: number[][], heads: number): number[] {
  return Array.from({ length: heads }, (_, h) => new Set(selected.map((row) => row[h])).size);
}

/** A graph: features [batch, d] -> key-value bottleneck 'kv' -> logits. */
function kvGraph(d: number, kvAttrs: KeyValueBottleneckAttrs) {
  const b = new GraphBuilder(runtime);
  const z = b.input('z', 'float32', ['batch', d]);
  return b.build({ logits: b.add(KEY_VALUE_BOTTLENECK_OP, z, kvAttrs, { name: 'kv' }) });
}

async function hostValues(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function bottleneckState(seed: number, d = 5) {
  return {
    projection: seededNormal([attrs.heads, d, attrs.keySize], { seed, std: 1 / Math.sqrt(d) }),
    keys: seededNormal([attrs.heads, attrs.keysPerHead, attrs.keySize], { seed: seed + 1 }),
    values: seededNormal([attrs.heads, attrs.keysPerHead, attrs.valueSize], { seed: seed + 2 }),
  };
}

describeEachBackend('moe-router.KeyValueBottleneck', () => {
  guardLeaks();

  it('matches a plain reference, in inference and in training, and records the keys used', async () => {
    const z = seededNormal([6, 5], { seed: 1 });
    const { projection, keys, values } = bottleneckState(2);
    const expected = await reference(z, projection, keys, values);
    // The data is chosen so that no row is near a tie: every backend picks the same keys.
    expect(expected.gap).toBeGreaterThan(0.02);
    const state = { projection, keys };
    for (const training of [false, true]) {
      const { outputs, effects } = await runOp(keyValueBottleneckOp, {
        attrs,
        inputs: [z],
        params: { values },
        state,
        training,
      });
      await expectClose(outputs[0]!, expected.output, { label: training ? 'training' : 'inference' });
      expect(outputs[0]!.shape).toEqual([6, attrs.valueSize]);
      // The decide step (inference only) reads the selection back and records it.
      expect(effects.records.keysUsed).toEqual(
        training ? undefined : distinctPerHead(expected.selected, attrs.heads),
      );
      tf.dispose(outputs);
    }
    // Features of higher rank: every position is read alike.
    const z3 = tf.reshape(z, [2, 3, 5]);
    const { outputs } = await runOp(keyValueBottleneckOp, { attrs, inputs: [z3], params: { values }, state });
    expect(outputs[0]!.shape).toEqual([2, 3, attrs.valueSize]);
    await expectClose(outputs[0]!, expected.output);
    tf.dispose([...outputs, z, z3, projection, keys, values]);
  });

  it('sends gradient to the selected values only', async () => {
    const z = seededNormal([4, 5], { seed: 4 });
    const { projection, keys, values } = bottleneckState(5);
    const weights = seededNormal([4, attrs.valueSize], { seed: 6 });
    const { selected } = await reference(z, projection, keys, values);
    const resolved = resolveAttrs(keyValueBottleneckOp, attrs, 'kv');
    const objective = (v: tf.Tensor, x: tf.Tensor) => {
      const { context } = createOpContext({
        node: { name: 'kv', op: KEY_VALUE_BOTTLENECK_OP, inputs: ['z'], outputs: ['kv'], attrs },
        attrs: resolved,
        params: { values: v },
        state: { projection, keys },
        training: true,
        options: {},
        rows: { batchSize: 4, indices: Int32Array.from([0, 1, 2, 3]) },
        inputGradients: [true],
        seed: 1,
      });
      const [out] = keyValueBottleneckOp.forward(context, [x]) as tf.Tensor[];
      return tf.sum(tf.mul(out!, weights));
    };
    const [gradValues] = tf.grads((v: tf.Tensor) => objective(v, z))([values]);
    const grad = await hostValues(gradValues!);
    const w = await hostValues(weights);
    const expected = new Array<number>(grad.length).fill(0);
    selected.forEach((row, r) => {
      row.forEach((key, h) => {
        for (let j = 0; j < attrs.valueSize; j++) {
          expected[(h * attrs.keysPerHead + key) * attrs.valueSize + j]! +=
            w[r * attrs.valueSize + j]! / attrs.heads;
        }
      });
    });
    await expectClose(gradValues!, expected);
    // Values no row selected get exactly zero.
    grad.forEach((g, i) => {
      if (expected[i] === 0) expect(g).toBe(0);
    });
    expect(expected.some((e) => e === 0)).toBe(true);
    tf.dispose([gradValues!, z, projection, keys, values, weights]);
  });

  it('trains only the values of the keys its rows select; keys, projections and encoder stay as they are', async () => {
    const kvAttrs = { heads: 2, keysPerHead: 6, keySize: 2, valueSize: 3 };
    const x = seededNormal([24, 4], { seed: 7 });
    const y = seededInts([24], 3, { seed: 8 });
    // An encoder in front: the selection is discrete, so no gradient reaches it.
    const b = new GraphBuilder(runtime);
    const input = b.input('x', 'float32', ['batch', 4]);
    const features = b.add('core.Dense', input, { units: 4 }, { name: 'encoder' });
    const logits = b.add(KEY_VALUE_BOTTLENECK_OP, features, kvAttrs, { name: 'kv' });
    const model = createModel(runtime, b.build({ logits, features }), { seed: 9 });
    const projection = model.state.get('kv/projection')!;
    const keys = model.state.get('kv/keys')!;
    // Keys 0-2 of each head: three rows' projections; keys 3-5 far away, never selected.
    const encoded = await model.predict(x, { output: 'features' });
    const placed = tf.tidy(() => {
      const side = tf.reshape(tf.transpose(projection, [1, 0, 2]), [4, 4]);
      const rows = tf.slice(encoded, 0, 3);
      const near = tf.transpose(tf.reshape(tf.matMul(rows, side), [3, 2, 2]), [1, 0, 2]);
      return tf.concat([near, tf.add(tf.zeros([2, 3, 2]), 1000)], 1);
    });
    keys.assign(placed);
    tf.dispose([placed, encoded]);
    const before = async () => ({
      keys: await hostValues(keys),
      projection: await hostValues(projection),
      encoder: await hostValues(model.params.get('encoder/kernel')!),
    });
    const frozen = await before();
    const history = await expectNoLeaks(async () => {
      const optimizer = tf.train.sgd(2);
      const h = await fit(model, { x, y }, { epochs: 4, batchSize: 8, optimizer, seed: 1 });
      optimizer.dispose();
      return h;
    });
    expect(history.epochs.at(-1)!.loss).toBeLessThan(history.epochs[0]!.loss);
    expect(await before()).toEqual(frozen);
    const values = await hostValues(model.params.get('kv/values')!);
    for (let h = 0; h < 2; h++) {
      for (let key = 0; key < 6; key++) {
        const row = values.slice((h * 6 + key) * 3, (h * 6 + key + 1) * 3);
        if (key < 3) expect(row.some((v) => v !== 0)).toBe(true);
        else expect(row).toEqual([0, 0, 0]);
      }
    }
    tf.dispose([x, y]);
    model.dispose();
  });

  it('reports the keys used and its FLOPs in a run', async () => {
    const kvAttrs = { heads: 2, keysPerHead: 5, keySize: 3, valueSize: 4 };
    const model = createModel(runtime, kvGraph(6, kvAttrs), { seed: 2 });
    const x = seededNormal([7, 6], { seed: 3 });
    const result = await expectNoLeaks(async () => {
      const run = await model.run(x, { report: true });
      const out = await hostValues(run.outputs.logits!);
      tf.dispose(Object.values(run.outputs));
      return { out, report: run.report! };
    });
    // Values start at zero.
    expect(result.out.every((v) => v === 0)).toBe(true);
    const node = result.report.nodes.find((n) => n.name === 'kv')!;
    const used = node.stats.keysUsed as number[];
    expect(used).toHaveLength(2);
    for (const count of used) expect(count).toBeGreaterThanOrEqual(1);
    expect(node.flops).toBe(7 * (2 * 6 * 2 * 3 + 2 * 2 * 5 * 3 + 2 * 4));
    // selectKeys gives the keys a run selects, per row and head.
    const selected = await expectNoLeaks(() => selectKeys(model, 'kv', x));
    const expected = await reference(
      x,
      model.state.get('kv/projection')!,
      model.state.get('kv/keys')!,
      model.params.get('kv/values')!,
    );
    expect(expected.gap).toBeGreaterThan(0.01);
    expect(Array.from(selected)).toEqual(expected.selected.flat());
    expect(used).toEqual(distinctPerHead(expected.selected, 2));
    x.dispose();
    model.dispose();
  });

  it('sets its keys by k-means on projected features', async () => {
    const kvAttrs = { heads: 2, keysPerHead: 3, keySize: 2, valueSize: 2 };
    const model = createModel(runtime, kvGraph(4, kvAttrs), { seed: 5 });
    // Three tight clusters of features: each head's keys land on their projections.
    const centres = [
      [4, 0, 0, 0],
      [0, 4, 0, 0],
      [0, 0, 4, 4],
    ];
    const noiseTensor = seededNormal([30, 4], { seed: 6, std: 0.01 });
    const noise = await hostValues(noiseTensor);
    noiseTensor.dispose();
    const rows = Float32Array.from(noise, (v, i) => v + centres[Math.floor(i / 4) % 3]![i % 4]!);
    const x = tf.tensor2d(rows, [30, 4]);
    const result = await expectNoLeaks(() => initKeyValueKeys(model, 'kv', x, { seed: 3 }));
    expect(result.rows).toBe(30);
    expect(result.inertia).toHaveLength(2);
    for (const inertia of result.inertia) expect(inertia).toBeLessThan(0.05);
    const projection = await hostValues(model.state.get('kv/projection')!);
    const keys = await hostValues(model.state.get('kv/keys')!);
    for (let h = 0; h < 2; h++) {
      const projected = centres.map((c) =>
        [0, 1].map((j) => c.reduce((s, v, i) => s + v * projection[(h * 4 + i) * 2 + j]!, 0)),
      );
      const found = new Set<number>();
      for (let k = 0; k < 3; k++) {
        const key = [keys[(h * 3 + k) * 2]!, keys[(h * 3 + k) * 2 + 1]!];
        const match = projected.findIndex((p) => Math.hypot(p[0]! - key[0]!, p[1]! - key[1]!) < 0.05);
        expect(match).toBeGreaterThanOrEqual(0);
        found.add(match);
      }
      expect(found.size).toBe(3);
    }
    // The same from host rows, on a sample: deterministic given the seed.
    const again = await initKeyValueKeys(model, 'kv', rows, { seed: 3, sampleRows: 12 });
    expect(again.rows).toBe(12);
    const run = await model.run(x, { report: true });
    expect(run.report!.nodes.find((n) => n.name === 'kv')!.stats.keysUsed).toEqual([3, 3]);
    tf.dispose([...Object.values(run.outputs), x]);
    model.dispose();
  });

  it('refuses bad nodes, features and inputs, naming the node and the fix', async () => {
    const kvAttrs = { heads: 2, keysPerHead: 4, keySize: 2, valueSize: 2 };
    const model: Model = createModel(runtime, kvGraph(3, kvAttrs), { seed: 1 });
    const bad = (code: 'INVALID_OPTION' | 'INVALID_INPUT') => (e: unknown) => isDynnError(e, code);
    const rows = new Float32Array(12);
    await expect(initKeyValueKeys(model, 'nope', rows)).rejects.toThrow(
      /node 'nope' is not in the model\. Key-value bottlenecks of the model: 'kv'/,
    );
    await expect(initKeyValueKeys(model, 'kv', new Float32Array(10))).rejects.toThrow(
      /reads 3 features per row; got 10 values/,
    );
    await expect(initKeyValueKeys(model, 'kv', new Float32Array(9))).rejects.toThrow(
      /4 keys per head but the features have only 3 rows/,
    );
    await expect(initKeyValueKeys(model, 'kv', rows, { sampleRows: 2 })).rejects.toSatisfy(
      bad('INVALID_OPTION'),
    );
    rows[7] = Number.NaN;
    await expect(initKeyValueKeys(model, 'kv', rows)).rejects.toSatisfy(bad('INVALID_INPUT'));
    await expect(selectKeys(model, 'kv', rows)).rejects.toThrow(/selectKeys: feature row 2 holds NaN/);
    const wide = tf.zeros([2, 4]);
    await expect(selectKeys(model, 'kv', wide)).rejects.toThrow(/got a tensor of shape \[2,4\]/);
    wide.dispose();
    model.dispose();
    const info = (shape: (number | string)[], dtype: 'float32' | 'int32' = 'float32') => [
      { name: 'z', dtype, shape },
    ];
    const infer = (shape: (number | string)[], dtype?: 'int32') => () =>
      keyValueBottleneckOp.inferShape(kvAttrs, info(shape, dtype));
    expect(infer(['batch'])).toThrow(/rank >= 2 \(\[batch, d\]\)/);
    expect(infer(['batch', 'd'])).toThrow(/last dimension d is a number, got \[batch, d\]/);
    expect(infer(['batch', 3], 'int32')).toThrow(/float32 features, got int32/);
    expect(keyValueBottleneckOp.inferShape(kvAttrs, info(['batch', 'time', 3]))).toEqual([
      { shape: ['batch', 'time', 2], dtype: 'float32' },
    ]);
    const b = new GraphBuilder(runtime);
    const ids = b.input('ids', 'int32', ['batch', 3]);
    expect(() => b.add(KEY_VALUE_BOTTLENECK_OP, ids, kvAttrs, { name: 'lookup' })).toThrow(/lookup/);
    expect(() => kvGraph(3, { ...kvAttrs, heads: 0 })).toThrow(/heads/);
  });
});
