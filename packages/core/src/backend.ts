import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import { ensureGradients } from './gradients.js';

/** The tfjs backends dynn runs on. */
export type BackendName = 'wasm' | 'cpu' | 'webgl' | 'webgpu';

/** The backends dynn knows, in order of preference for speed in Node. */
export const BACKEND_NAMES: readonly BackendName[] = ['wasm', 'cpu', 'webgl', 'webgpu'];

/** Options for {@link useBackend}. */
export interface UseBackendOptions {
  /**
   * Where the browser fetches the wasm binaries from (a folder URL ending in `/`). Bundlers move
   * files, so browser apps using `wasm` usually need this; Node finds them by itself.
   */
  wasmPaths?: string;
}

const loaders: Record<BackendName, () => Promise<unknown>> = {
  // Each backend package registers itself with tfjs when imported; importing lazily keeps
  // unused backends out of bundles and out of memory.
  cpu: () => import('@tensorflow/tfjs-backend-cpu'),
  wasm: () => import('@tensorflow/tfjs-backend-wasm'),
  webgl: () => import('@tensorflow/tfjs-backend-webgl'),
  webgpu: () => import('@tensorflow/tfjs-backend-webgpu'),
};

/** The npm package of each backend: optional peer dependencies of `@dynn/core`. */
const backendPackages: Record<BackendName, string> = {
  cpu: '@tensorflow/tfjs-backend-cpu',
  wasm: '@tensorflow/tfjs-backend-wasm',
  webgl: '@tensorflow/tfjs-backend-webgl',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
};

/**
 * Imports the backend's package; a package that is not installed (an optional peer dependency)
 * becomes a `BACKEND_UNAVAILABLE` error with the install command. Node ESM says
 * `ERR_MODULE_NOT_FOUND`, the CommonJS build `MODULE_NOT_FOUND`, browsers and bundlers only a
 * message; each names the missing package.
 */
async function loadBackendPackage(name: BackendName, load: () => Promise<unknown>): Promise<unknown> {
  try {
    return await load();
  } catch (error) {
    const pkg = backendPackages[name];
    const text = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown } | null)?.code;
    const notFound =
      code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      /cannot find (module|package)|failed to (resolve|fetch)/i.test(text);
    if (!notFound || !text.includes(pkg)) throw error;
    throw new DynnError(
      'BACKEND_UNAVAILABLE',
      `Backend '${name}' needs the package ${pkg}, which is not installed. ` +
        `Install it next to @dynn/core: npm install ${pkg}@^4.22.0`,
    );
  }
}

function inNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/** The npm package that gives Node a WebGPU implementation (Dawn); an optional peer of dynn. */
const NODE_WEBGPU_PACKAGE = 'webgpu';

/** How to run WebGPU in Node, appended to every error about it. */
const NODE_WEBGPU_HINT =
  'In Node, WebGPU runs through Dawn: `npm install webgpu`. Without a GPU driver, Dawn can use ' +
  "SwiftShader from Debian's chromium package: start Node with " +
  'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json LD_LIBRARY_PATH=/usr/lib/chromium ' +
  '(LD_LIBRARY_PATH is read only when the process starts).';

interface NodeWebGpuModule {
  create(flags: string[]): { requestAdapter(): Promise<unknown> };
  globals: Record<string, unknown>;
}

/**
 * Gives Node a `navigator.gpu` from the `webgpu` package (Dawn), which tfjs-backend-webgpu needs
 * before it is imported, plus the WebGPU constants (`GPUBufferUsage`, ...) it reads from the
 * global scope. Rejects with `BACKEND_UNAVAILABLE` when the package is missing or Dawn finds no
 * adapter.
 */
