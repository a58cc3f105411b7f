import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';

/** A live example page and what its finished result must show. */
export interface ExamplePage {
  /** Short name, used in screenshot file names. */
  name: string;
  /** Path of the built page under the site root. */
  path: string;
  /** Problems with the rendered result (none: it rendered right). */
  check(page: Page): Promise<string[]>;
  /** After the screenshot: changes a control and checks the new result (`timeoutMs` to wait for it). */
  interact?(page: Page, timeoutMs: number): Promise<string[]>;
}

/** Images the result says it classified (its `data-count`). */
async function imagesClassified(page: Page): Promise<number> {
  return Number(await page.locator('[data-testid="result"]').getAttribute('data-count'));
}

async function gridProblems(page: Page): Promise<string[]> {
  const images = await imagesClassified(page);
  if (!(images > 0)) return [`the result names no image count (data-count is ${images})`];
  const cells = await page.locator('[data-testid="sample-grid"] li img').count();
  return cells === images ? [] : [`the image grid shows ${cells} images, not the ${images} classified`];
}

async function histogram(page: Page): Promise<number[]> {
  const texts = await page.locator('[data-testid="exit-histogram"] tr td:nth-child(2)').allTextContents();
  return texts.map(Number);
}

async function reportProblems(page: Page, minNodes: number): Promise<string[]> {
  const rows = await page.locator('[data-testid="compute-report"] tbody tr').count();
  return rows >= minNodes ? [] : [`the compute report lists ${rows} nodes, expected at least ${minNodes}`];
}

