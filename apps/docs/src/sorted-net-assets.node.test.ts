import { readFile } from 'node:fs/promises';
import { loadModel } from '@dynn/core';
import { subNetworkKey } from '@dynn/sorted-net';
import { describeEachBackend, guardLeaks } from '@dynn/testing';
import { expect, it } from 'vitest';
import { decodeFashionSample, type FashionSample, firstImages, samplePixelsFile } from './fashion-sample.js';
import {
  fullEntry,
  measuredEntry,
  readSubNetworkTable,
  runSortedNetExample,
  type SubNetworkTable,
  sortedNetRuntime,
} from './sorted-net-example.js';

// The nested model train-sorted-net-model.ts committed under apps/docs/public/, read from disk. In
// Node only: in a browser, the end-to-end test (e2e/) runs it on the built site.
const publicDir = new URL('../public/', import.meta.url);
const publicUrl = (path: string) => new URL(path, publicDir);

async function readSample(): Promise<FashionSample> {
  const url = publicUrl('data/fashion-mnist-sample.json');
  const manifest: unknown = JSON.parse(await readFile(url, 'utf8'));
  const pixels = new Uint8Array(await readFile(new URL(samplePixelsFile(manifest, url.href), url)));
  return decodeFashionSample(manifest, pixels, url.href);
}

async function readTable(): Promise<SubNetworkTable> {
  const url = publicUrl('models/fashion-sorted-net/sub-networks.json');
  return readSubNetworkTable(JSON.parse(await readFile(url, 'utf8')), url.href);
}

describeEachBackend('the sorted-net live example on the committed model', (backend) => {
  guardLeaks();

  it('one model serves every width and depth: the report counts what the table says, narrower is cheaper', async () => {
    const [all, table] = await Promise.all([readSample(), readTable()]);
    // 128 of the 256 images: the cpu backend runs three sub-networks twice each.
    const sample = firstImages(all, 128);
    expect(table.widths).toEqual([0.25, 0.5, 0.75, 1]);
    expect(table.depths).toEqual([0, 1, 2]);
    const model = await loadModel(sortedNetRuntime(), publicUrl('models/fashion-sorted-net/model.json').href);
    try {
      // Every sub-network has its own batch-norm statistics in the file, under its key.
      for (const { width, depth } of table.subNetworks) {
        const key = subNetworkKey({ width, depth });
        expect(model.state.has(`s0bn/movingMean@${key}`), key).toBe(true);
      }
      const full = await runSortedNetExample(model, sample, 1, 2);
      const smallest = await runSortedNetExample(model, sample, 0.25, 0);
      const half = await runSortedNetExample(model, sample, 0.5, 1);
      expect(full.backend).toBe(backend);
      // FLOPs per image do not depend on the image: the sample's equal the test set's.
      for (const r of [full, smallest, half]) {
        const measured = measuredEntry(table, r.width, r.depth)!;
        expect(r.meanFlops / 1e6).toBeCloseTo(measured.mflops, 6);
      }
      expect(smallest.meanFlops).toBeLessThan(0.1 * full.meanFlops);
      expect(half.meanFlops).toBeLessThan(full.meanFlops);
      // The full network's test accuracy in the table is a trained network's; the sample agrees.
      expect(fullEntry(table).accuracy).toBeGreaterThan(0.8);
      // On these 128 images: 86%, 70% and 43% when the model was committed (chance: 10%).
      expect(full.accuracy).toBeGreaterThan(0.75);
      expect(half.accuracy).toBeGreaterThan(0.55);
      expect(smallest.accuracy).toBeGreaterThan(0.3);
      // The shallower sub-network skips blocks: their nodes are not in the report.
      const ran = new Set(smallest.report.nodes.map((n) => n.name));
      expect(ran.has('s0b0c1')).toBe(false);
      expect(new Set(full.report.nodes.map((n) => n.name)).has('s0b1c1')).toBe(true);
    } finally {
      model.dispose();
    }
  });
});
