import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Keeps the docs honest: every piece of code a page of docs/ shows is imported (`<<<`) from a
// file in examples/, which CI type-checks and whose tests run it; and every relative link stays
// inside docs/, so it works both on GitHub and on the site. The generated API reference
// (docs/api/) is TypeDoc's, not checked here; the site build fails on its dead links.
const root = fileURLToPath(new URL('..', import.meta.url));
const docsDir = join(root, 'docs');
const examplesDir = join(root, 'examples');

/** Fence languages a page may write inline: shell commands and data, never code. */
const INLINE_LANGUAGES = new Set(['sh', 'bash', 'shell', 'console', 'json', 'jsonc', 'text', 'txt']);

function filesUnder(dir: string, keep: (path: string) => boolean, skip: readonly string[] = []): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      return entry.name === 'node_modules' || skip.includes(path) ? [] : filesUnder(path, keep, skip);
    }
    return keep(path) ? [path] : [];
  });
}

const pages = filesUnder(docsDir, (path) => path.endsWith('.md'), [join(docsDir, 'api')]);
const testSources = filesUnder(examplesDir, (path) => path.endsWith('.test.ts')).map((path) => ({
  path,
  text: readFileSync(path, 'utf8'),
}));
const where = (page: string, line: number) => `${relative(root, page)}:${line}`;

interface Fence {
  line: number;
  language: string;
}

/** The fenced code blocks of a page: where each opens and its language (first word of the info). */
function fencesOf(text: string): Fence[] {
  const fences: Fence[] = [];
  let open: { marker: string } | undefined;
  text.split('\n').forEach((line, index) => {
    const match = /^\s*(`{3,}|~{3,})\s*([^\s{]*)/.exec(line);
    if (match === null) return;
    const marker = match[1]!;
    if (open === undefined) {
      open = { marker };
      fences.push({ line: index + 1, language: match[2]!.toLowerCase() });
    } else if (marker[0] === open.marker[0] && marker.length >= open.marker.length && match[2] === '') {
      open = undefined;
    }
  });
  return fences;
}

interface CodeImport {
  line: number;
  file: string;
  region?: string;
}

/** The `<<< path#region {lines} [title]` imports of a page, resolved like VitePress does. */
function importsOf(page: string, text: string): CodeImport[] {
  return text.split('\n').flatMap((line, index) => {
    const match = /^\s*<<<\s+(\S+)/.exec(line);
    if (match === null) return [];
    const [path, region] = match[1]!.replace(/\{.*$/, '').split('#') as [string, string | undefined];
    const file = path.startsWith('@/') ? join(docsDir, path.slice(2)) : resolve(dirname(page), path);
    return [{ line: index + 1, file, ...(region ? { region } : {}) }];
  });
}

/** Relative links and images of a page (`[text](target)`), outside code blocks. */
function relativeLinksOf(text: string): { line: number; target: string }[] {
  let inFence = false;
  return text.split('\n').flatMap((line, index) => {
    if (/^\s*(`{3,}|~{3,})/.test(line)) inFence = !inFence;
    if (inFence) return [];
    return [...line.matchAll(/!?\[[^\]]*\]\(([^)\s]+)[^)]*\)/g)]
      .map((match) => match[1]!)
      .filter((target) => !/^([a-z]+:|#|\/)/i.test(target))
      .map((target) => ({ line: index + 1, target }));
  });
}

describe('docs/ pages', () => {
  it('are found', () => {
    expect(pages.map((page) => relative(docsDir, page))).toContain('getting-started.md');
  });

  it('write no code inline: TypeScript and JavaScript come from examples/ through `<<<`', () => {
    const inline = pages.flatMap((page) =>
      fencesOf(readFileSync(page, 'utf8'))
        .filter((fence) => !INLINE_LANGUAGES.has(fence.language))
        .map((fence) => `${where(page, fence.line)} \`\`\`${fence.language}`),
    );
    expect(
      inline,
      `Move these blocks into a file under examples/ (a region: // #region name ... // #endregion name) ` +
        `that a test there runs, and import it with <<<. Allowed inline: ${[...INLINE_LANGUAGES].join(', ')}.`,
    ).toEqual([]);
  });

  it('import code only from files in examples/ that a test runs, and only regions that exist', () => {
    const problems = pages.flatMap((page) =>
      importsOf(page, readFileSync(page, 'utf8')).flatMap(({ line, file, region }) => {
        const at = `${where(page, line)} <<< ${relative(root, file)}${region ? `#${region}` : ''}`;
        if (!file.startsWith(examplesDir + sep)) return [`${at}: not under examples/`];
        if (!existsSync(file)) return [`${at}: no such file`];
        const source = readFileSync(file, 'utf8');
        const name = basename(file);
        // A module is run by a test that imports it (as `.js`); a data file is read by one by name.
        const reference = ['.ts', '.tsx'].includes(extname(name)) ? name.replace(/\.tsx?$/, '.js') : name;
        const run =
          name.endsWith('.test.ts') ||
          testSources.some((test) => test.path !== file && test.text.includes(reference));
        const found: string[] = run ? [] : [`${at}: no test in examples/ runs or reads it`];
        if (region !== undefined) {
          const start = new RegExp(`^\\s*//\\s*#region ${region}\\s*$`, 'm');
          const end = new RegExp(`^\\s*//\\s*#endregion ${region}\\s*$`, 'm');
          if (!start.test(source) || !end.test(source)) {
            found.push(`${at}: no region '${region}' (// #region ${region} ... // #endregion ${region})`);
          }
        }
        return found;
      }),
    );
    expect(problems).toEqual([]);
  });

  it('link only to pages and files inside docs/ that exist, so links work on GitHub and on the site', () => {
    const problems = pages.flatMap((page) =>
      relativeLinksOf(readFileSync(page, 'utf8')).flatMap(({ line, target }) => {
        const path = resolve(dirname(page), decodeURIComponent(target.split('#')[0]!));
        if (!path.startsWith(docsDir + sep) && path !== docsDir) {
          return [`${where(page, line)} ${target}: outside docs/ (the site cannot serve it)`];
        }
        // The API reference is generated (docs/api/, gitignored): the site build checks those links.
        if (path.startsWith(join(docsDir, 'api') + sep)) return [];
        return existsSync(path) ? [] : [`${where(page, line)} ${target}: no such file`];
      }),
    );
    expect(problems).toEqual([]);
  });
});

describe('the checks themselves', () => {
  it('see fences with their language, and only opening fences', () => {
    const page = ['```sh', 'npm test', '```', '', '````ts', '```', '````', '~~~', 'x', '~~~'].join('\n');
    expect(fencesOf(page)).toEqual([
      { line: 1, language: 'sh' },
      { line: 5, language: 'ts' },
      { line: 8, language: '' },
    ]);
  });

  it('resolve `<<<` imports relative to the page or to docs/ (`@/`), with their region', () => {
    const page = join(docsDir, 'packages', 'core.md');
    expect(
      importsOf(page, '<<< ../../examples/snippets/a.ts#build{2-3} [a.ts]\n<<< @/../examples/b.json'),
    ).toEqual([
      { line: 1, file: join(examplesDir, 'snippets', 'a.ts'), region: 'build' },
      { line: 2, file: join(examplesDir, 'b.json') },
    ]);
  });

  it('find relative links and images, not URLs, anchors or site-absolute links', () => {
    const text = '[a](concepts.md#row-sets) ![b](results/x.svg) [c](https://x.org) [d](#top) [e](/api/)';
    expect(relativeLinksOf(text).map((link) => link.target)).toEqual([
      'concepts.md#row-sets',
      'results/x.svg',
    ]);
  });
});
