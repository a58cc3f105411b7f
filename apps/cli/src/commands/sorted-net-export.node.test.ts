import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel, createRuntime, loadModel, type Model, saveModel, useBackend } from '@dynn/core';
import {
  calibrateBatchNorm,
  describeNesting,
  nestModel,
  residualCnnGraph,
  type SubNetwork,
  sortedNet,
  subNetworkOptions,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDynn } from '../spawn-dynn.js';

// The command runs in the built binary, in a fresh process; the fixtures and the checks of what
// it wrote run here, the exported file loaded by a runtime without sorted-net.

let dir: string;
let nested: Model;
let x: tf.Tensor;
const SUBS: SubNetwork[] = [{ width: 0.5, depth: 1, kernel: 1 }];

beforeAll(async () => {
  await useBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'dynn-sorted-net-export-'));
  const runtime = createRuntime({ plugins: [sortedNet()] });
  const graph = residualCnnGraph(runtime, { size: 8, widths: [8, 16], blocks: 2 });
  const plain = createModel(runtime, graph, { seed: 1 });
  const untuned = await nestModel(plain, { multiple: 2, kernelSizes: [1, 3] });
  x = tf.randomUniform([6, 8, 8, 1], 0, 1, 'float32', 3);
  // Statistics recalibrated for one sub-network: the export must carry them into the plain file.
  nested = await calibrateBatchNorm(untuned, SUBS, { x });
  untuned.dispose();
  await saveModel(nested, join(dir, 'nested'));
  await saveModel(plain, join(dir, 'plain'));
  plain.dispose();
}, 60_000);

afterAll(async () => {
  nested?.dispose();
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

/** Runs the exported file with a plain runtime and the nested model at `sub`; returns the excess. */
async function compare(file: string, sub: SubNetwork): Promise<{ excess: number; ops: string[] }> {
  const exported = await loadModel(createRuntime(), file);
  const { outputs: a } = await exported.run(x, { report: false });
  const { outputs: b } = await nested.run(x, { report: false, options: subNetworkOptions(sub) });
  const result = { excess: await excess(a.logits!, b.logits!), ops: exported.graph.nodes.map((n) => n.op) };
  tf.dispose([...Object.values(a), ...Object.values(b)]);
  exported.dispose();
  return result;
}

describe('dynn sorted-net export, the built binary', () => {
  it('exports a sub-network that a runtime without sorted-net loads and runs as the nested model does', async () => {
    const out = join(dir, 'small');
    const run = await runDynn([
      'sorted-net',
      'export',
      join(dir, 'nested', 'model.json'),
      out,
      '--width',
      '0.5',
      '--depth',
      '1',
      '--kernel',
      '1',
    ]);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    expect(run.out).toContain(`wrote ${join(out, 'model.json')}: sub-network w0.5-d1-k1`);
    const params = /params: ([\d,]+) -> ([\d,]+)/.exec(run.out);
    const flops = /MFLOPs per sample: ([\d.]+) -> ([\d.]+)/.exec(run.out);
    expect(params).not.toBeNull();
    expect(flops).not.toBeNull();
    const count = (s: string) => Number(s.replaceAll(',', ''));
    expect(count(params![1]!)).toBe(nested.paramCount);
    expect(count(params![2]!)).toBeLessThan(count(params![1]!) / 3);
    expect(Number(flops![2])).toBeLessThan(Number(flops![1]) / 3);
    expect(run.out).toContain('core only');
    const { excess: worst, ops } = await compare(join(out, 'model.json'), SUBS[0]!);
    expect(worst).toBe(0);
    expect(ops.every((op) => op.startsWith('core.'))).toBe(true);
    // Folded by default: the batch norms are gone into the convolutions.
    expect(ops).not.toContain('core.BatchNorm');
  }, 60_000);

  it('takes a width per knob and a depth per stage, and keeps batch norms with --no-fold-batch-norm', async () => {
    const [first, second] = describeNesting(nested.graph).knobs;
    const out = join(dir, 'per-knob');
    const run = await runDynn([
      'sorted-net',
      'export',
      join(dir, 'nested', 'model.json'),
      out,
      '--width',
      `${first!.name}=0.25,${second!.name}=0.5`,
      '--depth',
      '2,0',
      '--no-fold-batch-norm',
    ]);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    const sub = { width: { [first!.name]: 0.25, [second!.name]: 0.5 }, depth: [2, 0] };
    const { excess: worst, ops } = await compare(join(out, 'model.json'), sub);
    expect(worst).toBe(0);
    expect(ops).toContain('core.BatchNorm');
  }, 60_000);

  it('fails with exit code 1 and a message naming the file and the fix', async () => {
    const nestedFile = join(dir, 'nested', 'model.json');
    const plainFile = join(dir, 'plain', 'model.json');
    const missing = join(dir, 'nowhere', 'model.json');
    const out = join(dir, 'never');
    const [notNested, badWidth, unknownKnob, badDepth, noFile] = await Promise.all([
      runDynn(['sorted-net', 'export', plainFile, out, '--width', '0.5']),
      runDynn(['sorted-net', 'export', nestedFile, out, '--width', '1.5']),
      runDynn(['sorted-net', 'export', nestedFile, out, '--width', 'bogus#out=0.5']),
      runDynn(['sorted-net', 'export', nestedFile, out, '--depth', '5']),
      runDynn(['sorted-net', 'export', missing, out]),
    ]);
    for (const run of [notNested, badWidth, unknownKnob, badDepth, noFile]) {
      expect(run.code).toBe(1);
      expect(run.out).toBe('');
      expect(run.err).toMatch(/^dynn: /);
      expect(run.err).not.toMatch(/\n\s+at /);
    }
    expect(notNested.err).toContain(plainFile);
    expect(notNested.err).toContain('is not a nested model');
    expect(notNested.err).toContain('nestModel(model, { multiple })');
    expect(badWidth.err).toContain('--width 1.5');
    expect(badWidth.err).toContain('in (0, 1]');
    expect(unknownKnob.err).toContain(`${nestedFile} has no width knob 'bogus#out'`);
    expect(unknownKnob.err).toContain(describeNesting(nested.graph).knobs[0]!.name);
    expect(badDepth.err).toContain('has 2 residual blocks: give 0 to 2');
    expect(noFile.err).toContain(missing);
    expect(noFile.err).toContain('does not exist');
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
