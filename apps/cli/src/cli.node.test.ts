import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel, createRuntime, fileHandler, GraphBuilder, saveModel, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpGraph } from './demo-models.js';
import { runDynn } from './spawn-dynn.js';

// Every command runs the built binary in a fresh process, as users run it: no backend chosen
// beforehand, nothing shared with this test process but the files. (The fixtures below are made
// in-process; the commands under test are not.)

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

describe('dynn, the built binary', () => {
  it('--version prints the version of @dynn/cli', async () => {
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    const run = await runDynn(['--version']);
    expect(run.code).toBe(0);
    expect(run.out.trim()).toBe(version);
  });

  it('--help lists the core commands, each package group, bench and demo', async () => {
    const run = await runDynn(['--help']);
    expect(run.code).toBe(0);
    for (const command of ['demo', 'inspect', 'predict', 'convert', 'early-exit', 'bench']) {
      expect(run.out).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    }
  });

  it.each([
    ['demo'],
    ['demo', 'early-exit'],
    ['inspect'],
    ['predict'],
    ['convert'],
    ['early-exit', 'add'],
    ['bench', 'core'],
    ['bench', 'early-exit'],
    ['bench', 'early-exit', 'text'],
  ])('%s --help describes the command', async (...command) => {
    const run = await runDynn([...command, '--help']);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^Usage: dynn/);
  });

  it('bench commands share --json, --quick, --no-progress and --update-docs', async () => {
    for (const bench of [['core'], ['early-exit'], ['early-exit', 'text']]) {
      const { out } = await runDynn(['bench', ...bench, '--help']);
      for (const flag of ['--json', '--quick', '--no-progress', '--update-docs']) expect(out).toContain(flag);
    }
  });

  it('an unknown command or option fails with exit code 1 and says so', async () => {
    const unknown = await runDynn(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/unknown command 'frobnicate'/);
    const option = await runDynn(['inspect', '--bogus']);
    expect(option.code).toBe(1);
    expect(option.err).toMatch(/unknown option '--bogus'/);
  });

  it('inspect prints nodes, shapes, parameters and FLOPs without any backend set up', async () => {
    const run = await runDynn(['inspect', join(dir, 'mlp', 'model.json'), '--json']);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    const inspection = JSON.parse(run.out);
    expect(inspection.nodes.map((n: { name: string }) => n.name)).toEqual(['dense1', 'dense2', 'classifier']);
    expect(inspection.totalParams).toBe(784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
    expect(inspection.nodes[0].flops).toBeGreaterThanOrEqual(2 * 784 * 512);
    // The hidden layers' units can shrink; the input's pixels and the classes cannot.
    expect(
      inspection.channelGroups.map((g: { size: number; fixed: number; layers: string[] }) => [
        g.size,
        g.fixed,
        g.layers,
      ]),
    ).toEqual([
      [784, 784, ['dense1']],
      [512, 0, ['dense1', 'dense2']],
      [512, 0, ['dense2', 'classifier']],
      [10, 10, ['classifier']],
    ]);
    const text = await runDynn(['inspect', join(dir, 'mlp', 'model.json')]);
    expect(text.out).toContain('| dense1 | core.Dense | [batch, 512] |');
    expect(text.out).toContain("| 0 | 784 | 784 | dense1 | graph input 'pixels' (axis 1) cannot change |");
  });

  it('inspect names a missing file', async () => {
    const run = await runDynn(['inspect', join(dir, 'nowhere', 'model.json')]);
    expect(run.code).toBe(1);
    expect(run.err).toMatch(/^dynn: .*nowhere/);
  });

  it('inspect lists sub-graph nodes under their parent, counting their cost once', async () => {
    // A tanh RNN as one core.Scan node: its body's nodes live in the node's `body` attribute.
    await useBackend('wasm');
    const runtime = createRuntime();
    const body = new GraphBuilder(runtime);
    const h = body.input('h', 'float32', ['batch', 6]);
    const x = body.input('x', 'float32', ['batch', 5]);
    const joined = body.add('core.Concat', [h, x], {}, { name: 'join' });
    const next = body.add('core.Dense', joined, { units: 6, activation: 'tanh' }, { name: 'cell' });
    const y = body.add('core.Dense', next, { units: 3 }, { name: 'readout' });
    const b = new GraphBuilder(runtime);
    const h0 = b.input('h0', 'float32', ['batch', 6]);
    const xs = b.input('xs', 'float32', ['batch', 'time', 5]);
    const [last, ys] = b.addMulti(
      'core.Scan',
      [h0, xs],
      { body: body.subGraph({ next, y }) },
      { name: 'rnn' },
    );
    const logits = b.add('core.Dense', last!, { units: 2 }, { name: 'head' });
    const model = createModel(runtime, b.build({ logits, ys: ys! }), { seed: 1 });
    await saveModel(model, join(dir, 'rnn'));
    model.dispose();
    const file = join(dir, 'rnn', 'model.json');

    const run = await runDynn(['inspect', file, '--json']);
    expect(run.err).toBe('');
    const inspection = JSON.parse(run.out);
    expect(inspection.nodes.map((n: { name: string; parent?: string }) => [n.name, n.parent])).toEqual([
      ['rnn', undefined],
      ['rnn/body/join', 'rnn'],
      ['rnn/body/cell', 'rnn'],
      ['rnn/body/readout', 'rnn'],
      ['head', undefined],
    ]);
    const byName = Object.fromEntries(inspection.nodes.map((n: { name: string }) => [n.name, n]));
    expect(byName['rnn/body/cell']).toMatchObject({ outputShape: ['batch', 6], params: 11 * 6 + 6 });
    expect(byName.rnn).toMatchObject({ outputShape: ['batch', 6], params: 11 * 6 + 6 + 6 * 3 + 3 });
    const perStep = ['join', 'cell', 'readout'].reduce((s, n) => s + byName[`rnn/body/${n}`].flops, 0);
    expect(byName.rnn.flops).toBe(perStep); // time counts as 1
    expect(inspection.totalFlops).toBe(byName.rnn.flops + byName.head.flops);
    expect(inspection.totalParams).toBe(11 * 6 + 6 + 6 * 3 + 3 + 6 * 2 + 2);
    expect(inspection.unsizedDims).toEqual(['time']);

    const text = await runDynn(['inspect', file]);
    expect(text.out).toContain('| rnn | core.Scan | [batch, 6] | 93 |');
    expect(text.out).toContain('|   rnn/body/cell | core.Dense | [batch, 6] | 72 |');
    expect(text.out).toMatch(/already in the row of the node that holds them/);
    expect(text.out).toContain('FLOPs per row take time = 1.');

    // predict takes the sequence by input name, with any time length.
    const input = join(dir, 'rnn-input.json');
    await writeFile(
      input,
      JSON.stringify({ h0: [Array(6).fill(0)], xs: [Array(3).fill(Array(5).fill(0.5))] }),
    );
    const predicted = await runDynn(['predict', file, '--input', input, '--json']);
    expect(predicted.err).toBe('');
    const prediction = JSON.parse(predicted.out);
    expect(prediction.logits.shape).toEqual([1, 2]);
    expect(prediction.ys.shape).toEqual([1, 3, 3]);
  });

  it('predict runs a model on a JSON input', async () => {
    const input = join(dir, 'input.json');
    await writeFile(input, JSON.stringify([Array(784).fill(0.5), Array(784).fill(0)]));
    const run = await runDynn(['predict', join(dir, 'mlp', 'model.json'), '--input', input, '--json']);
    expect(run.code).toBe(0);
    const prediction = JSON.parse(run.out);
    expect(prediction.logits.shape).toEqual([2, 10]);
    expect(prediction.logits.values[1]).toEqual(Array(10).fill(0));
  });

  it('predict names the file when the input is not JSON', async () => {
    const input = join(dir, 'broken.json');
    await writeFile(input, '[1, 2');
    const run = await runDynn(['predict', join(dir, 'mlp', 'model.json'), '--input', input]);
    expect(run.code).toBe(1);
    expect(run.err).toContain('broken.json');
  });

  it('early-exit add inserts exits that change nothing until enabled', async () => {
    const source = join(dir, 'mlp', 'model.json');
    const run = await runDynn(['early-exit', 'add', source, join(dir, 'exits'), '--at', 'dense1,dense2']);
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/with 2 exits/);
    const inspection = JSON.parse(
      (await runDynn(['inspect', join(dir, 'exits', 'model.json'), '--json'])).out,
    );
    expect(inspection.nodes.filter((n: { op: string }) => n.op === 'early-exit.Exit')).toHaveLength(2);
    const input = join(dir, 'exit-input.json');
    await writeFile(input, JSON.stringify([Array(784).fill(0.25)]));
    const before = JSON.parse((await runDynn(['predict', source, '--input', input, '--json'])).out);
    const after = JSON.parse(
      (await runDynn(['predict', join(dir, 'exits', 'model.json'), '--input', input, '--json'])).out,
    );
    expect(after.logits.values).toEqual(before.logits.values);
    const neither = await runDynn(['early-exit', 'add', source, join(dir, 'bad')]);
    expect(neither.code).toBe(1);
    expect(neither.err).toMatch(/exactly one of --at/);
  });

  it('convert turns a tfjs-layers model into a dynn model with equal outputs, plain and quantized', async () => {
    const layers = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 4, activation: 'relu', inputShape: [3] }),
        tfl.layers.dense({ units: 2 }),
      ],
    });
    await layers.save(fileHandler(join(dir, 'keras')));
    const run = await runDynn(['convert', join(dir, 'keras', 'model.json'), join(dir, 'converted')]);
    expect(run.code).toBe(0);
    expect(run.out).toContain('2 nodes');
    const input = join(dir, 'small.json');
    await writeFile(input, JSON.stringify([[1, -2, 3]]));
    const predicted = await runDynn([
      'predict',
      join(dir, 'converted', 'model.json'),
      '--input',
      input,
      '--json',
    ]);
    const x = tf.tensor2d([[1, -2, 3]]);
    const expected = layers.predict(x) as tf.Tensor;
    const values = Object.values(JSON.parse(predicted.out))[0] as { values: number[][] };
    const want = (await expected.array()) as number[][];
    values.values[0]!.forEach((v, i) => {
      expect(v).toBeCloseTo(want[0]![i]!, 5);
    });
    tf.dispose([x, expected]);
    layers.dispose();
    expect(JSON.parse(await readFile(join(dir, 'converted', 'model.json'), 'utf8')).format).toBe(
      'dynn-graph',
    );
    const quantized = await runDynn([
      'convert',
      join(dir, 'keras', 'model.json'),
      join(dir, 'quantized'),
      '--quantize',
      'uint8',
    ]);
    expect(quantized.code).toBe(0);
    expect(quantized.out).toMatch(/uint8/);
    const manifest = JSON.parse(await readFile(join(dir, 'quantized', 'model.json'), 'utf8'));
    const entries = manifest.weightsManifest.flatMap((group: { weights: unknown[] }) => group.weights);
    expect(entries.some((w: { quantization?: { dtype: string } }) => w.quantization?.dtype === 'uint8')).toBe(
      true,
    );
    const bad = await runDynn([
      'convert',
      join(dir, 'keras', 'model.json'),
      join(dir, 'q'),
      '--quantize',
      'int4',
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/int4/);
  });

  it('bench core --quick --json prints dynn and tfjs-layers side by side in the bench envelope', async () => {
    const run = await runDynn(['bench', 'core', '--quick', '--json']);
    expect(run.code).toBe(0);
    const envelope = JSON.parse(run.out);
    expect(Object.keys(envelope)).toEqual([
      'bench',
      'backend',
      'date',
      'machine',
      'quick',
      'results',
      'sparse',
      'overhead',
      'overhead_goals',
      'error',
    ]);
    expect(envelope).toMatchObject({ bench: 'core', backend: 'wasm', quick: true, error: null });
    expect(Object.keys(envelope.machine).sort()).toEqual([
      'cores',
      'cpu',
      'memoryGiB',
      'node',
      'platform',
      'tfjs',
    ]);
    expect(envelope.results).toHaveLength(6);
    for (const row of envelope.results) {
      expect(Object.keys(row).sort()).toEqual(['case', 'dynn_ms', 'model', 'ratio', 'tfjs_error', 'tfjs_ms']);
      expect(row.dynn_ms).toBeGreaterThan(0);
      if (row.tfjs_ms !== null) expect(row.ratio).toBeCloseTo(row.dynn_ms / row.tfjs_ms, 10);
    }
    // tfjs-layers cannot train a convnet on wasm; dynn can.
    expect(envelope.results[5].tfjs_error).toMatch(/Conv2DBackpropFilter/);
    // The executor-overhead row: 200 tiny nodes, report off and on, at batch 1 and 256, against
    // tfjs-layers and a hand-written tf.tidy chain, each ratio with its goal.
    expect(envelope.overhead_goals).toEqual({ ratio: 1.1, tidy_ratio: 1.5 });
    expect(envelope.overhead.map((r: { case: string; report: boolean }) => [r.case, r.report])).toEqual([
      ['inference, batch 1', false],
      ['inference, batch 1', true],
      ['inference, batch 256', false],
      ['inference, batch 256', true],
    ]);
    for (const row of envelope.overhead) {
      expect(Object.keys(row).sort()).toEqual([
        'case',
        'dynn_ms',
        'model',
        'ratio',
        'ratio_goal_met',
        'report',
        'tfjs_ms',
        'tidy_ms',
        'tidy_ratio',
        'tidy_ratio_goal_met',
      ]);
      expect(row.model).toBe('200 tiny nodes (executor overhead)');
      for (const key of ['dynn_ms', 'tfjs_ms', 'tidy_ms']) expect(row[key]).toBeGreaterThan(0);
      expect(row.ratio).toBeCloseTo(row.dynn_ms / row.tfjs_ms, 10);
      expect(row.tidy_ratio).toBeCloseTo(row.dynn_ms / row.tidy_ms, 10);
      expect(row.ratio_goal_met).toBe(row.ratio <= 1.1);
      expect(row.tidy_ratio_goal_met).toBe(row.tidy_ratio <= 1.5);
    }
  }, 120_000);

  it('demo --quick trains, evaluates, writes a report and lists the other demos', async () => {
    const out = join(dir, 'demo');
    const run = await runDynn(['demo', '--quick', '--no-progress', '--out', out]);
    expect(run.err).toContain('backend: wasm');
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/test accuracy: \d+\.\d+%/);
    expect(run.out).toMatch(/FLOPs per image: [\d.]+ MFLOPs/);
    expect(run.out).toMatch(/dynn demo early-exit: /);
    const report = await readFile(join(out, 'README.md'), 'utf8');
    expect(report).toContain('![training curve](training-curve.svg)');
    expect(await readFile(join(out, 'training-curve.svg'), 'utf8')).toMatch(/^<svg/);
    // The early-exit section: the same CNN static and dynamic, measured, with its curve.
    expect(run.err).toMatch(/early exit: \d+\.\d+% at [\d.]+ MFLOPs\/image \(static/);
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

  it('demo early-exit --quick compares the static and the early-exit network', async () => {
    const out = join(dir, 'demo-early-exit');
    const run = await runDynn(['demo', 'early-exit', '--quick', '--no-progress', '--out', out]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/static network: \d+\.\d+% at [\d.]+ MFLOPs\/image/);
    expect(run.out).toMatch(
      /early exit: \d+\.\d+% at [\d.]+ MFLOPs\/image \(served by exit 1 \/ 2 \/ 3 \/ final: /,
    );
    expect(await readFile(join(out, 'pareto.svg'), 'utf8')).toMatch(/^<svg/);
  }, 120_000);

  it('--plugin loads a third-party package command, bench and demo', async () => {
    const plugin = join(dir, 'hello-plugin.mjs');
    await writeFile(
      plugin,
      `export default {
  name: 'hello',
  description: 'a plugin that greets',
  commands: [{
    name: 'greet',
    description: 'greets someone',
    arguments: [{ name: 'who', description: 'whom to greet' }],
    options: [{ flags: '--times <n>', description: 'how often', parse: 'positive-int', default: 1 }],
    async run({ args, options, out }) { out(\`hello \${args[0]}\\n\`.repeat(options.times)); },
  }],
  benches: [{
    description: 'counts to three',
    async run({ quick }) { return { fields: { counted: quick ? 1 : 3 }, markdown: () => 'counted' }; },
  }],
  demo: { description: 'waves', async run({ out }) { out('wave\\n'); } },
};
`,
    );
    const greet = await runDynn(['--plugin', plugin, 'hello', 'greet', 'world', '--times', '2']);
    expect(greet.err).toBe('');
    expect(greet.out).toBe('hello world\nhello world\n');
    const bench = await runDynn(['--plugin', plugin, 'bench', 'hello', '--quick', '--json']);
    expect(JSON.parse(bench.out)).toMatchObject({ bench: 'hello', quick: true, counted: 1, error: null });
    const demo = await runDynn([`--plugin=${plugin}`, 'demo', 'hello']);
    expect(demo.out).toBe('wave\n');
    const missing = await runDynn(['--plugin', join(dir, 'absent.mjs'), '--help']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/absent\.mjs/);
  });

  it('a failing bench still prints its envelope with the error under --json', async () => {
    const plugin = join(dir, 'failing-plugin.mjs');
    await writeFile(
      plugin,
      `export default { name: 'failing', description: 'fails', benches: [{ description: 'fails',
  async run() { throw new Error('out of patience'); } }] };\n`,
    );
    const run = await runDynn(['--plugin', plugin, 'bench', 'failing', '--json']);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.out)).toMatchObject({
      bench: 'failing',
      error: { message: 'out of patience', code: null },
    });
    expect(run.err).toContain('dynn: out of patience');
  });
});
