import { isNodeRuntime } from './runtime.js';

/**
 * SHA-256 of `bytes` as 64 lowercase hex digits: `node:crypto` in Node, `crypto.subtle.digest`
 * in the browser.
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  if (isNodeRuntime()) {
    const { createHash } = await import('node:crypto');
    return createHash('sha256').update(bytes).digest('hex');
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}
