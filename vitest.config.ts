import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import { CHROMIUM_ARGS, CHROMIUM_PATH, chromiumMissingNote } from './chromium-launch';

// Workspace packages resolve to their sources, so tests need no build of their dependencies.
const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const alias = {
  '@dynn/core': source('./packages/core/src/index.ts'),
  '@dynn/testing': source('./packages/testing/src/index.ts'),
  '@dynn/datasets': source('./packages/datasets/src/index.ts'),
  '@dynn/data-fashion-mnist': source('./packages/data-fashion-mnist/src/index.ts'),
  '@dynn/early-exit': source('./packages/early-exit/src/index.ts'),
  '@dynn/sorted-net': source('./packages/sorted-net/src/index.ts'),
  '@dynn/moe-router': source('./packages/moe-router/src/index.ts'),
  '@dynn/sparse-attention': source('./packages/sparse-attention/src/index.ts'),
  '@dynn/cli': source('./apps/cli/src/index.ts'),
};

const hasChromium = existsSync(CHROMIUM_PATH);
// WebGPU in Node runs through Dawn (the `webgpu` package) on SwiftShader's Vulkan driver, which
// Debian's chromium package ships (../shared/TOOLCHAIN.md). LD_LIBRARY_PATH is read only when a
// process starts, so the node-webgpu project sets it for its forked workers.
const SWIFTSHADER_DIR = '/usr/lib/chromium';
const SWIFTSHADER_ICD = `${SWIFTSHADER_DIR}/vk_swiftshader_icd.json`;
const hasSwiftShader = existsSync(SWIFTSHADER_ICD);
if (!hasChromium) {
  if (process.env.CI) {
    throw new Error(`CI must run the browser tests, but Chromium is missing at ${CHROMIUM_PATH}.`);
  }
  console.warn(
    chromiumMissingNote(
      hasSwiftShader
        ? 'browser tests (webgl, webgpu, wasm in Chromium)'
        : 'browser tests (webgl, webgpu, wasm in Chromium) and Node WebGPU tests',
    ),
  );
}
if (!hasSwiftShader) {
  if (process.env.CI) {
    throw new Error(`CI must run the Node WebGPU tests, but SwiftShader is missing at ${SWIFTSHADER_ICD}.`);
  }
  if (hasChromium) {
    console.warn(
      `[dynn] Node WebGPU tests skipped: no SwiftShader Vulkan driver at ${SWIFTSHADER_ICD}. ` +
        "Enable with `sudo apt-get install chromium` (Debian's package ships it); CI runs them.",
    );
  }
}

// `*.test.ts` runs in Node and in Chromium; `*.node.test.ts` only in Node; `*.browser.test.ts`
// only in Chromium.
const testFiles = ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'examples/**/*.test.ts'];

const nodeProject: TestProjectInlineConfiguration = {
  extends: true,
  test: {
    name: 'node',
    environment: 'node',
    include: testFiles,
    exclude: ['**/*.browser.test.ts', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
};

// A few op conformance tests, a training run and the backend check, on WebGPU alone in Node.
const nodeWebGpuProject: TestProjectInlineConfiguration = {
  extends: true,
  test: {
    name: 'node-webgpu',
    environment: 'node',
    include: [
      'packages/testing/src/backends.test.ts',
      'packages/core/src/train.test.ts',
      'packages/core/src/ops/basic/dense.test.ts',
      'packages/core/src/ops/basic/activation.test.ts',
      'packages/core/src/ops/spatial/conv2d.test.ts',
    ],
    // Forked workers get this environment when they start, as LD_LIBRARY_PATH needs.
    pool: 'forks',
    env: {
      DYNN_TEST_BACKENDS: 'webgpu',
      VK_ICD_FILENAMES: SWIFTSHADER_ICD,
      // biome-ignore lint/suspicious/noUndeclaredEnvVars: vitest runs outside turbo; kept, not an input.
      LD_LIBRARY_PATH: [SWIFTSHADER_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
};

const browserProject: TestProjectInlineConfiguration = {
  extends: true,
  test: {
    name: 'browser',
    include: testFiles,
    exclude: ['**/*.node.test.ts', '**/node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    browser: {
      enabled: true,
      headless: true,
      screenshotFailures: false,
      provider: playwright({
        launchOptions: {
          executablePath: CHROMIUM_PATH,
          args: [...CHROMIUM_ARGS],
        },
      }),
      instances: [{ browser: 'chromium' }],
    },
  },
};

export default defineConfig({
  resolve: { alias },
  test: {
    setupFiles: [source('./vitest.setup.ts')],
    projects: [
      nodeProject,
      ...(hasSwiftShader ? [nodeWebGpuProject] : []),
      ...(hasChromium ? [browserProject] : []),
    ],
  },
});
