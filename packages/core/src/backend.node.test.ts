/**
 * Backend start-up as a user's program meets it: each check runs in a FRESH Node process, where no
 * backend has been chosen (this test process always has one, which is how tfjs's raw "No backend
 * found in registry." went unnoticed). The child imports @dynn/core's sources through tsx.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, ensureBackend, useBackend } from './backend.js';
import { GraphBuilder } from './builder.js';
import { saveModel } from './io/save-model.js';
import { createModel } from './model.js';
import { createRuntime } from './runtime.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const coreEntry = pathToFileURL(join(root, 'packages/core/src/index.ts')).href;
const webgpuInstalled = (() => {
  try {
    createRequire(join(root, 'packages/core/package.json')).resolve('webgpu');
    return true;
  } catch {
    return false;
  }
})();

const INPUT = [
  [0.5, -1, 2],
  [1.5, 0.25, -0.75],
];

let folder = '';

interface Fresh {
  /** The JSON the child printed on its last stdout line. */
  result: Record<string, unknown>;
  stderr: string;
}

/**
 * Runs `body` (ES module code, with `core` = @dynn/core's sources and `tf` = tfjs-core in scope)
 * in a fresh Node process started from the repository root. `body` sets `out`, printed as JSON.
 */
function runFresh(
  body: string,
  options: { env?: NodeJS.ProcessEnv; imports?: string[] } = {},
): Promise<Fresh> {
  const code = [
    `const core = await import(${JSON.stringify(coreEntry)});`,
    "const tf = await import('@tensorflow/tfjs-core');",
    'const out = {};',
    'try {',
    body,
    '} catch (error) {',
    '  out.error = { name: error.name, code: error.code, message: error.message };',
    '}',
    'console.log(JSON.stringify(out));',
    // A WebGPU device (Dawn) can keep the process alive: exit once the result is printed.
    'process.exit(0);',
  ].join('\n');
  const imports = ['tsx', ...(options.imports ?? [])].flatMap((i) => ['--import', i]);
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...imports, '--input-type=module', '-e', code],
      { cwd: root, env: options.env ?? process.env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const last = stdout.trim().split('\n').at(-1) ?? '';
        try {
          resolve({ result: JSON.parse(last) as Record<string, unknown>, stderr });
        } catch {
          reject(
            new Error(`the child printed no result (${error?.message ?? 'exit 0'}):\n${stdout}\n${stderr}`),
          );
        }
      },
    );
  });
}

/** Child code building the graph `x [batch, 3] -> Dense(2)` as `graph` with `runtime`. */
const BUILD_GRAPH = `
const runtime = core.createRuntime();
const b = new core.GraphBuilder(runtime);
const x = b.input('x', 'float32', ['batch', 3]);
const graph = b.build({ y: b.add('core.Dense', x, { units: 2 }, { name: 'out' }) });
`;

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dynn-backend-'));
  await useBackend('wasm');
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

