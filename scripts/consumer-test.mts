/**
 * The consumer test: dynn as its users get it. Packs every publishable workspace package,
 * installs the tarballs with the tfjs peers into a fresh project outside the repository, and
 * there runs an ESM app, a CommonJS app, every CLI command from the installed bin and a
 * TypeScript type-check under `bundler` and `node16` resolution. Fails on a file missing from a
 * tarball, a broken export, a second copy of tfjs (or of a dynn package), a dependency whose
 * `engines` refuses this Node or Node 20.0 (the oldest the docs support), or a package npm would
 * refuse to publish (`npm publish --dry-run`).
 *
 * Needs the packages built first (`npm run build`). Run: `npm run test:consumer`
 * (`-- --keep` keeps the temporary project and prints where it is).
 */
import { type SpawnOptions, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';

/** One `dynn` invocation. In `args`, `{fixtures}` is the folder the ESM app wrote its models to and `{out}` a fresh output folder. */
interface CliCase {
  /** Printed name. */
  name: string;
  args: string[];
  /** stdout must match. */
  expect?: RegExp;
  /** stdout must be JSON; a bench envelope's `error` must be empty. */
  json?: boolean;
  /** Files (with placeholders) that must exist afterwards. */
  files?: string[];
  /** Seconds before the command is killed (default 180). */
  timeoutS?: number;
}

/**
 * Every CLI command, run from `node_modules/.bin/dynn` in the consumer project, in this order.
 * The CLI's command list lives here, in one place: adjust it when commands change.
 */
const CLI_COMMANDS: CliCase[] = [
  { name: 'dynn --version', args: ['--version'], expect: /^\d+\.\d+\.\d+/ },
  { name: 'dynn --help', args: ['--help'], expect: /inspect/ },
  { name: 'dynn inspect', args: ['inspect', '{fixtures}/dynn-model/model.json'], expect: /hidden1/ },
  {
    name: 'dynn inspect --json',
    args: ['inspect', '{fixtures}/dynn-model/model.json', '--json'],
    json: true,
  },
  {
    name: 'dynn predict',
    args: ['predict', '{fixtures}/dynn-model/model.json', '--input', '{fixtures}/input.json', '--json'],
    json: true,
  },
  {
    name: 'dynn convert',
    args: ['convert', '{fixtures}/layers-model/model.json', '{out}/converted'],
    files: ['{out}/converted/model.json'],
  },
  {
    name: 'dynn convert --quantize uint8',
    args: ['convert', '{fixtures}/layers-model/model.json', '{out}/converted-uint8', '--quantize', 'uint8'],
    files: ['{out}/converted-uint8/model.json'],
  },
  {
    name: 'dynn early-exit add',
    args: ['early-exit', 'add', '{fixtures}/dynn-model/model.json', '{out}/with-exits', '--at', 'hidden1'],
    files: ['{out}/with-exits/model.json'],
  },
  {
    name: 'dynn bench core --quick --json',
    args: ['bench', 'core', '--quick', '--json', '--no-progress'],
    json: true,
  },
  {
    name: 'dynn bench early-exit --quick --json',
    args: ['bench', 'early-exit', '--quick', '--json', '--no-progress'],
    json: true,
  },
  {
    name: 'dynn bench early-exit text --quick --json',
    args: ['bench', 'early-exit', 'text', '--quick', '--json', '--no-progress', '--out', '{out}/bench-text'],
    json: true,
    files: ['{out}/bench-text/result.json'],
  },
  {
    name: 'dynn sorted-net export',
    args: [
      'sorted-net',
      'export',
      '{fixtures}/nested-model/model.json',
      '{out}/exported',
      '--width',
      '0.5',
      '--depth',
      '0',
    ],
    expect: /ops: core only/,
    files: ['{out}/exported/model.json'],
  },
  {
    name: 'dynn bench sorted-net --quick --json',
    args: ['bench', 'sorted-net', '--quick', '--json', '--no-progress', '--out', '{out}/bench-sorted-net'],
    json: true,
    files: ['{out}/bench-sorted-net/pareto.svg'],
  },
  {
    name: 'dynn bench sorted-net text --quick --json',
    args: [
      'bench',
      'sorted-net',
      'text',
      '--quick',
      '--json',
      '--no-progress',
      '--out',
      '{out}/bench-sn-text',
    ],
    json: true,
    files: ['{out}/bench-sn-text/result.json'],
  },
  {
    name: 'dynn bench sorted-net robust --quick --json',
    args: [
      'bench',
      'sorted-net',
      'robust',
      '--quick',
      '--json',
      '--no-progress',
      '--out',
      '{out}/bench-sn-robust',
    ],
    json: true,
    files: ['{out}/bench-sn-robust/result.json'],
  },
  { name: 'dynn demo --quick', args: ['demo', '--quick', '--no-progress', '--out', '{out}/demo'] },
  {
    name: 'dynn demo early-exit --quick',
    args: ['demo', 'early-exit', '--quick', '--no-progress', '--out', '{out}/demo-early-exit'],
    expect: /early exit: /,
    files: ['{out}/demo-early-exit/pareto.svg'],
  },
  {
    name: 'dynn demo sorted-net --quick',
    args: ['demo', 'sorted-net', '--quick', '--no-progress', '--out', '{out}/demo-sorted-net'],
    expect: /exported .* as a plain model/,
    files: ['{out}/demo-sorted-net/accuracy-vs-flops.svg'],
  },
  {
    name: 'dynn moe-router split',
    args: ['moe-router', 'split', '{fixtures}/dynn-model/model.json', '{out}/split', '--experts', '4'],
    expect: /MoEfied \(cluster\) into 4 experts/,
    files: ['{out}/split/model.json'],
  },
  {
    name: 'dynn moe-router split --upcycle',
    args: [
      'moe-router',
      'split',
      '{fixtures}/dynn-model/model.json',
      '{out}/upcycled',
      '--experts',
      '2',
      '--upcycle',
    ],
    expect: /upcycled into 2 experts/,
    files: ['{out}/upcycled/model.json'],
  },
  {
    name: 'dynn bench moe-router --quick --json',
    args: ['bench', 'moe-router', '--quick', '--json', '--no-progress', '--out', '{out}/bench-moe-router'],
    json: true,
    files: ['{out}/bench-moe-router/result.json'],
  },
  {
    name: 'dynn bench moe-router kv-bottleneck --quick --json',
    args: [
      'bench',
      'moe-router',
      'kv-bottleneck',
      '--quick',
      '--json',
      '--no-progress',
      '--out',
      '{out}/bench-moe-router-kv',
    ],
    json: true,
    files: ['{out}/bench-moe-router-kv/seen-accuracy.svg'],
  },
  {
    name: 'dynn inspect (a MoE model)',
    args: ['inspect', '{fixtures}/moe-model/model.json'],
    expect: /moe-router\.MoE/,
  },
  {
    name: 'dynn demo moe-router --quick',
    args: ['demo', 'moe-router', '--quick', '--no-progress', '--out', '{out}/demo-moe-router'],
    expect: /per-expert load \(dropless\)/,
    files: ['{out}/demo-moe-router/experts-by-class.svg'],
  },
  {
    name: 'dynn inspect (a sparse-attention model)',
    args: ['inspect', '{fixtures}/sparse-attention-model/model.json'],
    expect: /sparse-attention\.SparseAttention/,
  },
  {
    name: 'dynn demo sparse-attention --quick',
    args: ['demo', 'sparse-attention', '--quick', '--no-progress', '--out', '{out}/demo-sparse-attention'],
    expect: /recomputing the prefix for every character: the same text/,
    files: ['{out}/demo-sparse-attention/result.json'],
  },
];

/** The tfjs packages a dynn app installs next to dynn (the peers), and the type-check's tools. */
const TF_PEERS = [
  '@tensorflow/tfjs-core@^4.22.0',
  '@tensorflow/tfjs-backend-wasm@^4.22.0',
  '@tensorflow/tfjs-backend-cpu@^4.22.0',
  '@tensorflow/tfjs-layers@^4.22.0',
];
const TOOLS = ['typescript@~5.9', '@types/node@^20'];

/** The oldest Node the docs support: every package a dynn package brings must accept it. */
const MIN_NODE = '20.0.0';
/** Peers that are the app's own tools, not dynn's runtime: left out of the engines check. */
const TOOL_PEERS = new Set(['vitest']);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const APP_FILES = join(ROOT, 'scripts/consumer');
const keep = process.argv.includes('--keep');

/** The environment for child processes, without what `npm run` sets for this repository. */
const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([key, value]) =>
      !(
        key.startsWith('npm_') &&
        !['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig'].includes(key)
      ) &&
      key !== 'INIT_CWD' &&
      !(key === 'NODE_OPTIONS' && value?.includes('tsx')),
  ),
);