async function provideNodeWebGpu(): Promise<void> {
  const scope = globalThis as Record<string, unknown> & { navigator?: { gpu?: unknown } };
  if (scope.navigator?.gpu !== undefined) return;
  let webgpu: NodeWebGpuModule;
  try {
    // A variable specifier (and the ignore comments) keep bundlers from pulling this Node-only
    // native package into browser builds.
    const specifier = NODE_WEBGPU_PACKAGE;
    webgpu = (await import(/* @vite-ignore */ /* webpackIgnore: true */ specifier)) as NodeWebGpuModule;
  } catch (error) {
    const reason = error instanceof Error ? ` (${error.message})` : '';
    throw new DynnError(
      'BACKEND_UNAVAILABLE',
      `Backend 'webgpu' needs the optional package 'webgpu' in Node, which could not be loaded${reason}. ` +
        NODE_WEBGPU_HINT,
    );
  }
  const gpu = webgpu.create([]);
  if ((await gpu.requestAdapter()) === null) {
    throw new DynnError(
      'BACKEND_UNAVAILABLE',
      "Backend 'webgpu' could not be initialised: Dawn found no WebGPU adapter (no Vulkan driver). " +
        NODE_WEBGPU_HINT,
    );
  }
  for (const [name, value] of Object.entries(webgpu.globals)) {
    if (!(name in scope)) Object.defineProperty(scope, name, { value, configurable: true, writable: true });
  }
  if (scope.navigator !== undefined && scope.navigator !== null) {
    // Node 21+ has a global navigator (without gpu).
    Object.defineProperty(scope.navigator, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(scope, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
}

/**
 * Makes `name` the active tfjs backend, importing its package on first use. Resolves once the
 * backend is ready; rejects with a `BACKEND_UNAVAILABLE` {@link DynnError} when it cannot start
 * here (for example `webgpu` where the platform has no WebGPU adapter).
 *
 * In Node, `webgpu` runs through Dawn, from the optional peer package `webgpu`
 * (`npm install webgpu`); without a GPU driver, start Node with
 * `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json LD_LIBRARY_PATH=/usr/lib/chromium`
 * to use SwiftShader from Debian's chromium package.
 *
 * @example
 * ```ts
 * await useBackend('wasm');
 * ```
 */
export async function useBackend(name: BackendName, options: UseBackendOptions = {}): Promise<void> {
  const load = loaders[name];
  if (load === undefined) {
    throw new DynnError(
      'BACKEND_UNAVAILABLE',
      `Unknown backend '${String(name)}'. Use one of: ${BACKEND_NAMES.join(', ')}.`,
    );
  }
  if (name === 'webgpu' && inNode()) await provideNodeWebGpu();
  const [backendModule] = await Promise.all([loadBackendPackage(name, load), ensureGradients()]);
  if (name === 'wasm' && options.wasmPaths !== undefined) {
    (backendModule as typeof import('@tensorflow/tfjs-backend-wasm')).setWasmPaths(options.wasmPaths);
  }
  let ok = false;
  let cause: unknown;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (error) {
    cause = error;
  }
  if (!ok || tf.getBackend() !== name) {
    const reason = cause instanceof Error ? `: ${cause.message}` : '';
    throw new DynnError(
      'BACKEND_UNAVAILABLE',
      `Backend '${name}' could not be initialised on this platform${reason}. ` +
        (name === 'webgpu'
          ? inNode()
            ? NODE_WEBGPU_HINT
            : 'WebGPU needs a browser with WebGPU enabled (Chromium: --enable-unsafe-webgpu).'
          : name === 'webgl'
            ? 'WebGL needs a browser (or a headless one with a GL implementation).'
            : 'Check that the backend package is installed.'),
    );
  }
}

/** The name of the active tfjs backend. */
export function activeBackend(): string {
  return tf.getBackend();
}

function noBackendError(): DynnError {
  const others = BACKEND_NAMES.filter((n) => n !== 'wasm').map((n) => `'${n}'`);
  return new DynnError(
    'BACKEND_UNAVAILABLE',
    "No TensorFlow.js backend is active. Choose one first: `await useBackend('wasm')` " +
      `(or ${others.join(', ')}). In Node, loadModel and importLayersModel start wasm by themselves.`,
  );
}

/**
 * True when a tfjs backend has been chosen (possibly still initialising) or registered backends
 * let tfjs pick one by itself; never asks tfjs to pick, so it cannot throw tfjs's own
 * "No backend found in registry".
 */
function backendChosen(): boolean {
  const engine = tf.engine();
  return engine.backendName != null || engine.backendNames().length > 0;
}

/**
 * Throws a `BACKEND_UNAVAILABLE` {@link DynnError} naming `await useBackend('wasm')` when no tfjs
 * backend is active or registered, where tfjs would fail with "No backend found in registry".
 * Synchronous, for synchronous entry points such as {@link createModel}.
 *
 * @internal
 */
export function assertBackend(): void {
  if (!backendChosen()) throw noBackendError();
}

/**
 * Makes sure a tfjs backend is active before dynn allocates tensors, for async entry points
 * ({@link loadModel}, {@link importLayersModel}, and through them the CLI). A backend already
 * chosen is left alone (its initialisation is awaited). Otherwise, in Node it starts dynn's
 * default, `wasm`; in a browser it lets tfjs pick among backends the app has imported, and
 * rejects with a `BACKEND_UNAVAILABLE` {@link DynnError} naming {@link useBackend} when there are
 * none.
 *
 * @example
 * ```ts
 * await ensureBackend(); // wasm in Node unless a backend was chosen
 * ```
 */
export async function ensureBackend(): Promise<void> {
  const engine = tf.engine();
  if (engine.backendName != null) {
    await tf.ready();
    return;
  }
  if (inNode()) {
    await useBackend('wasm');
    return;
  }
  if (!backendChosen()) throw noBackendError();
  await Promise.all([tf.ready(), ensureGradients()]);
}
