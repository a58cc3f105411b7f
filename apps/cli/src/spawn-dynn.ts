import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The `dynn` binary as npm links it: the committed launcher that runs the built `dist/bin.js`. */
export const DYNN_BIN = fileURLToPath(new URL('../bin/dynn.js', import.meta.url));

/** What one run of the binary printed, and its exit code. */
export interface BinaryRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `dynn ...args` in a fresh Node process, as a user's shell would: no backend chosen, no
 * state shared with the test. Needs the built CLI (`npm run build`, which `npm test` runs first).
 */
export function runDynn(args: readonly string[], options: { cwd?: string } = {}): Promise<BinaryRun> {
  if (!existsSync(fileURLToPath(new URL('../dist/bin.js', import.meta.url)))) {
    throw new Error('apps/cli is not built: run `npm run build` before the CLI tests.');
  }
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DYNN_BIN, ...args],
      { cwd: options.cwd, maxBuffer: 64 * 2 ** 20, env: { ...process.env, FORCE_COLOR: '0' } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, out: stdout, err: stderr });
      },
    );
  });
}
