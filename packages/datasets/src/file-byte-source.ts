import type { ByteSource } from './byte-source.js';

function isMissingFileError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * A Node {@link ByteSource} reading files from `folder` (a path or a `file:` URL). Node's modules
 * are imported here, on first use, so browser bundles never need them.
 */
export async function fileByteSource(folder: string | URL): Promise<ByteSource> {
  const [{ readFile }, { join }, { fileURLToPath }] = await Promise.all([
    import('node:fs/promises'),
    import('node:path'),
    import('node:url'),
  ]);
  const path = typeof folder === 'string' ? folder : fileURLToPath(folder);
  return {
    locate: (file) => join(path, file),
    async read(file) {
      try {
        const contents = await readFile(join(path, file));
        return new Uint8Array(contents.buffer as ArrayBuffer, contents.byteOffset, contents.byteLength);
      } catch (error) {
        if (isMissingFileError(error)) return undefined;
        throw error;
      }
    },
  };
}
