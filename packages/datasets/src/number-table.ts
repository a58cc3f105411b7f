import { DynnError } from '@dynn/core';

/** A table of numbers parsed from delimited text, stored row-major. */
export interface NumberTable {
  /** Number of data rows (the header, if any, excluded). */
  rows: number;
  /** Number of columns in every row. */
  columns: number;
  /** `rows * columns` values; row `r`, column `c` is at `r * columns + c`. */
  values: Float64Array;
}

/** How {@link parseNumberTable} reads its input. */
export interface NumberTableFormat {
  /** Number of columns every row must have. */
  columns: number;
  /** True when the first line is a header to skip. */
  header: boolean;
  /** The file the bytes came from, named in errors. */
  file: string;
}

const NEWLINE = 10;
const CARRIAGE_RETURN = 13;
const SPACE = 32;
const TAB = 9;
const COMMA = 44;
const MINUS = 45;
const DOT = 46;
const ZERO = 48;
const NINE = 57;

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, exponent) => 10 ** exponent);

/**
 * Parses ASCII text of decimal numbers (optionally signed, optionally with a fraction) separated
 * by commas, spaces or tabs, one row per line (`\n` or `\r\n`; blank lines skipped), straight
 * from the bytes. Values with up to 15 significant digits come out exactly as `Number()` would
 * give them. Throws a `DATA_CORRUPT` {@link DynnError} naming the file and line on anything else.
 */
export function parseNumberTable(bytes: Uint8Array, format: NumberTableFormat): NumberTable {
  const { columns, header, file } = format;
  let lineCount = 1;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === NEWLINE) lineCount++;
  const values = new Float64Array(lineCount * columns);
  const end = bytes.length;
  let line = 1;
  let i = 0;
  if (header) {
    while (i < end && bytes[i] !== NEWLINE) i++;
    i++;
    line++;
  }
  const fail = (what: string): never => {
    throw new DynnError(
      'DATA_CORRUPT',
      `Data file '${file}' is malformed at line ${line}: ${what}. Reinstall @dynn/datasets to restore the original file.`,
      { file },
    );
  };
  let rows = 0;
  while (i < end) {
    let byte = bytes[i]!;
    if (byte === NEWLINE || byte === CARRIAGE_RETURN) {
      if (byte === NEWLINE) line++;
      i++;
      continue;
    }
    for (let column = 0; column < columns; column++) {
      if (column > 0) {
        if (byte !== COMMA && byte !== SPACE && byte !== TAB) fail(`expected ${columns} columns`);
        byte = bytes[++i]!;
      }
      const negative = byte === MINUS;
      if (negative) byte = bytes[++i]!;
      let mantissa = 0;
      let digits = 0;
      let fractionDigits = 0;
      while (byte >= ZERO && byte <= NINE) {
        mantissa = mantissa * 10 + (byte - ZERO);
        digits++;
        byte = bytes[++i]!;
      }
      if (byte === DOT) {
        byte = bytes[++i]!;
        while (byte >= ZERO && byte <= NINE) {
          mantissa = mantissa * 10 + (byte - ZERO);
          digits++;
          fractionDigits++;
          byte = bytes[++i]!;
        }
      }
      if (digits === 0 || fractionDigits >= POWERS_OF_TEN.length)
        fail(`expected a number in column ${column + 1}`);
      const magnitude = fractionDigits === 0 ? mantissa : mantissa / POWERS_OF_TEN[fractionDigits]!;
      values[rows * columns + column] = negative ? -magnitude : magnitude;
    }
    if (i < end && byte !== NEWLINE && byte !== CARRIAGE_RETURN) fail(`expected ${columns} columns`);
    rows++;
  }
  return { rows, columns, values: values.subarray(0, rows * columns) };
}

/** Column `column` of `table` as a new array. */
export function tableColumn(table: NumberTable, column: number): Float64Array {
  const out = new Float64Array(table.rows);
  for (let row = 0, at = column; row < table.rows; row++, at += table.columns) out[row] = table.values[at]!;
  return out;
}