/** The example pages of the site, with their checks. */
export const EXAMPLE_PAGES: readonly ExamplePage[] = [
  {
    name: 'core',
    path: 'examples/core.html',
    async check(page) {
      return [...(await gridProblems(page)), ...(await reportProblems(page, 8))];
    },
    // The picker switches the backend in place and writes it into the address.
    async interact(page, timeoutMs) {
      const from = await page.locator('[data-testid="result"]').getAttribute('data-backend');
      const to = from === 'wasm' ? 'cpu' : 'wasm';
      await page.selectOption('[data-testid="backend-picker"]', to);
      const done = await page
        .waitForSelector(`[data-testid="result"][data-backend="${to}"], [data-testid="error"]`, {
          timeout: timeoutMs,
        })
        .catch(() => undefined);
      if (done === undefined) return [`no result within ${timeoutMs / 1000} s after picking ${to}`];
      if ((await done.getAttribute('data-testid')) === 'error') {
        return [`picking ${to} shows an error: ${await done.textContent()}`];
      }
      const problems: string[] = [];
      const line = (await page.locator('[data-testid="backend-in-use"]').textContent())?.trim();
      if (line !== `Backend in use: ${to}`)
        problems.push(`after picking ${to} the backend line reads '${line}'`);
      const address = new URL(page.url()).searchParams.get('backend');
      if (address !== to) problems.push(`after picking ${to} the address says backend=${address}`);
      return [...problems, ...(await gridProblems(page))];
    },
  },
  {
    name: 'early-exit',
    path: 'examples/early-exit.html',
    async check(page) {
      const problems = [...(await gridProblems(page)), ...(await reportProblems(page, 12))];
      const images = await imagesClassified(page);
      const counts = await histogram(page);
      const served = counts.reduce((a, b) => a + b, 0);
      if (counts.length !== 4 || served !== images) {
        problems.push(`the exit histogram is [${counts.join(', ')}]: expected 4 counts summing to ${images}`);
      } else if (counts.at(-1) === images) {
        problems.push('no image left at an early exit at the calibrated operating point');
      }
      const circles = await page.locator('[data-testid="pareto-plot"] svg circle').count();
      // The front's points plus the ring around the chosen one.
      if (circles < 3)
        problems.push(`the accuracy-vs-FLOPs plot has ${circles} circles: the curve did not render`);
      return problems;
    },
  },
  {
    name: 'sorted-net',
    path: 'examples/sorted-net.html',
    async check(page) {
      const problems = [...(await gridProblems(page)), ...(await reportProblems(page, 10))];
      const rows = await page.locator('[data-testid="sub-network-table"] tbody tr').count();
      if (rows !== 12)
        problems.push(`the sub-network table has ${rows} rows, expected 12 (4 widths x 3 depths)`);
      const current = await page.locator('[data-testid="sub-network-table"] tbody tr.current').count();
      if (current !== 1)
        problems.push(`the sub-network table marks ${current} rows as the one run, expected 1`);
      return problems;
    },
    // Picking a narrower, shallower sub-network runs it in place: the same model, fewer FLOPs.
    async interact(page, timeoutMs) {
      const result = page.locator('[data-testid="result"]');
      const before = Number(await result.getAttribute('data-flops'));
      await page.selectOption('[data-testid="width"]', '0.25');
      const narrow = await page
        .waitForSelector('[data-testid="result"][data-width="0.25"], [data-testid="error"]', {
          timeout: timeoutMs,
        })
        .catch(() => undefined);
      if (narrow === undefined) return [`no result within ${timeoutMs / 1000} s after picking width 0.25`];
      if ((await narrow.getAttribute('data-testid')) === 'error') {
        return [`picking width 0.25 shows an error: ${await narrow.textContent()}`];
      }
      await page.selectOption('[data-testid="depth"]', '0');
      const shallow = await page
        .waitForSelector('[data-testid="result"][data-width="0.25"][data-depth="0"], [data-testid="error"]', {
          timeout: timeoutMs,
        })
        .catch(() => undefined);
      if (shallow === undefined) return [`no result within ${timeoutMs / 1000} s after picking depth 0`];
      if ((await shallow.getAttribute('data-testid')) === 'error') {
        return [`picking depth 0 shows an error: ${await shallow.textContent()}`];
      }
      const after = Number(await shallow.getAttribute('data-flops'));
      const problems: string[] = [];
      if (!(after > 0 && after < before / 10)) {
        problems.push(
          `width 0.25, depth 0 executed ${after} FLOPs per image, not under a tenth of the full ${before}`,
        );
      }
      // Both runs' times are in the table now: the full network's and this one's.
      const timed = (
        await page.locator('[data-testid="sub-network-table"] tbody td:nth-child(5)').allTextContents()
      )
        .map((t) => t.trim())
        .filter((t) => t !== '');
      if (timed.length < 3) problems.push(`the table shows ${timed.length} times measured here, expected 3`);
      return [...problems, ...(await gridProblems(page))];
    },
  },
  {
    name: 'moe-router',
    path: 'examples/moe-router.html',
    async check(page) {
      const problems = [...(await reportProblems(page, 10))];
      const images = await imagesClassified(page);
      const maps = await page.locator('[data-testid="expert-map"] li img').count();
      if (maps !== images) problems.push(`the expert map shows ${maps} images, not the ${images} classified`);
      const result = page.locator('[data-testid="result"]');
      const k = Number(await result.getAttribute('data-k'));
      const dropped = Number(await result.getAttribute('data-dropped'));
      const loads = (
        await page
          .locator('[data-testid="expert-load"] tbody tr')
          .evaluateAll((rows) => rows.map((row) => row.getAttribute('data-load')))
      ).map(Number);
      const routed = loads.reduce((a, b) => a + b, 0);
      if (loads.length !== 8 || routed + dropped !== images * 16 * k) {
        problems.push(
          `the expert loads are [${loads.join(', ')}] with ${dropped} dropped: expected 8 counts summing to ${images} images x 16 patches x k ${k}`,
        );
      }
      const cells = await page.locator('[data-testid="settings-table"] tbody td.current').count();
      if (cells !== 1) problems.push(`the settings table marks ${cells} cells as the one run, expected 1`);
      return problems;
    },
    // One expert per patch halves the experts' work; a capacity of half an even share drops pairs.
    async interact(page, timeoutMs) {
      const result = page.locator('[data-testid="result"]');
      const before = Number(await result.getAttribute('data-expert-flops'));
      const pick = async (select: string, value: string, attribute: string) => {
        await page.selectOption(`[data-testid="${select}"]`, value);
        const done = await page
          .waitForSelector(`[data-testid="result"][data-${attribute}="${value}"], [data-testid="error"]`, {
            timeout: timeoutMs,
          })
          .catch(() => undefined);
        if (done === undefined)
          return `no result within ${timeoutMs / 1000} s after picking ${select} ${value}`;
        if ((await done.getAttribute('data-testid')) === 'error') {
          return `picking ${select} ${value} shows an error: ${await done.textContent()}`;
        }
        return undefined;
      };
      const k1 = await pick('k', '1', 'k');
      if (k1 !== undefined) return [k1];
      const problems: string[] = [];
      const after = Number(await result.getAttribute('data-expert-flops'));
      if (!(after > 0 && Math.abs(after - before / 2) < 1e-6 * before)) {
        problems.push(`k = 1 executed ${after} expert FLOPs per image, not half of k = 2's ${before}`);
      }
      const limited = await pick('capacity', '0.5', 'capacity');
      if (limited !== undefined) return [...problems, limited];
      const dropped = Number(await result.getAttribute('data-dropped'));
      if (!(dropped > 0)) problems.push(`capacity factor 0.5 dropped ${dropped} pairs, expected some`);
      return problems;
    },
  },
  {
    name: 'sparse-attention',
    path: 'examples/sparse-attention.html',
    async check(page) {
      const problems: string[] = [];
      const result = page.locator('[data-testid="result"]');
      const length = Number(await result.getAttribute('data-length'));
      const shown = await page.locator('[data-testid="text-view"] button').count();
      if (!(length > 0) || shown !== length) {
        problems.push(`the text shows ${shown} characters, the model ran on ${length}`);
      }
      const flops = Number(await result.getAttribute('data-attention-flops'));
      const dense = Number(await result.getAttribute('data-dense-flops'));
      if (!(flops > 0 && flops < dense)) {
        problems.push(
          `the attention computed ${flops} FLOPs, expected fewer than dense attention's ${dense}`,
        );
      }
      return problems;
    },
    // A window head from an early character sees at most that character and the 31 before it.
    async interact(page) {
      const result = page.locator('[data-testid="result"]');
      await page.locator('[data-testid="text-view"] button').nth(40).click();
      const position = await result.getAttribute('data-position');
      const attended = Number(await result.getAttribute('data-attended'));
      const kind = await result.getAttribute('data-head-kind');
      if (position !== '40') return [`clicking the 41st character selected position ${position}`];
      if (kind === 'window' && !(attended >= 1 && attended <= 32)) {
        return [`a window head at position 40 attends to ${attended} characters, expected 1 to 32`];
      }
      return [];
    },
  },
];

