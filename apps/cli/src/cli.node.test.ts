import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel, createRuntime, fileHandler, saveModel, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from './cli.js';
import { mlpGraph } from './demo-models.js';

async function cli(...args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  const program = buildProgram(
    (text) => {
      out += text;
    },
    (text) => {
      err += text;
    },
  );
  try {
    await program.parseAsync(['node', 'dynn', ...args]);
    return { out, err, code: 0 };
  } catch (error) {
    const e = error as { exitCode?: number; message: string };
    return { out, err: err + e.message, code: e.exitCode ?? 1 };
  }
}

let dir: string;
beforeAll(async () => {
  await useBackend('wasm');
  dir = await mkdtemp(join(tmpdir(), 'dynn-cli-'));
  const runtime = createRuntime();
  const model = createModel(runtime, mlpGraph(runtime), { seed: 2 });
  await saveModel(model, join(dir, 'mlp'));
  model.dispose();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('dynn CLI', () => {
  it.each([
    ['demo'],
    ['inspect'],
    ['predict'],
    ['convert'],
    ['early-exit', 'add'],
    ['bench', 'core'],
    ['bench', 'early-exit'],
  ])('%s --help describes the command', async (...command) => {
    const { out, code } = await cli(...command, '--help');
    expect(code).toBe(0);
    expect(out).toMatch(/^Usage: dynn/);
  });

  it('inspect prints nodes, shapes, parameters and FLOPs', async () => {
    const { out } = await cli('inspect', join(dir, 'mlp', 'model.json'), '--json');
    const inspection = JSON.parse(out);
    expect(inspection.nodes.map((n: { name: string }) => n.name)).toEqual(['dense1', 'dense2', 'classifier']);
    expect(inspection.totalParams).toBe(784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
    expect(inspection.nodes[0].flops).toBeGreaterThanOrEqual(2 * 784 * 512);
    const text = await cli('inspect', join(dir, 'mlp', 'model.json'));
    expect(text.out).toContain('| dense1 | core.Dense | [batch, 512] |');
  });

  it('predict runs a model on a JSON input', async () => {
    const input = join(dir, 'input.json');
    await writeFile(input, JSON.stringify([Array(784).fill(0.5), Array(784).fill(0)]));
    const { out, code } = await cli('predict', join(dir, 'mlp', 'model.json'), '--input', input, '--json');
    expect(code).toBe(0);
    const prediction = JSON.parse(out);
    expect(prediction.logits.shape).toEqual([2, 10]);
    expect(prediction.logits.values[1]).toEqual(Array(10).fill(0));
  });

  it('early-exit add inserts exits that change nothing until enabled', async () => {
    const source = join(dir, 'mlp', 'model.json');
    const { out, code, err } = await cli(
      'early-exit',
      'add',
      source,
      join(dir, 'exits'),
      '--at',
      'dense1,dense2',
    );
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/with 2 exits/);
    const inspection = JSON.parse((await cli('inspect', join(dir, 'exits', 'model.json'), '--json')).out);
    expect(inspection.nodes.filter((n: { op: string }) => n.op === 'early-exit.Exit')).toHaveLength(2);
    const input = join(dir, 'exit-input.json');
    await writeFile(input, JSON.stringify([Array(784).fill(0.25)]));
    const before = JSON.parse((await cli('predict', source, '--input', input, '--json')).out);
    const after = JSON.parse(
      (await cli('predict', join(dir, 'exits', 'model.json'), '--input', input, '--json')).out,
    );
    expect(after.logits.values).toEqual(before.logits.values);
    const neither = await cli('early-exit', 'add', source, join(dir, 'bad'));
    expect(neither.code).toBe(1);
    expect(neither.err).toMatch(/exactly one of --at/);
  });

  it('predict names the file when the input is not JSON', async () => {
    const input = join(dir, 'broken.json');
    await writeFile(input, '[1, 2');
    const { code, err } = await cli('predict', join(dir, 'mlp', 'model.json'), '--input', input);
    expect(code).toBe(1);
    expect(err).toContain('broken.json');
  });

  it('convert turns a tfjs-layers model into a dynn model with equal outputs', async () => {
    const layers = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 4, activation: 'relu', inputShape: [3] }),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    await layers.save(fileHandler(join(dir, 'keras')));
    const { out, code } = await cli('convert', join(dir, 'keras', 'model.json'), join(dir, 'converted'));
    expect(code).toBe(0);
    expect(out).toContain('2 nodes');
    const input = join(dir, 'small.json');
    await writeFile(input, JSON.stringify([[1, -2, 3]]));
    const prediction = JSON.parse(
      (await cli('predict', join(dir, 'converted', 'model.json'), '--input', input, '--json')).out,
    );
    const x = tf.tensor2d([[1, -2, 3]]);
    const expected = layers.predict(x) as tf.Tensor;
    const values = Object.values(prediction)[0] as { values: number[][] };
    const want = await expected.array();
    values.values[0]!.forEach((v, i) => {
      expect(v).toBeCloseTo((want as number[][])[0]![i]!, 5);
    });
    tf.dispose([x, expected]);
    layers.dispose();
    expect(JSON.parse(await readFile(join(dir, 'converted', 'model.json'), 'utf8')).format).toBe(
      'dynn-graph',
    );
  });

  it('bench core measures dynn and tfjs-layers side by side (smoke run)', async () => {
    const { out, code } = await cli('bench', 'core', '--json', '--warmup', '1', '--repeats', '1');
    expect(code).toBe(0);
    const result = JSON.parse(out);
    expect(result.backend).toBe('wasm');
    expect(result.results).toHaveLength(6);
    for (const row of result.results) {
      expect(Object.keys(row).sort()).toEqual(['case', 'dynn_ms', 'model', 'ratio', 'tfjs_error', 'tfjs_ms']);
      expect(row.dynn_ms).toBeGreaterThan(0);
      if (row.tfjs_ms !== null) expect(row.ratio).toBeCloseTo(row.dynn_ms / row.tfjs_ms, 10);
    }
    // tfjs-layers cannot train a convnet on wasm; dynn can.
    expect(result.results[5].tfjs_error).toMatch(/Conv2DBackpropFilter/);
  }, 120_000);

  it('demo trains, evaluates and writes a report (smoke run)', async () => {
    const out = join(dir, 'demo');
    const result = await cli(
      'demo',
      '--epochs',
      '1',
      '--train-limit',
      '512',
      '--test-limit',
      '256',
      '--no-progress',
      '--out',
      out,
    );
    expect(result.err).toContain('backend: wasm');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/test accuracy: \d+\.\d+%/);
    expect(result.out).toMatch(/FLOPs per image: [\d.]+ MFLOPs/);
    const report = await readFile(join(out, 'README.md'), 'utf8');
    expect(report).toContain('![training curve](training-curve.svg)');
    expect(await readFile(join(out, 'training-curve.svg'), 'utf8')).toMatch(/^<svg/);
    // The early-exit section: the same CNN static and dynamic, measured, with its curve.
    expect(result.err).toMatch(/early exit: \d+\.\d+% at [\d.]+ MFLOPs\/image \(static/);
    expect(report).toContain('## Early exit: the same CNN, static and dynamic');
    expect(report).toContain('![accuracy vs FLOPs](early-exit-curve.svg)');
    expect(await readFile(join(out, 'early-exit-curve.svg'), 'utf8')).toMatch(/^<svg/);
    const measured = JSON.parse(await readFile(join(out, 'result.json'), 'utf8'));
    const e = measured.earlyExit;
    expect(e.exitHistogram.reduce((a: number, b: number) => a + b, 0)).toBe(256);
    expect(e.dynamicMflopsPerImage).toBeLessThanOrEqual(e.staticMflopsPerImage + 0.5);
    expect(e.staticMsPerBatch).toBeGreaterThan(0);
    expect(measured.testAccuracy).toBe(e.staticAccuracy);
  }, 120_000);
});
