import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DefaultTheme, defineConfig, type UserConfig } from 'vitepress';

// The site's pages are the repository's `docs/` folder, so the guides read the same on GitHub.
// `apps/docs` holds only the site's machinery: this config, the theme, live examples and the
// files they serve (`public/`).
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const srcDir = here('../../../docs');
const publicDir = here('../public');

// `@dynn/*` resolve to package sources, as in the root vitest config: `npm run docs` reloads
// library changes live, with no package build in between.
const packageSource = (name: string) => here(`../../../packages/${name}/src/index.ts`);
const dynnSources = {
  '@dynn/core': packageSource('core'),
  '@dynn/early-exit': packageSource('early-exit'),
  '@dynn/sorted-net': packageSource('sorted-net'),
  '@dynn/moe-router': packageSource('moe-router'),
  '@dynn/sparse-attention': packageSource('sparse-attention'),
  '@dynn/datasets': packageSource('datasets'),
  '@dynn/data-fashion-mnist': packageSource('data-fashion-mnist'),
  '@dynn/testing': packageSource('testing'),
};

type VitePlugin = NonNullable<NonNullable<UserConfig['vite']>['plugins']>[number];

/** URL folder the tfjs wasm binaries are served from: pass it as `useBackend('wasm', { wasmPaths })`. */
const WASM_URL = '/tfjs-wasm/';

/**
 * Serves tfjs-backend-wasm's `.wasm` binaries at {@link WASM_URL}: from node_modules in dev, and
 * copied into the built site by the client build. Bundlers do not follow the runtime `fetch`
 * tfjs makes for them, so without this the wasm backend cannot start in the browser.
 */
function tfjsWasmFiles(): VitePlugin {
  const wasmDir = dirname(
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json'),
  );
  const distDir = join(wasmDir, 'dist');
  const files = readdirSync(distDir).filter((file) => file.endsWith('.wasm'));
  let serverSideBuild = false;
  return {
    name: 'dynn-docs:tfjs-wasm-files',
    configResolved(config) {
      serverSideBuild = Boolean(config.build.ssr);
    },
    configureServer(server) {
      server.middlewares.use(WASM_URL, (request, response, next) => {
        const file = (request.url ?? '').split('?')[0]!.replace(/^\//, '');
        if (!files.includes(file)) return next();
        response.setHeader('Content-Type', 'application/wasm');
        response.end(readFileSync(join(distDir, file)));
      });
    },
    generateBundle() {
      if (serverSideBuild) return;
      for (const file of files) {
        this.emitFile({
          type: 'asset',
          fileName: `${WASM_URL.slice(1)}${file}`,
          source: readFileSync(join(distDir, file)),
        });
      }
    },
  };
}

/** The sidebar TypeDoc writes beside the API reference (`npm run api`). */
function apiSidebar(): DefaultTheme.SidebarItem[] {
  const file = join(srcDir, 'api/typedoc-sidebar.json');
  if (!existsSync(file)) {
    throw new Error(
      `The API reference is missing (${file}). Generate it with \`npm run api -w @dynn/docs\` ` +
        '(`npm run docs` and `npm run docs:build` do it first).',
    );
  }
  return JSON.parse(readFileSync(file, 'utf8')) as DefaultTheme.SidebarItem[];
}

const guide: DefaultTheme.SidebarItem[] = [
  {
    text: 'Guide',
    items: [
      { text: 'Introduction', link: '/' },
      { text: 'Getting started', link: '/getting-started' },
      { text: 'Concepts', link: '/concepts' },
      { text: 'Writing a plugin', link: '/plugins' },
      { text: 'Early exits', link: '/early-exit' },
      { text: 'Nested networks', link: '/sorted-net' },
      { text: 'Mixture of experts', link: '/moe-router' },
      { text: 'Sparse attention', link: '/sparse-attention' },
      { text: 'Backends', link: '/backends' },
      { text: 'Architecture', link: '/architecture' },
      { text: 'Releasing', link: '/releasing' },
    ],
  },
  {
    text: 'Packages',
    items: [
      { text: '@dynn/core', link: '/packages/core' },
      { text: '@dynn/early-exit', link: '/packages/early-exit' },
      { text: '@dynn/sorted-net', link: '/packages/sorted-net' },
      { text: '@dynn/moe-router', link: '/packages/moe-router' },
      { text: '@dynn/sparse-attention', link: '/packages/sparse-attention' },
      { text: '@dynn/datasets', link: '/packages/datasets' },
      { text: '@dynn/data-fashion-mnist', link: '/packages/data-fashion-mnist' },
      { text: '@dynn/testing', link: '/packages/testing' },
      { text: '@dynn/cli', link: '/packages/cli' },
    ],
  },
  {
    text: 'Live examples',
    items: [
      { text: 'A dynn model in your browser', link: '/examples/core' },
      { text: 'Early exits in your browser', link: '/examples/early-exit' },
      { text: 'Nested networks in your browser', link: '/examples/sorted-net' },
      { text: 'Experts in your browser', link: '/examples/moe-router' },
      { text: 'Sparse attention in your browser', link: '/examples/sparse-attention' },
    ],
  },
  { text: 'Benchmarks', link: '/benchmarks' },
  { text: 'API reference', link: '/api/' },
  {
    text: 'Decisions',
    link: '/decisions',
    collapsed: true,
    items: [
      { text: '0001 Monorepo layout and tools', link: '/decisions/0001-monorepo-layout-and-tools' },
      { text: '0002 Core runtime choices', link: '/decisions/0002-core-runtime-choices' },
      { text: '0003 The docs site', link: '/decisions/0003-docs-site' },
      { text: '0004 Packages as published', link: '/decisions/0004-packages-as-published' },
    ],
  },
];

export default defineConfig({
  title: 'dynn',
  description: 'Dynamic neural networks for TensorFlow.js: compute where an input needs it.',
  srcDir,
  // Dead links fail the build (VitePress's default, kept on purpose).
  ignoreDeadLinks: false,
  lastUpdated: false,
  themeConfig: {
    nav: [
      { text: 'Guide', link: '/getting-started' },
      { text: 'Packages', link: '/packages/core' },
      { text: 'Examples', link: '/examples/core' },
      { text: 'Benchmarks', link: '/benchmarks' },
      { text: 'API', link: '/api/' },
    ],
    sidebar: {
      '/api/': [
        { text: 'Guide', link: '/getting-started' },
        { text: 'API reference', link: '/api/', items: apiSidebar() },
      ],
      '/': guide,
    },
    outline: { level: [2, 3] },
    search: { provider: 'local' },
  },
  vite: {
    publicDir,
    resolve: { alias: dynnSources },
    plugins: [tfjsWasmFiles()],
  },
});
