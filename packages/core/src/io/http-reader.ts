import { limitError, modelFileError } from './model-file-error.js';
import { decodeUtf8, type ModelReader } from './reader.js';

/** The `fetch` function an {@link HttpReader} uses (the global one by default). */
export type FetchFunction = (url: string, init?: RequestInit) => Promise<Response>;

/**
 * Loads a model over HTTP(S) piece by piece: model.json first, then each shard (resolved
 * relative to model.json's URL), refusing any response longer than it may be before reading it
 * all (by its Content-Length, and while streaming when there is none).
 */
export class HttpReader implements ModelReader {
  /** The URL of model.json. */
  readonly url: string;
  private readonly fetchFunction: FetchFunction;

  /** Reads the model whose model.json is at `url`, with `fetchFunction` (default: the global `fetch`). */
  constructor(url: string, fetchFunction?: FetchFunction) {
    this.url = url;
    this.fetchFunction = fetchFunction ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Fetches model.json, refusing one over `maxBytes`. */
  async readModelJson(maxBytes: number): Promise<string> {
    const bytes = await this.fetchCapped(this.url, maxBytes, (size) =>
      limitError(this.url, `model.json is ${size} bytes, which`, 'maxModelJsonBytes', maxBytes),
    );
    return decodeUtf8(bytes, this.url);
  }

  /** Fetches one shard, refusing one over `maxBytes`. */
  async readShard(path: string, maxBytes: number): Promise<ArrayBuffer> {
    const url = new URL(path, this.url).href;
    const bytes = await this.fetchCapped(url, maxBytes, (size) =>
      modelFileError(
        this.url,
        `weight shard ${url} is ${size} bytes, but only ${maxBytes} bytes of weights remain to be read.`,
        'The shard belongs to another model.json; upload all files of the saved model together.',
      ),
    );
    // A chunk may be a view into a larger buffer; hand back a buffer holding exactly the shard.
    const whole = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength;
    return (whole ? bytes : bytes.slice()).buffer as ArrayBuffer;
  }

  private async fetchCapped(
    url: string,
    maxBytes: number,
    tooLong: (size: string) => Error,
  ): Promise<Uint8Array> {
    let response: Response;
    try {
      response = await this.fetchFunction(url);
    } catch (error) {
      throw modelFileError(
        this.url,
        `could not fetch ${url} (${(error as Error).message}).`,
        'Check the URL and that the server is reachable.',
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw modelFileError(
        this.url,
        `fetching ${url} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}.`,
        'Check the URL and that every file of the saved model is on the server.',
      );
    }
    const declared = Number(response.headers.get('content-length') ?? Number.NaN);
    // Content-Length counts encoded bytes; the stream below caps the decoded ones too.
    if (Number.isFinite(declared) && declared > maxBytes && !response.headers.has('content-encoding')) {
      await response.body?.cancel();
      throw tooLong(String(declared));
    }
    if (response.body === null) {
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.byteLength > maxBytes) throw tooLong(String(bytes.byteLength));
      return bytes;
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const stream = response.body.getReader();
    for (;;) {
      const { done, value } = await stream.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await stream.cancel();
        throw tooLong(`over ${maxBytes}`);
      }
      chunks.push(value);
    }
    if (chunks.length === 1) return chunks[0]!;
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return bytes;
  }
}
