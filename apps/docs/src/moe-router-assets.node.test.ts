import { readFile } from 'node:fs/promises';
import { loadModel } from '@dynn/core';
import { describeEachBackend, guardLeaks } from '@dynn/testing';
import { expect, it } from 'vitest';
import { decodeFashionSample, type FashionSample, firstImages, samplePixelsFile } from './fashion-sample.js';
import {
  measuredSetting,
  moeRouterRuntime,
  readSettingsTable,
  runMoeRouterExample,
  type SettingsTable,
} from './moe-router-example.js';
import { MOE_CAPACITY_FACTORS, MOE_EXPERTS, MOE_KS, MOE_MEASURE_BATCH } from './moe-router-settings.js';

// The MoE model train-moe-router-model.ts committed under apps/docs/public/, read from disk. In
// Node only: in a browser, the end-to-end test (e2e/) runs it on the built site.
const publicDir = new URL('../public/', import.meta.url);
const publicUrl = (path: string) => new URL(path, publicDir);

async function readSample(): Promise<FashionSample> {
  const url = publicUrl('data/fashion-mnist-sample.json');
  const manifest: unknown = JSON.parse(await readFile(url, 'utf8'));
  const pixels = new Uint8Array(await readFile(new URL(samplePixelsFile(manifest, url.href), url)));
  return decodeFashionSample(manifest, pixels, url.href);
}

async function readTable(): Promise<SettingsTable> {
  const url = publicUrl('models/fashion-moe-router/settings.json');
  return readSettingsTable(JSON.parse(await readFile(url, 'utf8')), url.href);
}

describeEachBackend('the moe-router live example on the committed model', (backend) => {
  guardLeaks();

  it('one model serves every k and capacity: each token reaches its experts, the report counts what the table says', async () => {
    const [all, table] = await Promise.all([readSample(), readTable()]);
    // The page's default batch: 64 images, 1,024 patch tokens.
    const sample = firstImages(all, MOE_MEASURE_BATCH);
    expect(table.ks).toEqual(MOE_KS);
    expect(table.capacityFactors).toEqual(MOE_CAPACITY_FACTORS);
    expect([table.experts, table.trainedK, table.batchImages]).toEqual([MOE_EXPERTS, 2, MOE_MEASURE_BATCH]);
    const model = await loadModel(moeRouterRuntime(), publicUrl('models/fashion-moe-router/model.json').href);
    try {
      const top2 = await runMoeRouterExample(model, sample, 2, 0);
      const top1 = await runMoeRouterExample(model, sample, 1, 0);
      const limited = await runMoeRouterExample(model, sample, 2, 0.5);
      expect(top2.backend).toBe(backend);
      expect(top2.tokensPerImage).toBe(16);
      // Dropless: every token recorded with exactly k experts, and the loads count them.
      expect(top2.assignment).toHaveLength(64 * 16);
      expect(top2.assignment.every((experts) => experts.length === 2)).toBe(true);
      expect(top2.load.reduce((a, b) => a + b, 0)).toBe(64 * 16 * 2);
      expect([top2.dropped, top2.unrouted, top2.capacity]).toEqual([0, 0, null]);
      // Dropless FLOPs per image do not depend on the image: the sample's equal the test set's.
      for (const r of [top2, top1]) {
        const measured = measuredSetting(table, r.k, 0)!;
        expect(r.meanFlops / 1e6).toBeCloseTo(measured.mflops, 6);
        expect(r.expertFlops / 1e6).toBeCloseTo(measured.expertMflops, 6);
        // k of the 8 experts' work on every token.
        expect(r.expertFlops / r.denseExpertFlops).toBeCloseTo(r.k / MOE_EXPERTS, 6);
      }
      // Half an even share per expert: ceil(1,024 tokens * 2 / 8 * 0.5) = 128 tokens at most each.
      expect(limited.capacity).toBe(128);
      for (const load of limited.load) expect(load).toBeLessThanOrEqual(128);
      expect(limited.dropped).toBeGreaterThan(0);
      expect(limited.load.reduce((a, b) => a + b, 0) + limited.dropped).toBe(64 * 16 * 2);
      expect(limited.expertFlops).toBeLessThan(top2.expertFlops);
      // The table's accuracy is a trained model's (85.4% at k = 2, dropless, when committed).
      expect(measuredSetting(table, 2, 0)!.accuracy).toBeGreaterThan(0.8);
      // On these 64 images: 87.5%, 79.7% and 82.8% when the model was committed (chance: 10%).
      expect(top2.accuracy).toBeGreaterThan(0.75);
      expect(top1.accuracy).toBeGreaterThan(0.7);
      expect(limited.accuracy).toBeGreaterThan(0.6);
      // Each expert's nodes ran on its tokens only.
      const up = (r: typeof top2, e: number) => r.report.nodes.find((n) => n.name === `moe/experts/${e}/up`);
      for (let e = 0; e < MOE_EXPERTS; e++) expect(up(top2, e)?.rows ?? 0).toBe(top2.load[e]);
    } finally {
      model.dispose();
    }
  });
});
