/**
 * True when running in Node (or a runtime that offers Node's built-in modules), where files are
 * read from disk and `node:crypto` and `node:zlib` do the hashing and decompression.
 */
export function isNodeRuntime(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}
