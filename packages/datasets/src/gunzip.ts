import { isNodeRuntime } from './runtime.js';

/**
 * Decompresses gzip `bytes`: `node:zlib` in Node, `DecompressionStream('gzip')` in the browser.
 * The result owns its whole buffer, so views into it share memory with nothing else.
 */
export async function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  if (isNodeRuntime()) {
    const zlib = await import('node:zlib');
    const output = await new Promise<Uint8Array>((resolve, reject) => {
      zlib.gunzip(bytes, (error, result) => (error ? reject(error) : resolve(result)));
    });
    const ownsBuffer = output.byteOffset === 0 && output.byteLength === output.buffer.byteLength;
    return ownsBuffer && output.buffer instanceof ArrayBuffer
      ? new Uint8Array(output.buffer)
      : new Uint8Array(output);
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
