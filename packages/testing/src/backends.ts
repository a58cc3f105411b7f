import { type BackendName, useBackend } from '@dynn/core';
import { beforeEach, describe } from 'vitest';

/** True when running inside a browser rather than Node. */
export function inBrowser(): boolean {
  return typeof window !== 'undefined' && typeof document !== 'undefined';
}

/**
 * The backends tests run on in this environment: `cpu` and `wasm` in Node; `webgl`, `webgpu` and
 * `wasm` in a browser. In Node, `DYNN_TEST_BACKENDS` (comma-separated) chooses among `cpu`,
 * `wasm` and `webgpu` instead: `DYNN_TEST_BACKENDS=wasm` narrows the list, and
 * `DYNN_TEST_BACKENDS=webgpu` runs on WebGPU through Dawn (the `webgpu` package; @dynn/core's
 * `useBackend` says which environment it needs).
 */
export function testBackends(): BackendName[] {
  if (inBrowser()) return ['webgl', 'webgpu', 'wasm'];
  const requested = typeof process !== 'undefined' ? process.env.DYNN_TEST_BACKENDS : undefined;
  if (!requested) return ['cpu', 'wasm'];
  const wanted = requested.split(',').map((name) => name.trim());
  const available: BackendName[] = ['cpu', 'wasm', 'webgpu'];
  return available.filter((name) => wanted.includes(name));
}

/** True for backends that compute on a GPU (and so get looser tolerances). */
export function isGpuBackend(backend: string): boolean {
  return backend === 'webgl' || backend === 'webgpu';
}

/**
 * Activates `backend`. In the browser the dev server serves the wasm binaries from
 * `node_modules`, so their path is set here.
 */
export async function activateBackend(backend: BackendName): Promise<void> {
  await useBackend(
    backend,
    inBrowser() ? { wasmPaths: '/node_modules/@tensorflow/tfjs-backend-wasm/dist/' } : {},
  );
}

/**
 * Declares `body` once per available backend, inside a `describe` block titled
 * `<name> [<backend>]`, with that backend active for every test in the block.
 *
 * @example
 * ```ts
 * describeEachBackend('dense', (backend) => {
 *   it('matches the reference', async () => {
 *     // runs on cpu and wasm in Node; webgl, webgpu and wasm in Chromium
 *   });
 * });
 * ```
 */
export function describeEachBackend(name: string, body: (backend: BackendName) => void): void {
  for (const backend of testBackends()) {
    describe(`${name} [${backend}]`, () => {
      beforeEach(async () => {
        await activateBackend(backend);
      });
      body(backend);
    });
  }
}