const started = Date.now();
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const log = (line: string) => console.log(`[consumer] ${line}`);

interface Outcome {
  step: string;
  ok: boolean;
  detail: string;
}
const outcomes: Outcome[] = [];

class StepFailure extends Error {}

/** Runs one step, records and prints its outcome; a fatal step's failure ends the test. */
async function step(name: string, body: () => Promise<string | undefined>, fatal = false): Promise<void> {
  const t = Date.now();
  log(`--- ${name}`);
  try {
    const detail = (await body()) ?? '';
    outcomes.push({ step: name, ok: true, detail });
    log(`ok   ${name} (${seconds(t)})${detail ? `: ${detail}` : ''}`);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    outcomes.push({ step: name, ok: false, detail });
    log(`FAIL ${name} (${seconds(t)}): ${detail}`);
    if (fatal) throw new StepFailure(name);
  }
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command, collecting its output (echoed when `echo`), killed after `timeoutS`. */
function run(
  command: string,
  args: string[],
  options: SpawnOptions & { timeoutS?: number; echo?: boolean } = {},
): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { env: childEnv, ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk;
      if (options.echo) process.stdout.write(chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk;
      if (options.echo) process.stderr.write(chunk);
    });
    const timer = setTimeout(
      () => {
        timedOut = true;
        child.kill('SIGKILL');
      },
      (options.timeoutS ?? 300) * 1000,
    );
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, timedOut });
    });
  });
}

