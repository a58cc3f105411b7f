import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import { expertPatchRgba } from './expert-patches.js';
import {
  fetchSettingsTable,
  imageExperts,
  measuredSetting,
  moeRouterAssets,
  readSettingsTable,
} from './moe-router-example.js';
import { capacityLabel, EXPERT_COLORS, MOE_EXPERTS } from './moe-router-settings.js';

const entry = (k: number, capacityFactor: number, accuracy: number, droppedShare: number) => ({
  k,
  capacityFactor,
  accuracy,
  droppedShare,
  expertMflops: 0.1 * k,
  mflops: 1 + 0.1 * k,
});
const table = {
  description: 'two ks, two capacities',
  testImages: 100,
  batchImages: 64,
  experts: 8,
  trainedK: 2,
  ks: [1, 2],
  capacityFactors: [0, 1],
  settings: [entry(1, 0, 0.8, 0), entry(1, 1, 0.78, 0.2), entry(2, 0, 0.85, 0), entry(2, 1, 0.84, 0.25)],
};

describe('the moe-router example table', () => {
  it('reads the table and finds each setting', () => {
    const read = readSettingsTable(JSON.parse(JSON.stringify(table)), 'settings.json');
    expect(measuredSetting(read, 2, 1)).toEqual(entry(2, 1, 0.84, 0.25));
    expect(measuredSetting(read, 4, 0)).toBeUndefined();
    expect(read.trainedK).toBe(2);
  });

  it('refuses malformed files, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [[], /is not a JSON object/],
      [{ ...table, experts: 0 }, /'experts'/],
      [{ ...table, batchImages: 1.5 }, /'batchImages'/],
      [{ ...table, ks: [1, 9] }, /'ks'/],
      [{ ...table, capacityFactors: [-1] }, /'capacityFactors'/],
      [{ ...table, settings: [entry(1, 0, 1.2, 0)] }, /settings\[0\]/],
      [{ ...table, settings: table.settings.slice(1) }, /k 1, capacity factor 0 once/],
      [{ ...table, settings: [...table.settings, entry(4, 0, 0.8, 0)] }, /holds 5 entries/],
    ];
    for (const [json, pattern] of cases) {
      let caught: unknown;
      try {
        readSettingsTable(json, 'settings.json');
      } catch (error) {
        caught = error;
      }
      expect(isDynnError(caught, 'DATA_CORRUPT'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(pattern);
      expect((caught as Error).message).toMatch(/^settings\.json: /);
    }
  });

  it('fetches the table and reports a missing one', async () => {
    const ok = (async () => new Response(JSON.stringify(table))) as unknown as typeof fetch;
    expect((await fetchSettingsTable('https://example.test/s.json', ok)).ks).toEqual([1, 2]);
    const missing = (async () => new Response('', { status: 404 })) as unknown as typeof fetch;
    await expect(fetchSettingsTable('https://example.test/s.json', missing)).rejects.toThrow(
      /s\.json.*HTTP 404/,
    );
  });

  it('places its files under the site root, and names its settings', () => {
    expect(moeRouterAssets('https://example.test/dynn/')).toEqual({
      model: 'https://example.test/dynn/models/fashion-moe-router/model.json',
      settings: 'https://example.test/dynn/models/fashion-moe-router/settings.json',
    });
    expect(capacityLabel(0)).toBe('dropless');
    expect(capacityLabel(1.25)).toBe('1.25');
    expect(EXPERT_COLORS).toHaveLength(MOE_EXPERTS);
  });
});

describe('the expert map', () => {
  it("slices one image's tokens out of the batch's assignment", () => {
    const assignment = [[0], [1, 2], [], [3], [4], [5, 6]];
    expect(imageExperts(assignment, 1, 3)).toEqual([[3], [4], [5, 6]]);
  });

  it('tints each patch by its experts, one stripe each, ink over the tint, hatching where none computed', () => {
    // A 2x4 image of two 2x2 patches, drawn at scale 2: patch 0 by experts 0 and 1, patch 1 by none.
    const layout = { height: 2, width: 4, patch: 2, scale: 2, colors: ['#ff0000', '#0000ff'] };
    const pixels = Uint8Array.from([0, 0, 0, 255, 0, 0, 0, 0]);
    const rgba = expertPatchRgba(pixels, [[0, 1], []], layout);
    expect(rgba).toHaveLength(8 * 4 * 4);
    const px = (x: number, y: number) => Array.from(rgba.subarray((y * 8 + x) * 4, (y * 8 + x) * 4 + 4));
    // Patch borders are white; inside patch 0 the left stripe is expert 0's tint, the right expert 1's.
    expect(px(0, 0)).toEqual([255, 255, 255, 255]);
    expect(px(1, 1)).toEqual([255, 102, 102, 255]);
    expect(px(3, 1)).toEqual([102, 102, 255, 255]);
    // Full ink (pixel 3 of row 0 is in patch 1) is dark whatever the tint.
    expect(px(7, 1)).toEqual([25, 25, 25, 255]);
    // Patch 1 had no expert: light grey with darker hatching.
    expect(px(6, 2)).toEqual([236, 236, 236, 255]);
    expect(px(5, 1)).toEqual([160, 160, 160, 255]);
  });
});
