import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isDynnError } from '@dynn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importFashionMnist, isMissingPackage, loadFashionMnist } from './fashion-mnist.js';

const PACKAGE = '@dynn/data-fashion-mnist';

/** The error Node itself throws for `import(specifier)` from a script in `dir`, as plain fields. */
async function nodeImportError(dir: string, specifier: string): Promise<{ code?: string; message: string }> {
  const script =
    `try { await import(${JSON.stringify(specifier)}); console.log('null'); } catch (error) ` +
    '{ console.log(JSON.stringify({ code: error.code, message: error.message })); }';
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    cwd: dir,
  });
  return JSON.parse(stdout);
}

describe('the optional Fashion-MNIST package', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dynn-cli-fashion-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads in the workspace, where it is installed', async () => {
    const data = await loadFashionMnist();
    expect([data.train.count, data.test.count]).toEqual([60_000, 10_000]);
  });

  it("is recognised as missing from Node's own error outside the workspace", async () => {
    const error = await nodeImportError(dir, PACKAGE);
    expect(error.code).toBe('ERR_MODULE_NOT_FOUND');
    expect(isMissingPackage(error, PACKAGE)).toBe(true);
  });

  it('is not called missing when it is installed but a module it imports is not', async () => {
    const installed = join(dir, 'node_modules', ...PACKAGE.split('/'));
    await mkdir(installed, { recursive: true });
    await writeFile(
      join(installed, 'package.json'),
      JSON.stringify({ name: PACKAGE, type: 'module', exports: './index.js' }),
    );
    await writeFile(join(installed, 'index.js'), "import '@dynn/no-such-dependency';\n");
    const error = await nodeImportError(dir, PACKAGE);
    expect(error.code).toBe('ERR_MODULE_NOT_FOUND');
    expect(error.message).toContain(PACKAGE);
    expect(isMissingPackage(error, PACKAGE)).toBe(false);
  });

  it('turns its absence into DATA_MISSING giving the install command, and passes other failures on', async () => {
    const missing = Object.assign(new Error(`Cannot find package '${PACKAGE}' imported from /x/bin.js`), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const error = await importFashionMnist(() => Promise.reject(missing)).catch((caught: unknown) => caught);
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect((error as Error).message).toContain(`\`npm install ${PACKAGE}\``);
    const other = new Error('disk on fire');
    await expect(importFashionMnist(() => Promise.reject(other))).rejects.toBe(other);
  });
});
