import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { playwright } from '@vitest/browser-playwright';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './chromium-launch';

// Workspace packages resolve to their sources, so tests need no build of their dependencies.
const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const alias = {
  '@dynn/core': source('./packages/core/src/index.ts'),
  '@dynn/testing': source('./packages/testing/src/index.ts'),
  '@dynn/datasets': source('./packages/datasets/src/index.ts'),
  '@dynn/early-exit': source('./packages/early-exit/src/index.ts'),
};

const hasChromium = existsSync(CHROMIUM_PATH);
if (!hasChromium) {
  if (process.env.CI) {
    throw new Error(`CI must run the browser tests, but Chromium is missing at ${CHROMIUM_PATH}.`);
  }
  console.warn(
    `[dynn] browser tests skipped: no Chromium at ${CHROMIUM_PATH}. ` +
      'Enable them with `sudo apt-get install chromium` (or set CHROMIUM_PATH).',
  );
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
    projects: hasChromium ? [nodeProject, browserProject] : [nodeProject],
  },
});
