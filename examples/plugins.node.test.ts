import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel, createRuntime, GraphBuilder, loadModel, saveModel, useBackend } from '@dynn/core';
import { guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../apps/cli/src/cli.js';
import type { CliContribution } from '../apps/cli/src/contribution.js';
import { BUILT_IN_CONTRIBUTIONS, loadContribution } from '../apps/cli/src/registry.js';
import layerScaleCli from './core/layer-scale-cli.js';
import { main as layerScaleFiles } from './core/layer-scale-files.js';
import { layerScale } from './core/layer-scale-plugin.js';

// The parts of docs/plugins.md that need Node: model files with plugin ops, the plugin's CLI
// contribution loaded as `dynn --plugin` loads it, and the package.json the docs recommend.
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

describe.each(['wasm', 'cpu'] as const)('plugin model files on %s', (backend) => {
  beforeAll(() => useBackend(backend));
  guardLeaks();

  it('layer-scale-files.output.txt is what core/layer-scale-files.ts logs', async () => {
    const lines: string[] = [];
    await layerScaleFiles(backend, (line) => lines.push(line));
    expect(`${lines.join('\n')}\n`).toBe(await readFile(here('./core/layer-scale-files.output.txt'), 'utf8'));
  });
});

describe('the layer-scale CLI contribution (core/layer-scale-cli.ts)', () => {
  let dir: string;
  let contribution: CliContribution;
  beforeAll(async () => {
    await useBackend('wasm');
    dir = await mkdtemp(join(tmpdir(), 'dynn-layer-scale-cli-'));
    // What `dynn --plugin ./examples/core/layer-scale-cli.ts ...` does first.
    contribution = await loadContribution(here('./core/layer-scale-cli.ts'));
  });

  it('is the default export of core/layer-scale-cli.ts', () => {
    expect(contribution.name).toBe(layerScaleCli.name);
    expect(contribution.commands?.map((c) => c.name)).toEqual(['add']);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  guardLeaks();

  async function dynn(...argv: string[]): Promise<string> {
    let out = '';
    const program = buildProgram((text) => {
      out += text;
    }, () => {}, [...BUILT_IN_CONTRIBUTIONS, contribution]);
    await program.parseAsync(['node', 'dynn', ...argv]);
    return out;
  }

  it('dynn layer-scale add inserts scales into a saved model and keeps its weights', async () => {
    const runtime = createRuntime();
    const b = new GraphBuilder(runtime);
    const h = b.add('core.Dense', b.input('x', 'float32', ['batch', 4]), { units: 8 }, { name: 'hidden' });
    const model = createModel(runtime, b.build({ logits: b.add('core.Dense', h, { units: 2 }) }), {
      seed: 3,
    });
    await saveModel(model, join(dir, 'plain'));
    expect(
      await dynn(
        'layer-scale',
        'add',
        join(dir, 'plain', 'model.json'),
        join(dir, 'scaled'),
        '--init',
        '0.25',
      ),
    ).toBe(`wrote ${join(dir, 'scaled', 'model.json')} with 2 scales\n`);
    const scaled = await loadModel(createRuntime({ plugins: [layerScale()] }), join(dir, 'scaled'));
    expect(scaled.graph.opsets).toEqual({ core: 2, 'layer-scale': 1 });
    expect(Array.from(await scaled.params.get('hidden_scale/gamma')!.data())).toEqual(Array(8).fill(0.25));
    expect(Array.from(await scaled.params.get('hidden/kernel')!.data())).toEqual(
      Array.from(await model.params.get('hidden/kernel')!.data()),
    );
    model.dispose();
    scaled.dispose();
  });

  it('dynn bench layer-scale --json --quick prints the bench envelope', async () => {
    const envelope = JSON.parse(await dynn('bench', 'layer-scale', '--json', '--quick'));
    expect(Object.keys(envelope)).toEqual([
      'bench',
      'backend',
      'date',
      'machine',
      'quick',
      'rows',
      'plain',
      'scaled',
      'error',
    ]);
    expect(envelope).toMatchObject({
      bench: 'layer-scale',
      backend: 'wasm',
      quick: true,
      rows: 256,
      error: null,
    });
    expect(envelope.scaled.flops_per_row).toBeGreaterThan(envelope.plain.flops_per_row);
  });

  it('dynn demo layer-scale trains the example and prints its compute report', async () => {
    expect(await dynn('demo', 'layer-scale')).toMatch(/^nodes: .*hidden_scale \(layer-scale\.Scale\)/);
  });
});

describe('layer-scale.package.json, the package.json docs/plugins.md recommends', () => {
  const read = async () => JSON.parse(await readFile(here('./core/layer-scale.package.json'), 'utf8'));

  it('names the package the plugin names, without side effects, for ESM and CommonJS', async () => {
    const pkg = await read();
    expect(pkg.name).toBe(layerScale().name);
    expect(pkg.sideEffects).toBe(false);
    expect(Object.keys(pkg.exports['.'])).toEqual(['import', 'require']);
    for (const format of ['import', 'require'])
      expect(Object.keys(pkg.exports['.'][format])).toEqual(['types', 'default']);
  });

  it('takes @dynn/core and tfjs-core as caret peers that the installed tfjs-core satisfies', async () => {
    const { peerDependencies: peers, peerDependenciesMeta: meta } = await read();
    expect(peers['@dynn/core']).toMatch(/^\^0\.\d+\.\d+$/);
    const [major, minor] = (peers['@tensorflow/tfjs-core'] as string).slice(1).split('.').map(Number);
    const [installedMajor, installedMinor] = tf.version_core.split('.').map(Number);
    expect(installedMajor).toBe(major);
    expect(installedMinor).toBeGreaterThanOrEqual(minor!);
    expect(meta['@dynn/cli'].optional).toBe(true);
  });

  it('has a ./cli entry that `dynn --plugin layer-scale-example/cli` resolves and loads', async () => {
    const app = await mkdtemp(join(tmpdir(), 'dynn-plugin-app-'));
    try {
      const installed = join(app, 'node_modules', 'layer-scale-example');
      await mkdir(join(installed, 'dist'), { recursive: true });
      await writeFile(join(installed, 'package.json'), JSON.stringify(await read()));
      await writeFile(
        join(installed, 'dist', 'cli.js'),
        "export default { name: 'layer-scale', description: 'LayerScale', commands: [] };\n",
      );
      const loaded = await loadContribution('layer-scale-example/cli', app);
      expect(loaded.name).toBe('layer-scale');
    } finally {
      await rm(app, { recursive: true, force: true });
    }
  });
});
