// How this repository launches headless Chromium: the vitest browser project and the docs site's
// end-to-end check share it, so both run the browser the same way.

/** The Chromium binary: `CHROMIUM_PATH`, else Debian's `/usr/bin/chromium`. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Flags that work headless as root on these machines (../shared/TOOLCHAIN.md): no sandbox, no
 * background traffic the closed network would refuse, and WebGPU enabled (the last one).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--enable-unsafe-webgpu',
];

/**
 * The one line printed where the browser parts are skipped for want of Chromium (never under CI,
 * which must run them): what was skipped and how to enable it.
 */
export function chromiumMissingNote(what: string): string {
  return (
    `[dynn] ${what} skipped: no Chromium at ${CHROMIUM_PATH}. ` +
    'Enable with `sudo apt-get install chromium` (or set CHROMIUM_PATH); CI runs them.'
  );
}
