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

/**
 * Makes `name` the active tfjs backend, importing its package on first use. Resolves once the
 * backend is ready; rejects with a `BACKEND_UNAVAILABLE` {@link DynnError} when it cannot start
 * here (for example `webgpu` where the platform has no WebGPU adapter).
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
  const [backendModule] = await Promise.all([load(), ensureGradients()]);
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
          ? 'WebGPU needs a browser with WebGPU enabled (Chromium: --enable-unsafe-webgpu).'
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
