import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from '../errors.js';
import { type LoadLimits, resolveLimits } from './limits.js';
import { limitError, modelFileError, namingFile } from './model-file-error.js';
import { MODEL_JSON, modelJsonFor, SHARD_BYTES, shardNames, splitShards } from './model-json.js';
import { artifactsFrom, decodeUtf8, type ModelReader, readModelJson, readShards } from './reader.js';

/** Options for {@link fileHandler}. */
export interface FileHandlerOptions {
  /** Most bytes per weight shard when saving (default 4 MiB, the tfjs convention). */
  shardBytes?: number;
  /** Limits for {@link FileHandler.load}; `loadModel` passes its own. */
  limits?: Partial<LoadLimits>;
}

type NodeFs = typeof import('node:fs/promises');
type NodePath = typeof import('node:path');

/**
 * Imports a Node built-in at run time. The specifier is a variable and carries the bundlers'
 * ignore hints, so browser builds of dynn neither fail on Node's modules nor include them.
 */
const importNodeBuiltin = (specifier: string): Promise<unknown> =>
  import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);

/** Node's file modules, imported on first use. */
async function nodeModules(file: string): Promise<{ fs: NodeFs; path: NodePath }> {
  try {
    const [fs, path] = await Promise.all([
      importNodeBuiltin('node:fs/promises'),
      importNodeBuiltin('node:path'),
    ]);
    return { fs: fs as NodeFs, path: path as NodePath };
  } catch {
    throw new DynnError(
      'INVALID_OPTION',
      `${file}: file paths work in Node only. In a browser, use indexeddb://, localstorage://, downloads:// or http(s)://.`,
      { file },
    );
  }
}

const SHARD_FIX = 'Copy model.json together with all of its .bin shard files, unchanged, into one folder.';

const errorCode = (error: unknown): unknown => (error as { code?: unknown } | null)?.code;

