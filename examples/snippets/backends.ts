// Picking a backend: the fastest this platform runs, falling back in order. docs/backends.md
// quotes the region; CI runs it in Node (where it falls back to wasm) and in Chromium.
import { type BackendName, DynnError, isDynnError, type UseBackendOptions, useBackend } from '@dynn/core';

// #region fallback
/** Starts the first backend of `preferred` that runs here, and returns its name. */
export async function startBackend(
  preferred: readonly BackendName[],
  options: UseBackendOptions = {},
): Promise<BackendName> {
  for (const name of preferred) {
    try {
      await useBackend(name, options);
      return name;
    } catch (error) {
      // No WebGPU adapter, no WebGL context...: try the next one.
      if (!isDynnError(error, 'BACKEND_UNAVAILABLE')) throw error;
    }
  }
  throw new DynnError(
    'BACKEND_UNAVAILABLE',
    `None of the backends ${preferred.join(', ')} runs here; add 'wasm', which runs everywhere.`,
  );
}

/** In a page: WebGPU, else WebGL, else wasm, whose binaries the site serves at /tfjs-wasm/. */
export function startInBrowser(): Promise<BackendName> {
  return startBackend(['webgpu', 'webgl', 'wasm'], { wasmPaths: '/tfjs-wasm/' });
}
// #endregion fallback
