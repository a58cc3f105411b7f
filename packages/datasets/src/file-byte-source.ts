import type { ByteSource } from './byte-source.js';

// Relative to this module: `src/` in the repository, `dist/` once built. Kept in a variable so
// that bundlers do not mistake it for an asset reference.
const PACKAGE_DATA_FOLDER = '../data/';

function isMissingFileError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * A Node {@link ByteSource} reading files from `dataDir`, by default the package's own `data/`
 * folder. Node's modules are imported here, on first use, so browser bundles never need them.
 */
export async function fileByteSource(dataDir?: string): Promise<ByteSource> {
  const [{ readFile }, { join }, { fileURLToPath }] = await Promise.all([
    import('node:fs/promises'),
    import('node:path'),
    import('node:url'),
  ]);
  const folder = dataDir ?? fileURLToPath(new URL(PACKAGE_DATA_FOLDER, import.meta.url));
  return {
    locate: (file) => join(folder, file),
    async read(file) {
      try {
        const contents = await readFile(join(folder, file));
        return new Uint8Array(contents.buffer as ArrayBuffer, contents.byteOffset, contents.byteLength);
      } catch (error) {
        if (isMissingFileError(error)) return undefined;
        throw error;
      }
    },
  };
}
