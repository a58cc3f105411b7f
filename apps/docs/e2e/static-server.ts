import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

/** Content types of the files a VitePress build holds; `.wasm` must be right for streaming compilation. */
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
};

/** A running static server: its base URL and how to stop it. */
export interface StaticServer {
  /** `http://127.0.0.1:<port>/`. */
  url: string;
  close(): Promise<void>;
}

async function fileFor(root: string, pathname: string): Promise<string | undefined> {
  const relative = normalize(decodeURIComponent(pathname)).replace(/^([/\\])+/, '');
  const path = join(root, relative);
  if (path !== root && !path.startsWith(root + sep)) return undefined;
  // As the site's host would: a folder serves its index.html, a clean URL its .html file.
  for (const candidate of [path, join(path, 'index.html'), `${path}.html`]) {
    const info = await stat(candidate).catch(() => undefined);
    if (info?.isFile()) return candidate;
  }
  return undefined;
}

/**
 * Serves the folder `root` (a built site) on 127.0.0.1 at a free port, GET and HEAD only. Answers
 * 404 for anything outside it or missing.
 */
export async function serveStatic(root: string): Promise<StaticServer> {
  const base = normalize(root);
  const server: Server = createServer((request, response) => {
    const { pathname } = new URL(request.url ?? '/', 'http://localhost');
    fileFor(base, pathname)
      .then((file) => {
        if (file === undefined || (request.method !== 'GET' && request.method !== 'HEAD')) {
          response.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not found: ${pathname}`);
          return;
        }
        response.writeHead(200, {
          'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
        });
        if (request.method === 'HEAD') response.end();
        else createReadStream(file).pipe(response);
      })
      .catch((error: Error) => {
        response.writeHead(500, { 'Content-Type': 'text/plain' }).end(error.message);
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
