import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { isDynnError } from '@dynn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDigits } from './digits.js';
import { urlByteSource } from './url-byte-source.js';

const packageData = new URL('../data/', import.meta.url);

// Serves the package's data folder: /plain/ as is, /encoded/ with `Content-Encoding: gzip` (as
// Vite's dev server does, so fetch decompresses), /broken/ always with HTTP 500.
function serveData(): Promise<Server> {
  const server = createServer(async (request, response) => {
    const [, mode, ...rest] = (request.url ?? '').split('/');
    if (mode === 'broken') {
      response.writeHead(500).end();
      return;
    }
    try {
      const bytes = await readFile(fileURLToPath(new URL(rest.join('/'), packageData)));
      response.writeHead(200, mode === 'encoded' ? { 'Content-Encoding': 'gzip' } : {}).end(bytes);
    } catch {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('urlByteSource', () => {
  let server: Server;
  let origin: string;
  beforeAll(async () => {
    server = await serveData();
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('loads the gzipped file as served', async () => {
    expect((await loadDigits({ baseUrl: `${origin}/plain/` })).count).toBe(1_797);
  });

  it('loads a file the server sent with Content-Encoding: gzip, checking the contents instead', async () => {
    expect((await loadDigits({ baseUrl: `${origin}/encoded` })).count).toBe(1_797);
  });

  it('reports a 404 as DATA_MISSING and another HTTP failure with its status', async () => {
    const missing = await loadDigits({ baseUrl: `${origin}/plain/nowhere/` }).catch(
      (error: unknown) => error,
    );
    expect(isDynnError(missing, 'DATA_MISSING')).toBe(true);
    expect((missing as Error).message).toContain(`nothing at ${origin}/plain/nowhere/digits.csv.gz`);
    const broken = await loadDigits({ baseUrl: `${origin}/broken/` }).catch((error: unknown) => error);
    expect(isDynnError(broken, 'DATA_MISSING')).toBe(true);
    expect((broken as Error).message).toContain(
      `could not be read from ${origin}/broken/digits.csv.gz: HTTP 500`,
    );
  });

  it('rejects a relative baseUrl outside a web page', () => {
    let caught: unknown;
    try {
      urlByteSource('/data/');
    } catch (error) {
      caught = error;
    }
    expect(isDynnError(caught, 'INVALID_OPTION')).toBe(true);
  });
});