const tail = (text: string, lines = 25) => text.trimEnd().split('\n').slice(-lines).join('\n');

function failure(what: string, ran: Ran): Error {
  const why = ran.timedOut ? 'timed out' : `exit code ${ran.code}`;
  return new Error(`${what}: ${why}\n${tail(`${ran.stdout}\n${ran.stderr}`)}`);
}

interface WorkspacePackage {
  dir: string;
  name: string;
  json: Record<string, unknown>;
}

/** The workspace packages that get published: not `private`. */
function publishablePackages(): WorkspacePackage[] {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  const dirs = root.workspaces.flatMap((pattern) =>
    pattern.endsWith('/*')
      ? readdirSync(join(ROOT, pattern.slice(0, -2)), { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => `${pattern.slice(0, -2)}/${entry.name}`)
      : [pattern],
  );
  return dirs
    .filter((dir) => existsSync(join(ROOT, dir, 'package.json')))
    .map((dir) => {
      const json = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      return { dir, name: json.name as string, json };
    })
    .filter((pkg) => pkg.json.private !== true);
}

/** Every file a package.json points at: main, module, types, bin and the exports' targets. */
function referencedFiles(json: Record<string, unknown>): string[] {
  const files = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value === 'string') {
      if (!value.includes('*')) files.add(value.replace(/^\.\//, ''));
    } else if (value && typeof value === 'object') {
      for (const inner of Object.values(value)) add(inner);
    }
  };
  for (const field of ['main', 'module', 'types', 'typings', 'bin', 'exports']) add(json[field]);
  return [...files];
}

interface PackResult {
  name: string;
  version: string;
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
}

/** Each installed package's folder under `node_modules`, by name (a name twice means two copies). */
function installedCopies(nodeModules: string): Map<string, { dir: string; version: string }[]> {
  const copies = new Map<string, { dir: string; version: string }[]>();
  const visit = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      const scoped = entry.name.startsWith('@');
      const packageDirs = scoped
        ? readdirSync(join(dir, entry.name), { withFileTypes: true })
            .filter((inner) => inner.isDirectory())
            .map((inner) => join(dir, entry.name, inner.name))
        : [join(dir, entry.name)];
      for (const packageDir of packageDirs) {
        const file = join(packageDir, 'package.json');
        if (existsSync(file)) {
          const { name, version } = JSON.parse(readFileSync(file, 'utf8')) as {
            name?: string;
            version: string;
          };
          if (name) copies.set(name, [...(copies.get(name) ?? []), { dir: packageDir, version }]);
        }
        visit(join(packageDir, 'node_modules'));
      }
    }
  };
  visit(nodeModules);
  return copies;
}

