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
