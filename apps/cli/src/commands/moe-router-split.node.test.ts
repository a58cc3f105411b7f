import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createModel,
  createRuntime,
  GraphBuilder,
  loadModel,
  type Model,
  saveModel,
  useBackend,
} from '@dynn/core';
import { MOE_OP, moeOptions, moeRouter } from '@dynn/moe-router';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';

// The command runs in the built binary, in a fresh process; the fixture and the checks of what it
// wrote run here, the written model loaded by this process.

const runtime = createRuntime({ plugins: [moeRouter()] });
let dir: string;
let dense: Model;
let x: tf.Tensor;

/**
 * Feed-forward blocks on sequences `[batch, 3, 8]`: a residual one (`ffn1` 8 -> 32 relu, `ffn2`
 * 32 -> 8), then an MLP head (`cls1` 8 -> 12 tanh, `cls2` 12 -> 12 relu, `cls3` 12 -> 4) that
 * holds two overlapping blocks (`cls2` ends one and starts the other).
 */
function denseModel(): Model {
  const b = new GraphBuilder(runtime);
  const input = b.input('tokens', 'float32', ['batch', 3, 8]);
  const h = b.add('core.Dense', input, { units: 32, activation: 'relu' }, { name: 'ffn1' });
  const f = b.add('core.Dense', h, { units: 8 }, { name: 'ffn2' });
  const r = b.add('core.Add', [input, f], {}, { name: 'residual' });
  const c = b.add('core.Dense', r, { units: 12, activation: 'tanh' }, { name: 'cls1' });
  const c2 = b.add('core.Dense', c, { units: 12, activation: 'relu' }, { name: 'cls2' });
  const graph = b.build({ logits: b.add('core.Dense', c2, { units: 4 }, { name: 'cls3' }) });
  const model = createModel(runtime, graph, { seed: 1 });
  let i = 0;
  for (const v of model.params.values()) {
    const values = tf.randomUniform(v.shape, -0.6, 0.6, 'float32', 40 + i++);
    v.assign(values);
    values.dispose();
  }
  return model;
}

beforeAll(async () => {
  await useBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'dynn-moe-router-split-'));
  dense = denseModel();
  x = tf.randomNormal([5, 3, 8], 0, 1, 'float32', 3);
  await saveModel(dense, join(dir, 'dense'));
}, 60_000);

