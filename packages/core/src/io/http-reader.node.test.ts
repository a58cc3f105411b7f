import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { activateBackend, guardLeaks } from '@dynn/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpReader } from './http-reader.js';
import { loadModel } from './load-model.js';
import {
  bytesOf,
  expectDynnError,
  modelFiles,
  savedArtifacts,
  testModel,
  testRuntime,
} from './test-fixtures.js';

const runtime = testRuntime();

describe('loading over http(s)://', () => {
  guardLeaks();
  let server: Server;
  let base: string;
  const files = new Map<string, { body: Uint8Array; headers?: Record<string, string> }>();
  const requested: string[] = [];
  let model: ReturnType<typeof testModel>;

  beforeAll(async () => {
    await activateBackend('cpu');
    model = testModel(runtime, 4);
    const { json, shard } = modelFiles(await savedArtifacts(model));
    const text = new TextEncoder().encode(JSON.stringify(json));
    files.set('/good/model.json', { body: text });
    files.set('/good/group1-shard1of1.bin', { body: new Uint8Array(shard) });
    files.set('/no-shard/model.json', { body: text });
    files.set('/long-shard/model.json', { body: text });
    // Claims a small Content-Length-free body but streams more than the manifest allows.
    files.set('/long-shard/group1-shard1of1.bin', {
      body: new Uint8Array(shard.byteLength + 100),
      headers: { 'transfer-encoding': 'chunked' },
    });
    files.set('/huge/model.json', { body: new Uint8Array(5000).fill(0x20) });
    server = createServer((request, response) => {
      requested.push(request.url!);
      const file = files.get(request.url!);
      if (file === undefined) {
        response.writeHead(404, 'Not Found').end();
        return;
      }
      const chunked = file.headers?.['transfer-encoding'] === 'chunked';
      response.writeHead(200, chunked ? {} : { 'content-length': String(file.body.byteLength) });
      if (chunked) {
        // Two writes without a length: the reader can only find out by streaming.
        response.write(file.body.subarray(0, 8));
        response.end(file.body.subarray(8));
      } else {
        response.end(file.body);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    model.dispose();
    await new Promise((resolve) => server.close(resolve));
  });

  it('round-trips bit for bit, fetching shards relative to model.json', async () => {
    requested.length = 0;
    const loaded = await loadModel(runtime, `${base}/good/model.json`);
    expect(requested).toEqual(['/good/model.json', '/good/group1-shard1of1.bin']);
    expect(await bytesOf(loaded)).toEqual(await bytesOf(model));
    loaded.dispose();
  });

  it('names the URL and status of a missing file', async () => {
    await expectDynnError(
      loadModel(runtime, `${base}/absent/model.json`),
      'MODEL_FILE',
      `${base}/absent/model.json`,
      'HTTP 404',
    );
    await expectDynnError(
      loadModel(runtime, `${base}/no-shard/model.json`),
      'MODEL_FILE',
      `${base}/no-shard/group1-shard1of1.bin answered HTTP 404`,
    );
  });

  it('stops reading a response longer than allowed', async () => {
    await expectDynnError(
      loadModel(runtime, `${base}/huge/model.json`, { limits: { maxModelJsonBytes: 1000 } }),
      'MODEL_FILE',
      'model.json is 5000 bytes',
      'maxModelJsonBytes = 1000',
    );
    await expectDynnError(
      loadModel(runtime, `${base}/long-shard/model.json`),
      'MODEL_FILE',
      'group1-shard1of1.bin is over 128 bytes',
    );
  });

  it('uses the fetch it is given and reports network failures', async () => {
    const urls: string[] = [];
    const failing = async (url: string): Promise<Response> => {
      urls.push(url);
      throw new TypeError('network down');
    };
    await expectDynnError(
      loadModel(runtime, 'https://models.example/m/model.json', { fetch: failing }),
      'MODEL_FILE',
      'network down',
    );
    expect(urls).toEqual(['https://models.example/m/model.json']);
    const reader = new HttpReader(`${base}/good/model.json`);
    expect(await reader.readShard('group1-shard1of1.bin', 1000)).toBeInstanceOf(ArrayBuffer);
  });
});
