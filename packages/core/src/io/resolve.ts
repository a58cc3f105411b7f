import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from '../errors.js';
import { FileHandler } from './file-handler.js';
import { type FetchFunction, HttpReader } from './http-reader.js';
import { isModelReader, type ModelReader } from './reader.js';

/** Where a model is loaded from: a {@link ModelReader} (checked piece by piece) or any other tf.io handler. */
export type LoadSource =
  | { label: string; reader: ModelReader; handler?: undefined }
  | { label: string; reader?: undefined; handler: tf.io.IOHandler };

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;
const BROWSER_SCHEMES = new Set(['indexeddb', 'localstorage', 'downloads']);

function inNode(): boolean {
  return tf.env().getBool('IS_NODE');
}

function schemeOf(url: string): string | undefined {
  return SCHEME.exec(url)?.[1]?.toLowerCase();
}

function noHandler(url: string, saving: boolean): DynnError {
  const scheme = schemeOf(url);
  const where =
    scheme !== undefined && BROWSER_SCHEMES.has(scheme) && inNode()
      ? `${scheme}:// works in a browser only; in Node use a file path or file:// URL.`
      : `Use file:// or a path (Node), indexeddb:// or localstorage:// (browser), ${saving ? 'downloads:// (browser), ' : ''}` +
        'http(s)://, or pass a tf.io.IOHandler.';
  return new DynnError('INVALID_OPTION', `No way to ${saving ? 'save to' : 'load from'} '${url}'. ${where}`, {
    file: url,
  });
}

function shardBytesMisplaced(): DynnError {
  return new DynnError(
    'INVALID_OPTION',
    'shardBytes applies when saving to a path or file:// URL; give it to fileHandler(path, { shardBytes }) instead.',
  );
}

function handlerLabel(handler: object): string {
  const name = handler.constructor?.name;
  return name && name !== 'Object' ? `tf.io handler ${name}` : 'tf.io handler';
}

/** The reader or handler that loads from `source`: a URL, a path, a {@link ModelReader} or a tf.io handler. */
export function resolveLoadSource(
  source: string | tf.io.IOHandler | ModelReader,
  fetchFunction?: FetchFunction,
): LoadSource {
  if (typeof source !== 'string') {
    if (isModelReader(source)) return { label: source.url, reader: source };
    if (typeof source?.load !== 'function') {
      throw new DynnError(
        'INVALID_OPTION',
        'loadModel needs a URL, a path or a tf.io.IOHandler with a load method.',
      );
    }
    return { label: handlerLabel(source), handler: source };
  }
  const scheme = schemeOf(source);
  if (scheme === undefined || scheme === 'file') {
    if (inNode()) {
      const reader = new FileHandler(source);
      return { label: reader.url, reader };
    }
    if (scheme === undefined && typeof location !== 'undefined') {
      // A bare path in a browser is a URL relative to the page, as tfjs treats it.
      const url = new URL(source, location.href).href;
      return { label: url, reader: new HttpReader(url, fetchFunction) };
    }
    throw noHandler(source, false);
  }
  if (scheme === 'http' || scheme === 'https') {
    return { label: source, reader: new HttpReader(source, fetchFunction) };
  }
  const [handler] = tf.io.getLoadHandlers(source);
  if (handler === undefined) throw noHandler(source, false);
  return { label: source, handler };
}

/** The tf.io handler that saves to `destination`: a URL, a path or a handler. */
export function resolveSaveTarget(
  destination: string | tf.io.IOHandler,
  shardBytes?: number,
): { label: string; handler: tf.io.IOHandler } {
  if (typeof destination !== 'string') {
    if (typeof destination?.save !== 'function') {
      throw new DynnError(
        'INVALID_OPTION',
        'saveModel needs a URL, a path or a tf.io.IOHandler with a save method.',
      );
    }
    if (shardBytes !== undefined) throw shardBytesMisplaced();
    const label = destination instanceof FileHandler ? destination.url : handlerLabel(destination);
    return { label, handler: destination };
  }
  const scheme = schemeOf(destination);
  if (scheme === undefined || scheme === 'file') {
    if (!inNode()) throw noHandler(destination, true);
    const handler = new FileHandler(destination, shardBytes === undefined ? {} : { shardBytes });
    return { label: handler.url, handler };
  }
  if (shardBytes !== undefined) throw shardBytesMisplaced();
  if (scheme === 'http' || scheme === 'https') {
    return { label: destination, handler: tf.io.http(destination) };
  }
  const [handler] = tf.io.getSaveHandlers(destination);
  if (handler === undefined) throw noHandler(destination, true);
  return { label: destination, handler };
}
