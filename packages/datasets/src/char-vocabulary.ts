import { DynnError } from '@dynn/core';

const CODE_UNITS = 0x10000;
const CHUNK = 0x2000;

/**
 * A character-level vocabulary: the distinct UTF-16 code units of a text, sorted, each given its
 * index as id. Ids are bytes when there are at most 256 symbols.
 */
export class CharVocabulary {
  /** The symbols, by id. */
  readonly symbols: readonly string[];
  readonly #codeUnits: Uint16Array;
  readonly #idByCodeUnit: Int32Array;

  private constructor(codeUnits: number[]) {
    this.symbols = codeUnits.map((unit) => String.fromCharCode(unit));
    this.#codeUnits = Uint16Array.from(codeUnits);
    this.#idByCodeUnit = new Int32Array(CODE_UNITS).fill(-1);
    codeUnits.forEach((unit, id) => {
      this.#idByCodeUnit[unit] = id;
    });
  }

  /** The vocabulary of the symbols that occur in `text`. */
  static fromText(text: string): CharVocabulary {
    const present = new Uint8Array(CODE_UNITS);
    for (let i = 0; i < text.length; i++) present[text.charCodeAt(i)] = 1;
    const codeUnits: number[] = [];
    present.forEach((flag, unit) => {
      if (flag === 1) codeUnits.push(unit);
    });
    return new CharVocabulary(codeUnits);
  }

  /**
   * The ids of `text`'s characters. Throws an `INVALID_INPUT` `DynnError` naming the first
   * character that is not in the vocabulary.
   */
  encode(text: string): Uint8Array | Uint16Array {
    const ids = this.symbols.length <= 256 ? new Uint8Array(text.length) : new Uint16Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const id = this.#idByCodeUnit[text.charCodeAt(i)]!;
      if (id < 0) {
        throw new DynnError(
          'INVALID_INPUT',
          `Character ${JSON.stringify(text[i])} at index ${i} is not in the vocabulary; use only its ${this.symbols.length} symbols.`,
        );
      }
      ids[i] = id;
    }
    return ids;
  }

  /**
   * The text that `ids` encode. Throws an `INVALID_INPUT` `DynnError` on an id outside
   * `0..symbols.length-1`.
   */
  decode(ids: ArrayLike<number>): string {
    const parts: string[] = [];
    const chunk = new Uint16Array(CHUNK);
    for (let start = 0; start < ids.length; start += CHUNK) {
      const end = Math.min(start + CHUNK, ids.length);
      for (let i = start; i < end; i++) {
        const id = ids[i]!;
        if (!(id >= 0 && id < this.#codeUnits.length && Number.isInteger(id))) {
          throw new DynnError(
            'INVALID_INPUT',
            `Id ${id} at index ${i} is not in the vocabulary; ids run from 0 to ${this.symbols.length - 1}.`,
          );
        }
        chunk[i - start] = this.#codeUnits[id]!;
      }
      parts.push(String.fromCharCode(...chunk.subarray(0, end - start)));
    }
    return parts.join('');
  }
}
