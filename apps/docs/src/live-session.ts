import { activeBackend, type BackendName, loadModel, type Model, type Runtime, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { type FashionSample, fetchFashionSample, firstImages } from './fashion-sample.js';

/** Where the site serves what the live examples need, as absolute URLs. */
export interface ExampleAssets {
  /** model.json of the core example's CNN. */
  coreModel: string;
  /** model.json of the early-exit example's multi-exit CNN. */
  earlyExitModel: string;
  /** The multi-exit CNN's calibration sweep. */
  calibration: string;
  /** Manifest of the Fashion-MNIST test images the examples classify. */
  sample: string;
  /** Folder of the tfjs wasm binaries, ending in `/`. */
  wasmPaths: string;
}

/**
 * The assets under a site root: `siteRoot` is the absolute URL of the site's base (with VitePress,
 * `new URL(withBase('/'), location.href).href`). The files come from `apps/docs/public/`; the wasm
 * binaries are served at `tfjs-wasm/` by the site config.
 */
export function exampleAssets(siteRoot: string): ExampleAssets {
  const at = (path: string) => new URL(path, siteRoot).href;
  return {
    coreModel: at('models/fashion-cnn/model.json'),
    earlyExitModel: at('models/fashion-cnn-exits/model.json'),
    calibration: at('models/fashion-cnn-exits/calibration.json'),
    sample: at('data/fashion-mnist-sample.json'),
    wasmPaths: at('tfjs-wasm/'),
  };
}

/** What {@link startBackend} started. */
export interface StartedBackend {
  /** The backend tfjs reports in use. */
  backend: string;
  /** What the page should know about how it runs, if anything. */
  note?: string;
}

/** The tfjs flag that computes WebGPU convolutions as an im2col pass plus a matrix product. */
const SEPARATE_IM2COL_FLAG = 'WEBGPU_CONV_SEPARATE_IM2COL_SHADER';

interface AdapterLike {
  isFallbackAdapter?: boolean;
  info?: { isFallbackAdapter?: boolean };
}

/**
 * Whether the browser's WebGPU adapter is a software (fallback) one: Chromium's SwiftShader, as in
 * headless Chromium on a machine without a GPU.
 */
export async function softwareWebGpu(): Promise<boolean> {
  const gpu = (
    globalThis.navigator as { gpu?: { requestAdapter(): Promise<AdapterLike | null> } } | undefined
  )?.gpu;
  const adapter = await gpu?.requestAdapter();
  return adapter?.info?.isFallbackAdapter === true || adapter?.isFallbackAdapter === true;
}

/**
 * Makes `backend` the active tfjs backend (importing its package on first use) and says which
 * backend tfjs reports in use. Rejects with a `BACKEND_UNAVAILABLE` DynnError when the browser
 * cannot start it (no WebGPU adapter, no WebGL context).
 *
 * On a software WebGPU adapter, tfjs's tiled convolution shader is very slow (its workgroup
 * barriers are emulated: a 3x3 convolution of 64 28x28 images took 5 s here); its im2col shader
 * takes a tenth of that, so it is switched on there, and the note says so.
 */
export async function startBackend(backend: BackendName, wasmPaths: string): Promise<StartedBackend> {
  await useBackend(backend, backend === 'wasm' ? { wasmPaths } : {});
  if (backend === 'webgpu' && (await softwareWebGpu())) {
    tf.env().set(SEPARATE_IM2COL_FLAG, true);
    return {
      backend: activeBackend(),
      note:
        "WebGPU runs on a software adapter here (no GPU): convolutions use tfjs's im2col shader, " +
        'several times faster than its tiled one on a software adapter.',
    };
  }
  return { backend: activeBackend() };
}

/**
 * What one live example holds between runs: the sample images (host memory, fetched once) and
 * models loaded on the active backend. Models live on the backend that loaded them, so switching
 * backends disposes them and loads them again there.
 */
export class LiveSession {
  /** Where the assets are. */
  readonly assets: ExampleAssets;
  private backend: string | undefined;
  private readonly models = new Map<string, Promise<Model>>();
  private sample: Promise<FashionSample> | undefined;

  constructor(assets: ExampleAssets) {
    this.assets = assets;
  }

  /** Starts `backend` (see {@link startBackend}). */
  async activate(backend: BackendName): Promise<StartedBackend> {
    if (this.backend !== backend || activeBackend() !== backend) this.disposeModels();
    const started = await startBackend(backend, this.assets.wasmPaths);
    this.backend = started.backend;
    return started;
  }

  /** The model at `url` (its model.json) on the active backend, loaded once per backend. */
  model(runtime: Runtime, url: string): Promise<Model> {
    let model = this.models.get(url);
    if (model === undefined) {
      model = loadModel(runtime, url);
      // A failed load is not cached: the next run tries again.
      model.catch(() => {
        if (this.models.get(url) === model) this.models.delete(url);
      });
      this.models.set(url, model);
    }
    return model;
  }

  /** The first `count` sample images (default: all), fetched once for every count. */
  async images(count?: number): Promise<FashionSample> {
    if (this.sample === undefined) {
      const sample = fetchFashionSample(this.assets.sample);
      sample.catch(() => {
        if (this.sample === sample) this.sample = undefined;
      });
      this.sample = sample;
    }
    const sample = await this.sample;
    return count === undefined ? sample : firstImages(sample, count);
  }

  /** Frees every model's tensors. */
  dispose(): void {
    this.disposeModels();
  }

  private disposeModels(): void {
    for (const model of this.models.values()) model.then((m) => m.dispose()).catch(() => {});
    this.models.clear();
  }
}