describe('a fresh process with no backend chosen', () => {
  it('createModel throws BACKEND_UNAVAILABLE naming useBackend, not tfjs\u2019s registry error', async () => {
    const { result } = await runFresh(`${BUILD_GRAPH}
core.createModel(runtime, graph);
out.created = true;`);
    const error = result.error as { name: string; code: string; message: string };
    expect(error).toBeDefined();
    expect(error.name).toBe('DynnError');
    expect(error.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.message).toContain("await useBackend('wasm')");
    expect(error.message).not.toContain('registry');
  });

  it('loadModel starts wasm by itself and gives the saved model its outputs', async () => {
    const runtime = createRuntime();
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', 3]);
    const graph = b.build({ y: b.add('core.Dense', x, { units: 2 }, { name: 'out' }) });
    const model = createModel(runtime, graph, { seed: 3 });
    const dir = join(folder, 'saved');
    await saveModel(model, dir);
    const input = tf.tensor2d(INPUT);
    const output = await model.predict(input);
    const expected = Array.from(await output.data());
    tf.dispose([input, output]);
    model.dispose();

    const { result } = await runFresh(`
out.before = tf.engine().backendName ?? null;
const model = await core.loadModel(core.createRuntime(), ${JSON.stringify(dir)});
out.backend = tf.getBackend();
const y = await model.predict(tf.tensor2d(${JSON.stringify(INPUT)}));
out.outputs = Array.from(await y.data());`);
    expect(result.error).toBeUndefined();
    expect(result.before).toBeNull();
    expect(result.backend).toBe('wasm');
    const outputs = result.outputs as number[];
    expect(outputs).toHaveLength(expected.length);
    outputs.forEach((value, i) => {
      expect(value).toBeCloseTo(expected[i]!, 5);
    });
  });

  it('importLayersModel starts wasm by itself', async () => {
    const reference = tfl.sequential({
      layers: [tfl.layers.dense({ inputShape: [3], units: 2, activation: 'tanh', name: 'out' })],
    });
    let saved: tf.io.ModelArtifacts | undefined;
    await reference.save(
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const dir = join(folder, 'layers');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'model.json'),
      JSON.stringify({
        format: 'layers-model',
        modelTopology: saved!.modelTopology,
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: saved!.weightSpecs }],
      }),
    );
    await writeFile(join(dir, 'group1-shard1of1.bin'), new Uint8Array(saved!.weightData as ArrayBuffer));
    const input = tf.tensor2d(INPUT);
    const output = reference.predict(input) as tf.Tensor;
    const expected = Array.from(await output.data());
    tf.dispose([input, output]);
    reference.dispose();

    const { result } = await runFresh(`
const model = await core.importLayersModel(core.createRuntime(), ${JSON.stringify(join(dir, 'model.json'))});
out.backend = tf.getBackend();
const y = await model.predict(tf.tensor2d(${JSON.stringify(INPUT)}));
out.outputs = Array.from(await y.data());`);
    expect(result.error).toBeUndefined();
    expect(result.backend).toBe('wasm');
    (result.outputs as number[]).forEach((value, i) => {
      expect(value).toBeCloseTo(expected[i]!, 5);
    });
  });
});

describe('ensureBackend', () => {
  it('leaves a backend already chosen alone', async () => {
    await useBackend('cpu');
    try {
      await ensureBackend();
      expect(activeBackend()).toBe('cpu');
    } finally {
      await useBackend('wasm');
    }
  });
});

describe("useBackend('webgpu') in Node", () => {
  it('without the webgpu package, says to install it and how to run it', async () => {
    // A resolve hook that makes `webgpu` missing, as in an app that did not install it.
    const hook = join(folder, 'no-webgpu-hook.mjs');
    await writeFile(
      hook,
      "export async function resolve(specifier, context, next) {\n  if (specifier === 'webgpu') {\n" +
        "    const error = new Error(\"Cannot find package 'webgpu'\");\n    error.code = 'ERR_MODULE_NOT_FOUND';\n" +
        '    throw error;\n  }\n  return next(specifier, context);\n}\n',
    );
    const register = join(folder, 'no-webgpu.mjs');
    await writeFile(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
    );
    const { result } = await runFresh("await core.useBackend('webgpu');\nout.backend = tf.getBackend();", {
      imports: [pathToFileURL(register).href],
    });
    const error = result.error as { code: string; message: string };
    expect(error?.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.message).toContain('npm install webgpu');
    expect(error.message).toContain('VK_ICD_FILENAMES=');
    expect(error.message).toContain('LD_LIBRARY_PATH=');
  });

  it.skipIf(!webgpuInstalled)('without a Vulkan driver, names the environment Dawn needs', async () => {
    // VK_ICD_FILENAMES pointing nowhere hides every Vulkan driver, even on a machine with a GPU.
    const { LD_LIBRARY_PATH: _, ...env } = process.env;
    const { result } = await runFresh("await core.useBackend('webgpu');\nout.backend = tf.getBackend();", {
      env: { ...env, VK_ICD_FILENAMES: join(folder, 'no-such-icd.json') },
    });
    const error = result.error as { code: string; message: string };
    expect(error?.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.message).toContain('no WebGPU adapter');
    expect(error.message).toContain('VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json');
  });

  it.skipIf(!webgpuInstalled || !existsSync('/usr/lib/chromium/vk_swiftshader_icd.json'))(
    "runs on Dawn's SwiftShader with the documented environment",
    async () => {
      const { result } = await runFresh(
        "await core.useBackend('webgpu');\nout.backend = tf.getBackend();\n" +
          'out.sum = Array.from(await tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1], [1]])).data());',
        {
          env: {
            ...process.env,
            VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json',
            LD_LIBRARY_PATH: '/usr/lib/chromium',
          },
        },
      );
      expect(result.error).toBeUndefined();
      expect(result.backend).toBe('webgpu');
      expect(result.sum).toEqual([3, 7]);
    },
  );
});
