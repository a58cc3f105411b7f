/**
 * The live examples in a real browser: builds the docs site (`npm run build` in apps/docs: API
 * reference, then `vitepress build`), serves the build on 127.0.0.1, opens every example page in
 * headless Chromium on every backend with `?backend=<name>`, and checks that the result renders,
 * that the backend line names the requested backend and that no error reached the console.
 * Saves `apps/docs/screenshots/<page>-<backend>.png` for each. Exits 1 on any failure.
 *
 * Run from apps/docs: `npx tsx e2e/run.ts`. Options: `--skip-build` serves the existing build;
 * `--site-url=http://localhost:5173/` checks a site already running there instead (the dev
 * server: `npm run dev`); `--backends=webgl,webgpu` narrows the backends (default: webgl,
 * webgpu, wasm, cpu). `CHROMIUM_PATH` overrides /usr/bin/chromium.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, chromiumMissingNote } from '../../../chromium-launch.js';
import { checkExamplePage, EXAMPLE_PAGES, type PageOutcome } from './examples.e2e.js';
import { serveStatic } from './static-server.js';

const docsDir = fileURLToPath(new URL('..', import.meta.url));
const distDir = join(docsDir, '.vitepress', 'dist');
const screenshotDir = join(docsDir, 'screenshots');
const ALL_BACKENDS = ['webgl', 'webgpu', 'wasm', 'cpu'];
/** WebGL and WebGPU run on SwiftShader (software) here: generous, but a hang still fails. */
const RESULT_TIMEOUT_MS = 90_000;

function fail(message: string): never {
  console.error(`[e2e] ${message}`);
  process.exit(1);
}

function optionValue(name: string): string | undefined {
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function requestedBackends(): string[] {
  const option = optionValue('backends');
  if (option === undefined) return ALL_BACKENDS;
  const names = option.split(',').filter(Boolean);
  const unknown = names.filter((name) => !ALL_BACKENDS.includes(name));
  if (names.length === 0 || unknown.length > 0) {
    fail(`--backends takes a comma-separated list of ${ALL_BACKENDS.join(', ')}; got '${option}'.`);
  }
  return names;
}

function build(): void {
  console.log('[e2e] building the site (npm run build in apps/docs)');
  const result = spawnSync('npm', ['run', 'build'], { cwd: docsDir, stdio: 'inherit' });
  if (result.status !== 0) fail(`the site build failed (exit ${result.status ?? result.signal}); see above.`);
}

async function main(): Promise<void> {
  const backends = requestedBackends();
  if (!existsSync(CHROMIUM_PATH)) {
    if (process.env.CI) fail(`CI must run the docs e2e checks, but Chromium is missing at ${CHROMIUM_PATH}.`);
    console.warn(chromiumMissingNote('docs e2e checks'));
    return;
  }
  const siteUrl = optionValue('site-url');
  if (siteUrl === undefined && !process.argv.includes('--skip-build')) build();
  if (siteUrl === undefined) {
    for (const example of EXAMPLE_PAGES) {
      if (!existsSync(join(distDir, example.path))) {
        fail(`the build has no ${example.path} (in ${distDir}); build the site first, without --skip-build.`);
      }
    }
  }
  const server = siteUrl === undefined ? await serveStatic(distDir) : { url: siteUrl, close: async () => {} };
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [...CHROMIUM_ARGS],
    headless: true,
  });
  const outcomes: PageOutcome[] = [];
  try {
    const what = siteUrl === undefined ? `serving ${distDir} at ${server.url}` : `checking ${server.url}`;
    console.log(`[e2e] ${what}; Chromium ${browser.version()}`);
    for (const example of EXAMPLE_PAGES) {
      for (const backend of backends) {
        const outcome = await checkExamplePage(browser, example, backend, {
          siteUrl: server.url,
          screenshotDir,
          timeoutMs: RESULT_TIMEOUT_MS,
        });
        outcomes.push(outcome);
        const verdict = outcome.problems.length === 0 ? 'ok  ' : 'FAIL';
        console.log(
          `[e2e] ${verdict} ${example.name} on ${backend} in ${outcome.seconds.toFixed(1)} s -> ${outcome.screenshot}`,
        );
        for (const problem of outcome.problems) console.log(`         ${problem}`);
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  const failed = outcomes.filter((o) => o.problems.length > 0);
  if (failed.length > 0) {
    fail(
      `${failed.length} of ${outcomes.length} example pages failed: ` +
        failed.map((o) => `${o.page} on ${o.backend}`).join(', '),
    );
  }
  console.log(`[e2e] all ${outcomes.length} example pages rendered on ${backends.join(', ')}`);
}

await main();