afterAll(async () => {
  dense?.dispose();
  x?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** Largest |a - b| beyond 1e-5 absolute + 1e-5 relative (0 when within). */
async function excess(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [va, vb] = await Promise.all([a.data(), b.data()]);
  let worst = 0;
  for (let i = 0; i < va.length; i++) {
    worst = Math.max(worst, Math.abs(va[i]! - vb[i]!) - 1e-5 - 1e-5 * Math.abs(vb[i]!));
  }
  return worst;
}

/** Loads the written model here and compares it, with `k` experts per token, to the dense model. */
async function compare(file: string, k: number): Promise<{ excess: number; moeNodes: string[] }> {
  const moe = await loadModel(runtime, file);
  const { outputs: a } = await moe.run(x, { report: false, options: moeOptions({ k }) });
  const { outputs: b } = await dense.run(x, { report: false });
  const result = {
    excess: await excess(a.logits!, b.logits!),
    moeNodes: moe.graph.nodes.filter((n) => n.op === MOE_OP).map((n) => n.name),
  };
  tf.dispose([...Object.values(a), ...Object.values(b)]);
  moe.dispose();
  return result;
}

describe('dynn moe-router split, the built binary', () => {
  it('MoEfies every block the experts split evenly; with every expert active the written model is the dense one', async () => {
    const out = join(dir, 'moefied');
    const run = await runDynn([
      'moe-router',
      'split',
      join(dir, 'dense', 'model.json'),
      out,
      '--experts',
      '4',
    ]);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    expect(run.out).toContain(
      `wrote ${join(out, 'model.json')}: 2 feed-forward blocks of ${join(dir, 'dense', 'model.json')} MoEfied (cluster) into 4 experts, top-2`,
    );
    expect(run.out).toContain('ffn1 (8 -> 32 -> 8): 4 experts of 8 neurons');
    expect(run.out).toContain('cls1 (8 -> 12 -> 12): 4 experts of 3 neurons');
    // cls2 starts a block too, but cls1's block ends with it.
    expect(run.out).not.toContain('cls2 (');
    const params = /params: ([\d,]+) dense -> ([\d,]+) in all, ([\d,]+) active per token/.exec(run.out);
    expect(params).not.toBeNull();
    const count = (s: string) => Number(s.replaceAll(',', ''));
    expect(count(params![1]!)).toBe(dense.paramCount);
    // The routers' kernels are new: [8, 4] per block.
    expect(count(params![2]!)).toBe(dense.paramCount + 2 * 8 * 4);
    expect(count(params![3]!)).toBeLessThan(count(params![2]!));
    const difference = /max \|MoE - dense\| = ([\d.e+-]+) on 8 random rows/.exec(run.out);
    expect(Number(difference![1])).toBeLessThan(1e-4);
    // FLOPs per token of the residual block: at top-2 of 4, about half the dense block's.
    const flops = /ffn1 .*; ([\d.]+) (k?)FLOPs per token dense -> ([\d.]+) (k?)FLOPs at top-2/.exec(run.out);
    const value = (n: string, unit: string) => Number(n) * (unit === 'k' ? 1e3 : 1);
    expect(value(flops![3]!, flops![4]!)).toBeLessThan(0.7 * value(flops![1]!, flops![2]!));
    const { excess: worst, moeNodes } = await compare(join(out, 'model.json'), 4);
    expect(worst).toBe(0);
    expect(moeNodes).toEqual(['ffn1', 'cls1']);
  }, 60_000);

  it('upcycles the blocks --node names: the written model is the dense one whatever k', async () => {
    const out = join(dir, 'upcycled');
    const run = await runDynn([
      'moe-router',
      'split',
      join(dir, 'dense', 'model.json'),
      out,
      '--experts',
      '3',
      '--top-k',
      '1',
      '--upcycle',
      '--node',
      'cls1',
    ]);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    expect(run.out).toContain('1 feed-forward block of');
    expect(run.out).toContain('upcycled into 3 experts, top-1');
    expect(run.out).toContain('cls1 (8 -> 12 -> 12): 3 experts of 12 neurons');
    for (const k of [1, 3]) {
      const { excess: worst, moeNodes } = await compare(join(out, 'model.json'), k);
      expect(worst).toBe(0);
      expect(moeNodes).toEqual(['cls1']);
    }
  }, 60_000);

  it('fails with exit code 1 and a message naming the file and the fix', async () => {
    const file = join(dir, 'dense', 'model.json');
    const missing = join(dir, 'nowhere', 'model.json');
    const out = join(dir, 'never');
    const [uneven, notBlock, overlap, noExperts, noFile] = await Promise.all([
      runDynn(['moe-router', 'split', file, out, '--experts', '5']),
      runDynn(['moe-router', 'split', file, out, '--experts', '4', '--node', 'residual']),
      runDynn(['moe-router', 'split', file, out, '--experts', '4', '--node', 'ffn1,cls1', '--node', 'cls2']),
      runDynn(['moe-router', 'split', file, out]),
      runDynn(['moe-router', 'split', missing, out, '--experts', '4']),
    ]);
    for (const run of [uneven, notBlock, overlap, noExperts, noFile]) {
      expect(run.code).toBe(1);
      expect(run.out).toBe('');
      expect(run.err).toMatch(/^dynn: /);
      expect(run.err).not.toMatch(/\n\s+at /);
    }
    expect(uneven.err).toContain(
      `${file} has no feed-forward block whose hidden neurons 5 experts share evenly`,
    );
    expect(uneven.err).toContain('ffn1 (8 -> 32 -> 8), cls1 (8 -> 12 -> 12), cls2 (12 -> 12 -> 4)');
    expect(notBlock.err).toContain("node 'residual' is a core.Add; give the first core.Dense");
    expect(overlap.err).toContain("--node ffn1,cls1,cls2: the blocks of 'cls1' and 'cls2' share node 'cls2'");
    expect(noExperts.err).toContain('give --experts N');
    expect(noFile.err).toContain(missing);
    expect(noFile.err).toContain('does not exist');
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
