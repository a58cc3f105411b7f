import { DynnError } from '@dynn/core';
import type { ByteSource } from './byte-source.js';

function folderUrl(baseUrl: string | URL): URL {
  try {
    const folder = new URL(baseUrl, globalThis.location?.href);
    if (!folder.pathname.endsWith('/')) folder.pathname += '/';
    return folder;
  } catch {
    throw new DynnError(
      'INVALID_OPTION',
      `baseUrl '${String(baseUrl)}' is not a valid URL here; outside a web page it must be absolute.`,
    );
  }
}

/**
 * A {@link ByteSource} fetching files from under `baseUrl`. A relative `baseUrl` resolves against
 * the current page; a missing trailing `/` is added. Servers that send the `.gz` files with
 * `Content-Encoding: gzip` (so `fetch` hands over their contents decompressed) work too. Throws
 * an `INVALID_OPTION` `DynnError` when `baseUrl` is not a valid URL.
 */
export function urlByteSource(baseUrl: string | URL): ByteSource {
  const folder = folderUrl(baseUrl);
  const locate = (file: string) => new URL(file, folder).href;
  return {
    locate,
    async read(file) {
      const response = await fetch(locate(file));
      if (response.status === 404) return undefined;
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}
