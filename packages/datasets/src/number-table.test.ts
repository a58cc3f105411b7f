import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { parseNumberTable, tableColumn } from './number-table.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('parseNumberTable', () => {
  it('reads comma- and space-separated rows, skipping a header and blank lines', () => {
    const table = parseNumberTable(bytes('a,b c\r\n1,-2 3.5\r\n\n40,0.25 -0.5\r\n'), {
      columns: 3,
      header: true,
      file: 't.csv',
    });
    expect(table.rows).toBe(2);
    expect(Array.from(table.values)).toEqual([1, -2, 3.5, 40, 0.25, -0.5]);
    expect(Array.from(tableColumn(table, 1))).toEqual([-2, 0.25]);
  });

  it('reads a last line without a newline and gives the values Number() gives', () => {
    const table = parseNumberTable(bytes('1289241911.72836\t7\n0.1\t1453684324'), {
      columns: 2,
      header: false,
      file: 't.tsv',
    });
    expect(Array.from(table.values)).toEqual([1289241911.72836, 7, 0.1, 1453684324]);
  });

  it.each([
    ['too few columns', '1,2\n3\n', 2],
    ['too many columns', '1,2,3\n', 1],
    ['a value that is not a number', '1,x\n', 1],
  ])('fails on %s with a DATA_CORRUPT error naming the file and line', (_, text, line) => {
    let caught: unknown;
    try {
      parseNumberTable(bytes(text), { columns: 2, header: false, file: 'bad.csv' });
    } catch (error) {
      caught = error;
    }
    expect(isDynnError(caught, 'DATA_CORRUPT')).toBe(true);
    expect((caught as Error).message).toContain(`'bad.csv' is malformed at line ${line}`);
  });
});
