import type { BackendName } from '@dynn/core';

/** A backend the live examples offer, with the name the picker shows. */
export interface BackendChoice {
  name: BackendName;
  label: string;
}

/** The backends the picker offers, GPU first. */
export const BACKEND_CHOICES: readonly BackendChoice[] = [
  { name: 'webgpu', label: 'WebGPU' },
  { name: 'webgl', label: 'WebGL' },
  { name: 'wasm', label: 'WebAssembly (wasm)' },
  { name: 'cpu', label: 'CPU (plain JavaScript)' },
];

/**
 * The backend a page starts on when its address names none: wasm runs everywhere, needs no GPU
 * program compilation and is the fastest on these small networks without a GPU.
 */
export const DEFAULT_BACKEND: BackendName = 'wasm';

/** The query parameter that picks the backend: `?backend=webgl`. */
export const BACKEND_PARAM = 'backend';

/** What {@link backendFromSearch} read from a page address. */
export interface BackendRequest {
  /** The backend to start on. */
  backend: BackendName;
  /** Why the address's choice was not taken, when it named an unknown backend. */
  problem?: string;
}

function isBackendName(value: string): value is BackendName {
  return BACKEND_CHOICES.some((choice) => choice.name === value);
}

/**
 * The backend a page address asks for with `?backend=<name>` (`location.search`), else
 * {@link DEFAULT_BACKEND}. An unknown name falls back to the default and says so in `problem`.
 */
export function backendFromSearch(search: string): BackendRequest {
  const requested = new URLSearchParams(search).get(BACKEND_PARAM);
  if (requested === null || requested === '') return { backend: DEFAULT_BACKEND };
  if (isBackendName(requested)) return { backend: requested };
  const names = BACKEND_CHOICES.map((choice) => choice.name).join(', ');
  return {
    backend: DEFAULT_BACKEND,
    problem: `The address asks for backend '${requested}', which does not exist; using ${DEFAULT_BACKEND}. Choose one of: ${names}.`,
  };
}

/** `search` (`location.search`) with `?backend=` set to `backend`, other parameters kept. */
export function searchWithBackend(search: string, backend: BackendName): string {
  const params = new URLSearchParams(search);
  params.set(BACKEND_PARAM, backend);
  return `?${params.toString()}`;
}

/**
 * What a live example shows for an error: its message, plus what to do when it is a backend that
 * cannot start here (a DynnError with code `BACKEND_UNAVAILABLE`).
 */
export function errorMessage(caught: unknown): string {
  const message = caught instanceof Error ? caught.message : String(caught);
  const code = (caught as { code?: unknown } | null)?.code;
  return code === 'BACKEND_UNAVAILABLE' ? `${message} Pick another backend above.` : message;
}