/** How one page did on one backend. */
export interface PageOutcome {
  page: string;
  backend: string;
  problems: string[];
  seconds: number;
  screenshot: string;
}

/** Options of {@link checkExamplePage}. */
export interface CheckOptions {
  /** The served site's root URL, ending in `/`. */
  siteUrl: string;
  /** Where the screenshot goes: `<dir>/<page>-<backend>.png`. */
  screenshotDir: string;
  /** How long the result may take to appear (ms). */
  timeoutMs: number;
}

/**
 * Opens `example` at `?backend=<backend>` in a fresh browser context, waits for its result (or
 * its error message), and checks that the result rendered, that the backend line names
 * `backend`, and that nothing reached the console as an error. Saves a full-page screenshot
 * either way, then (when all is well so far) runs the page's interaction and its checks.
 */
export async function checkExamplePage(
  browser: Browser,
  example: ExamplePage,
  backend: string,
  options: CheckOptions,
): Promise<PageOutcome> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const { url } = message.location();
    problems.push(`console error: ${message.text()}${url ? ` (${url})` : ''}`);
  });
  // The console's "Failed to load resource" does not say which: name it.
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught error: ${error.message}`));
  const url = new URL(`${example.path}?backend=${backend}`, options.siteUrl).href;
  const started = performance.now();
  const screenshot = join(options.screenshotDir, `${example.name}-${backend}.png`);
  try {
    await page.goto(url);
    const done = await page
      .waitForSelector('[data-testid="result"], [data-testid="error"]', { timeout: options.timeoutMs })
      .catch(() => undefined);
    if (done === undefined) {
      const status = await page.locator('[role="status"]').allTextContents();
      problems.push(`no result within ${options.timeoutMs / 1000} s (status: ${status.join(' ') || 'none'})`);
    } else if ((await done.getAttribute('data-testid')) === 'error') {
      problems.push(`the page shows an error: ${await done.textContent()}`);
    } else {
      const shown = await done.getAttribute('data-backend');
      if (shown !== backend) problems.push(`the result ran on '${shown}', not '${backend}'`);
      const line = (await page.locator('[data-testid="backend-in-use"]').textContent())?.trim();
      if (line !== `Backend in use: ${backend}`) {
        problems.push(`the backend line reads '${line}', expected 'Backend in use: ${backend}'`);
      }
      problems.push(...(await example.check(page)));
    }
  } catch (error) {
    problems.push(`the page could not be checked: ${(error as Error).message}`);
  }
  await mkdir(options.screenshotDir, { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true }).catch((error: Error) => {
    problems.push(`no screenshot: ${error.message}`);
  });
  if (problems.length === 0 && example.interact !== undefined) {
    problems.push(...(await example.interact(page, options.timeoutMs)));
  }
  const seconds = (performance.now() - started) / 1000;
  await context.close();
  return { page: example.name, backend, problems, seconds, screenshot };
}