/** Opens a file for reading, or explains why it cannot be opened. */
async function openForReading(fs: NodeFs, path: string, file: string, what: string, fix: string) {
  try {
    const handle = await fs.open(path, 'r');
    const stats = await handle.stat().catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
    if (!stats.isFile()) {
      await handle.close();
      throw modelFileError(file, `${what} ${path} is not a file.`, fix);
    }
    return { handle, size: stats.size };
  } catch (error) {
    if (error instanceof DynnError) throw error;
    const reason =
      errorCode(error) === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as Error).message})`;
    throw modelFileError(file, `${what} ${path} ${reason}.`, fix);
  }
}

/** Reads exactly `size` bytes from the start of an open file. */
async function readExactly(
  handle: import('node:fs/promises').FileHandle,
  size: number,
): Promise<Uint8Array | undefined> {
  const bytes = new Uint8Array(size);
  let offset = 0;
  while (offset < size) {
    const { bytesRead } = await handle.read(bytes, offset, size - offset, offset);
    if (bytesRead === 0) return undefined;
    offset += bytesRead;
  }
  return bytes;
}

/** Writes `data` to `path` and flushes it to disk, so a later rename never exposes a partly written file. */
async function writeDurably(fs: NodeFs, path: string, data: Uint8Array | string): Promise<void> {
  const handle = await fs.open(path, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A tf.io handler for model files on disk, in Node: `model.json` plus weight shards
 * `group1-shardNofM.bin` beside it. Created by {@link fileHandler}.
 *
 * Saving writes and flushes every file under a temporary name first, then renames the shards and
 * finally model.json into place: a save that fails or is interrupted while writing leaves no
 * partial file and the previous model.json and shards as they were (only a stop between the
 * final renames, a few system calls, could leave new shards beside the old model.json).
 * Loading reads model.json within the size limit, checks the manifest and the shard file sizes,
 * and only then reads the shards.
 */
export class FileHandler implements tf.io.IOHandler, ModelReader {
  /** The path of model.json, named in errors. */
  readonly url: string;
  private readonly shardBytes: number;
  private readonly limits: LoadLimits;

  /** @internal Use {@link fileHandler}. */
  constructor(location: string, options: FileHandlerOptions = {}) {
    const path = location.startsWith('file://') ? location.slice('file://'.length) : location;
    if (path.length === 0) throw new DynnError('INVALID_OPTION', `'${location}' names no file or folder.`);
    this.url = path.toLowerCase().endsWith('.json') ? path : `${path.replace(/[/\\]+$/, '')}/${MODEL_JSON}`;
    const shardBytes = options.shardBytes ?? SHARD_BYTES;
    if (!Number.isSafeInteger(shardBytes) || shardBytes < 1) {
      throw new DynnError('INVALID_OPTION', `shardBytes must be a positive integer, got ${shardBytes}.`);
    }
    this.shardBytes = shardBytes;
    this.limits = resolveLimits(options.limits);
  }

  /** Writes `artifacts` as model.json and shards; see the class notes on how a failed save is contained. */
  async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
    const { fs, path } = await nodeModules(this.url);
    if (artifacts.modelTopology instanceof ArrayBuffer) {
      throw new DynnError(
        'INVALID_OPTION',
        `${this.url}: binary (GraphDef) topologies cannot be saved as files here.`,
        {
          file: this.url,
        },
      );
    }
    const data =
      artifacts.weightData === undefined
        ? new ArrayBuffer(0)
        : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
    const shards = splitShards(data, this.shardBytes);
    const names = shardNames(shards.length);
    const json = JSON.stringify(modelJsonFor(artifacts, names));
    const folder = path.dirname(this.url);
    const suffix = `.tmp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const pending = new Set<string>();
    try {
      await fs.mkdir(folder, { recursive: true });
      for (const [i, shard] of shards.entries()) {
        const temporary = path.join(folder, `${names[i]}${suffix}`);
        pending.add(temporary);
        await writeDurably(fs, temporary, new Uint8Array(shard));
      }
      const temporaryJson = `${this.url}${suffix}`;
      pending.add(temporaryJson);
      await writeDurably(fs, temporaryJson, json);
      for (const name of names) {
        const temporary = path.join(folder, `${name}${suffix}`);
        await fs.rename(temporary, path.join(folder, name));
        pending.delete(temporary);
      }
      await fs.rename(temporaryJson, this.url);
      pending.delete(temporaryJson);
    } catch (error) {
      await Promise.all(
        [...pending].map((temporary) => fs.rm(temporary, { force: true }).catch(() => undefined)),
      );
      throw new DynnError(
        'MODEL_FILE',
        `${this.url}: the model could not be saved (${(error as Error).message}). ` +
          'Check that the folder is writable and has free space; the model.json there, if any, was not replaced.',
        { file: this.url },
      );
    }
    return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
  }

  /**
   * Reads the model as tfjs artifacts, with every check that does not need the dynn runtime: safe
   * JSON within the limits, a valid manifest, shard sizes matching it. `loadModel` goes further.
   */
  async load(): Promise<tf.io.ModelArtifacts> {
    try {
      const contents = await readModelJson(this, this.limits);
      return artifactsFrom(contents, await readShards(this, contents.groups));
    } catch (error) {
      throw namingFile(error, this.url);
    }
  }

  /** Reads model.json, refusing one over `maxBytes` before reading it. */
  async readModelJson(maxBytes: number): Promise<string> {
    const { fs } = await nodeModules(this.url);
    const fix = 'Save a model there first, or check the path.';
    const { handle, size } = await openForReading(fs, this.url, this.url, 'model.json', fix);
    try {
      if (size > maxBytes) {
        throw limitError(this.url, `model.json is ${size} bytes, which`, 'maxModelJsonBytes', maxBytes);
      }
      const bytes = await readExactly(handle, size);
      if (bytes === undefined) {
        throw modelFileError(
          this.url,
          'became shorter while being read.',
          'Load it again once nothing writes to it.',
        );
      }
      return decodeUtf8(bytes, this.url);
    } finally {
      await handle.close();
    }
  }

  /** Sizes of the shard files, from the file system, without reading them. */
  async shardByteLengths(paths: readonly string[]): Promise<number[]> {
    const { fs, path } = await nodeModules(this.url);
    const folder = path.dirname(this.url);
    return Promise.all(
      paths.map(async (shard) => {
        const { handle, size } = await openForReading(
          fs,
          path.join(folder, shard),
          this.url,
          'weight shard',
          SHARD_FIX,
        );
        await handle.close();
        return size;
      }),
    );
  }

  /** Reads one shard file, refusing one over `maxBytes` before reading it. */
  async readShard(shard: string, maxBytes: number): Promise<ArrayBuffer> {
    const { fs, path } = await nodeModules(this.url);
    const location = path.join(path.dirname(this.url), shard);
    const { handle, size } = await openForReading(fs, location, this.url, 'weight shard', SHARD_FIX);
    try {
      if (size > maxBytes) {
        throw modelFileError(
          this.url,
          `weight shard ${location} is ${size} bytes, but only ${maxBytes} bytes of weights remain to be read.`,
          SHARD_FIX,
        );
      }
      const bytes = await readExactly(handle, size);
      if (bytes === undefined) {
        throw modelFileError(
          this.url,
          `weight shard ${location} became shorter while being read.`,
          SHARD_FIX,
        );
      }
      return bytes.buffer as ArrayBuffer;
    } finally {
      await handle.close();
    }
  }
}

/**
 * A tf.io handler that saves and loads model files on disk (Node only): `path` is a folder (files
 * `model.json` and `group1-shardNofM.bin` go in it) or a path ending in `.json`; a leading
 * `file://` is accepted. `saveModel` and `loadModel` use it for `file://` URLs and plain paths.
 *
 * @example
 * ```ts
 * await saveModel(model, fileHandler('./models/mnist'));
 * const again = await loadModel(runtime, fileHandler('./models/mnist/model.json'));
 * ```
 */
export function fileHandler(path: string, options: FileHandlerOptions = {}): FileHandler {
  return new FileHandler(path, options);
}
