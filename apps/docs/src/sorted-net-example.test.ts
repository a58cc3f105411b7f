import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import {
  fetchSubNetworkTable,
  fullEntry,
  measuredEntry,
  readSubNetworkTable,
  sortedNetAssets,
  timeKey,
} from './sorted-net-example.js';

const entry = (width: number, depth: number, accuracy: number, mflops: number) => ({
  width,
  depth,
  accuracy,
  mflops,
});
const table = {
  description: 'two widths, two depths',
  testImages: 100,
  widths: [0.5, 1],
  depths: [0, 1],
  subNetworks: [entry(0.5, 0, 0.6, 0.3), entry(0.5, 1, 0.8, 1.5), entry(1, 0, 0.7, 1), entry(1, 1, 0.9, 4)],
};

describe('the sorted-net example table', () => {
  it('reads the table and finds each sub-network, the full one last', () => {
    const read = readSubNetworkTable(JSON.parse(JSON.stringify(table)), 'sub-networks.json');
    expect(measuredEntry(read, 0.5, 1)).toEqual(entry(0.5, 1, 0.8, 1.5));
    expect(measuredEntry(read, 0.25, 1)).toBeUndefined();
    expect(fullEntry(read)).toEqual(entry(1, 1, 0.9, 4));
  });

  it('refuses malformed files, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [[], /is not a JSON object/],
      [{ ...table, widths: [1, 0.5] }, /'widths'/],
      [{ ...table, widths: [0.5, 1.5] }, /'widths'/],
      [{ ...table, depths: [] }, /'depths'/],
      [{ ...table, testImages: 0 }, /'testImages'/],
      [{ ...table, subNetworks: [entry(0.5, 0, 1.2, 0.3)] }, /subNetworks\[0\]/],
      [{ ...table, subNetworks: table.subNetworks.slice(1) }, /width 0\.5, depth 0 once/],
      [{ ...table, subNetworks: [...table.subNetworks, entry(0.75, 1, 0.8, 2)] }, /holds 5 entries/],
    ];
    for (const [json, pattern] of cases) {
      let caught: unknown;
      try {
        readSubNetworkTable(json, 'sub-networks.json');
      } catch (error) {
        caught = error;
      }
      expect(isDynnError(caught, 'DATA_CORRUPT'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(pattern);
      expect((caught as Error).message).toMatch(/^sub-networks\.json: /);
    }
  });

  it('fetches the table and reports a missing one', async () => {
    const ok = (async () => new Response(JSON.stringify(table))) as unknown as typeof fetch;
    expect((await fetchSubNetworkTable('https://example.test/t.json', ok)).widths).toEqual([0.5, 1]);
    const missing = (async () => new Response('', { status: 404 })) as unknown as typeof fetch;
    await expect(fetchSubNetworkTable('https://example.test/t.json', missing)).rejects.toThrow(
      /t\.json.*HTTP 404/,
    );
  });

  it('places its files under the site root, and keys times by backend, count and sub-network', () => {
    expect(sortedNetAssets('https://example.test/dynn/')).toEqual({
      model: 'https://example.test/dynn/models/fashion-sorted-net/model.json',
      subNetworks: 'https://example.test/dynn/models/fashion-sorted-net/sub-networks.json',
    });
    expect(timeKey('wasm', 64, 0.5, 1)).not.toBe(timeKey('wasm', 64, 0.5, 2));
    expect(timeKey('wasm', 64, 0.5, 1)).not.toBe(timeKey('cpu', 64, 0.5, 1));
  });
});
