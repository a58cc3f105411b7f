import { type Tensor1D, tensor1d } from '@tensorflow/tfjs-core';
import type { DataLocation } from './byte-source.js';
import { CharVocabulary } from './char-vocabulary.js';
import { readDataFile } from './read-data-file.js';

const FILE = 'austen.txt.gz';

/** Tensors made by {@link CharCorpus.toTensors}; the caller disposes them. */
export interface CharCorpusTensors {
  /** `[length]` int32 character ids. */
  ids: Tensor1D;
}

/** A text as character ids, with its vocabulary and helpers to move between the two. */
export interface CharCorpus {
  /** The text itself. */
  text: string;
  /** One id per character of `text` (UTF-16 code unit): an index into `vocab`. */
  ids: Uint8Array | Uint16Array;
  /** The distinct characters in UTF-16 code unit order; a character's id is its index here. */
  vocab: readonly string[];
  /** The ids of `text`; throws an `INVALID_INPUT` `DynnError` on a character not in `vocab`. */
  encode(text: string): Uint8Array | Uint16Array;
  /** The text that `ids` encode; throws an `INVALID_INPUT` `DynnError` on an unknown id. */
  decode(ids: ArrayLike<number>): string;
  /** The ids as a tfjs tensor (see {@link CharCorpusTensors}); the caller disposes it. */
  toTensors(): CharCorpusTensors;
}

/**
 * Loads Jane Austen's six novels (public domain; packaged by janeaustenr, MIT) as one text of
 * 4,025,032 characters over 81 distinct symbols, encoded as character ids for language models.
 * Throws a `DATA_MISSING` or `DATA_CORRUPT` `DynnError` naming the file when it is absent or
 * damaged.
 *
 * @example
 * ```ts
 * const austen = await loadAusten();
 * austen.decode(austen.ids.subarray(0, 4)); // 'EMMA'
 * ```
 */
export async function loadAusten(location: DataLocation = {}): Promise<CharCorpus> {
  const text = new TextDecoder('utf-8', { fatal: true }).decode(await readDataFile(FILE, location));
  const vocabulary = CharVocabulary.fromText(text);
  const ids = vocabulary.encode(text);
  return {
    text,
    ids,
    vocab: vocabulary.symbols,
    encode: (input) => vocabulary.encode(input),
    decode: (input) => vocabulary.decode(input),
    toTensors: () => ({ ids: tensor1d(Int32Array.from(ids), 'int32') }),
  };
}