async function main(): Promise<void> {
  const packages = publishablePackages();
  log(`packages: ${packages.map((p) => p.name).join(', ')}`);
  const work = await mkdtemp(join(tmpdir(), 'dynn-consumer-'));
  const tarballs = join(work, 'tarballs');
  const app = join(work, 'app');
  log(`working in ${work}`);
  let packed: PackResult[] = [];
  let copies = new Map<string, { dir: string; version: string }[]>();

  try {
    await step(
      'the project is outside the repository',
      async () => {
        if (!relative(ROOT, work).startsWith('..')) throw new Error(`${work} is inside ${ROOT}`);
        for (let dir = dirname(work); ; dir = dirname(dir)) {
          for (const name of ['node_modules', 'package.json']) {
            if (existsSync(join(dir, name)))
              throw new Error(`${join(dir, name)} would be visible to the app`);
          }
          if (dirname(dir) === dir) break;
        }
        return undefined;
      },
      true,
    );

    await step(
      'npm pack every package',
      async () => {
        const unbuilt = packages.filter((p) =>
          referencedFiles(p.json).some(
            (file) => file.startsWith('dist/') && !existsSync(join(ROOT, p.dir, file)),
          ),
        );
        if (unbuilt.length > 0) {
          throw new Error(`not built: ${unbuilt.map((p) => p.name).join(', ')}; run \`npm run build\` first`);
        }
        await mkdir(tarballs, { recursive: true });
        const ran = await run(
          'npm',
          [
            'pack',
            '--json',
            '--pack-destination',
            tarballs,
            ...packages.flatMap((p) => ['--workspace', p.dir]),
          ],
          { cwd: ROOT },
        );
        if (ran.code !== 0) throw failure('npm pack', ran);
        packed = JSON.parse(ran.stdout.slice(ran.stdout.indexOf('['))) as PackResult[];
        return packed
          .map((p) => `${p.name}@${p.version} ${(p.size / 1e6).toFixed(2)} MB (${p.files.length} files)`)
          .join('; ');
      },
      true,
    );

    await step(
      'every tarball holds the files its package.json names, a README and a LICENSE',
      async () => {
        const problems: string[] = [];
        for (const pkg of packages) {
          const result = packed.find((p) => p.name === pkg.name);
          if (!result) {
            problems.push(`${pkg.name}: not packed`);
            continue;
          }
          const inside = new Set(result.files.map((f) => f.path));
          for (const file of [...referencedFiles(pkg.json), 'README.md', 'LICENSE', 'package.json']) {
            if (!inside.has(file)) problems.push(`${pkg.name}: ${file} is not in the tarball`);
          }
        }
        if (problems.length > 0) throw new Error(problems.join('\n'));
        return undefined;
      },
      true,
    );

    await step('npm publish --dry-run of every tarball', async () => {
      const problems: string[] = [];
      for (const p of packed) {
        const ran = await run('npm', ['publish', join(tarballs, p.filename), '--dry-run'], { cwd: work });
        if (ran.code !== 0) problems.push(failure(`${p.name}`, ran).message);
      }
      if (problems.length > 0) throw new Error(problems.join('\n'));
      return undefined;
    });

    await step(
      'install the tarballs and the tfjs peers into a fresh project',
      async () => {
        await mkdir(app, { recursive: true });
        await writeFile(
          join(app, 'package.json'),
          `${JSON.stringify({ name: 'dynn-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`,
        );
        const ran = await run(
          'npm',
          [
            'install',
            '--prefer-offline',
            '--no-audit',
            '--no-fund',
            ...packed.map((p) => join(tarballs, p.filename)),
            ...TF_PEERS,
            ...TOOLS,
          ],
          { cwd: app, timeoutS: 600 },
        );
        if (ran.code !== 0) throw failure('npm install', ran);
        const output = `${ran.stdout}\n${ran.stderr}`;
        const refusals = output
          .split('\n')
          .filter((line) => /EBADENGINE|ERESOLVE|peer dep|Conflicting peer/i.test(line))
          .map((line) => line.trim());
        const engines = [...output.matchAll(/package: '([^']+)',\s*\n.*required: \{ ([^}]*) \}/g)].map(
          (m) => `${m[1]} requires ${m[2]}`,
        );
        if (refusals.length > 0) {
          throw new Error(`npm install warned:\n${[...new Set([...engines, ...refusals])].join('\n')}`);
        }
        return tail(ran.stdout, 3).replace(/\n/g, ' ');
      },
      true,
    );

    await step(
      'one copy of tfjs and of each dynn package; npm ls finds no missing or invalid dependency',
      async () => {
        copies = installedCopies(join(app, 'node_modules'));
        const doubles = [...copies].filter(
          ([name, found]) => /^@(tensorflow|dynn)\//.test(name) && found.length > 1,
        );
        if (doubles.length > 0) {
          throw new Error(
            doubles
              .map(
                ([name, found]) =>
                  `${name} installed ${found.length} times: ${found.map((f) => `${f.version} at ${f.dir}`).join(', ')}`,
              )
              .join('\n'),
          );
        }
        const ls = await run('npm', ['ls', '--all'], { cwd: app });
        if (ls.code !== 0) throw failure('npm ls --all', ls);
        const tfjs = await run('npm', ['ls', '@tensorflow/tfjs-core', '--all', '--json'], { cwd: app });
        const versions = new Set(
          [...tfjs.stdout.matchAll(/"@tensorflow\/tfjs-core": \{\s*"version": "([^"]+)"/g)].map((m) => m[1]),
        );
        if (versions.size !== 1)
          throw new Error(`tfjs-core versions in the tree: ${[...versions].join(', ')}`);
        const dynn = [...copies.keys()].filter((name) => name.startsWith('@dynn/'));
        return `@tensorflow/tfjs-core ${[...versions][0]} once; ${dynn.map((n) => `${n}@${copies.get(n)![0]!.version}`).join(', ')}`;
      },
      true,
    );

    await step(
      `every package the dynn packages bring (dependencies and peers) accepts Node ${MIN_NODE}`,
      async () => {
        const problems: string[] = [];
        const queue = [...copies.keys()].filter((name) => name.startsWith('@dynn/'));
        const seen = new Set(queue);
        while (queue.length > 0) {
          const name = queue.pop()!;
          for (const { dir } of copies.get(name) ?? []) {
            const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
              version: string;
              engines?: { node?: string };
              dependencies?: Record<string, string>;
              optionalDependencies?: Record<string, string>;
              peerDependencies?: Record<string, string>;
            };
            const range = json.engines?.node;
            if (range && !semver.satisfies(MIN_NODE, range)) {
              problems.push(`${name}@${json.version} (${relative(app, dir)}) requires Node ${range}`);
            }
            const deps = [
              ...Object.keys(json.dependencies ?? {}),
              ...Object.keys(json.optionalDependencies ?? {}),
              ...Object.keys(json.peerDependencies ?? {}).filter((peer) => !TOOL_PEERS.has(peer)),
            ];
            for (const dep of deps) {
              if (!seen.has(dep) && copies.has(dep)) {
                seen.add(dep);
                queue.push(dep);
              }
            }
          }
        }
        if (problems.length > 0) throw new Error(problems.join('\n'));
        return `${seen.size} packages checked`;
      },
    );

    for (const file of readdirSync(APP_FILES)) await cp(join(APP_FILES, file), join(app, file));

    await step(
      'ESM app (import every package, train, save/load, import tfjs-layers, early exits, nested networks, experts)',
      async () => {
        const ran = await run('node', ['esm.mjs'], { cwd: app, echo: true, timeoutS: 300 });
        if (ran.code !== 0) throw failure('node esm.mjs', ran);
        return undefined;
      },
    );
    await step('CommonJS app (require every package, the same work)', async () => {
      const ran = await run('node', ['cjs.cjs'], { cwd: app, echo: true, timeoutS: 300 });
      if (ran.code !== 0) throw failure('node cjs.cjs', ran);
      return undefined;
    });

    const bin = join(app, 'node_modules/.bin/dynn');
    const fixtures = join(app, 'fixtures');
    for (const [i, cli] of CLI_COMMANDS.entries()) {
      const out = join(app, 'cli-out', String(i));
      const fill = (text: string) => text.replaceAll('{fixtures}', fixtures).replaceAll('{out}', out);
      await step(cli.name, async () => {
        if (!existsSync(bin)) throw new Error('node_modules/.bin/dynn is not installed');
        await mkdir(out, { recursive: true });
        const ran = await run(bin, cli.args.map(fill), { cwd: app, timeoutS: cli.timeoutS ?? 180 });
        if (ran.code !== 0) throw failure(`dynn ${cli.args.join(' ')}`, ran);
        if (cli.expect && !cli.expect.test(ran.stdout)) {
          throw new Error(`stdout does not match ${cli.expect}:\n${tail(ran.stdout)}`);
        }
        if (cli.json) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(ran.stdout);
          } catch {
            throw new Error(`stdout is not JSON:\n${tail(ran.stdout)}`);
          }
          const error = (parsed as { error?: unknown } | null)?.error;
          if (error !== undefined && error !== null)
            throw new Error(`the result reports an error: ${JSON.stringify(error)}`);
        }
        for (const file of (cli.files ?? []).map(fill)) {
          if (!existsSync(file)) throw new Error(`${relative(app, file)} was not written`);
        }
        return tail(ran.stdout, 1).slice(0, 120);
      });
    }

    for (const config of ['tsconfig.bundler.json', 'tsconfig.node16.json']) {
      await step(`tsc -p ${config}`, async () => {
        const ran = await run(join(app, 'node_modules/.bin/tsc'), ['-p', config], {
          cwd: app,
          timeoutS: 180,
        });
        if (ran.code !== 0) throw failure(`tsc -p ${config}`, ran);
        return undefined;
      });
    }
  } catch (error) {
    if (!(error instanceof StepFailure)) throw error;
  } finally {
    if (keep) log(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }

  const failed = outcomes.filter((o) => !o.ok);
  log(`=== ${outcomes.length - failed.length} of ${outcomes.length} steps passed in ${seconds(started)}`);
  for (const o of failed)
    log(
      `FAILED: ${o.step}\n${o.detail
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n')}`,
    );
  if (failed.length > 0) process.exitCode = 1;
}

await main();
