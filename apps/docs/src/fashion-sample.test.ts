import { isDynnError } from '@dynn/core';
import { describeEachBackend, expectNoLeaks } from '@dynn/testing';
import { describe, expect, it } from 'vitest';
import { decodeFashionSample, fetchFashionSample, firstImages, sampleImages } from './fashion-sample.js';

const manifest = {
  pixels: 'sample.bin',
  count: 2,
  height: 2,
  width: 3,
  classNames: ['a', 'b', 'c'],
  labels: [2, 0],
};
const pixels = Uint8Array.from([0, 51, 102, 153, 204, 255, 255, 0, 0, 0, 0, 0]);

function expectCorrupt(action: () => unknown, pattern: RegExp): void {
  try {
    action();
  } catch (error) {
    expect(isDynnError(error, 'DATA_CORRUPT'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(pattern);
    expect((error as Error).message).toMatch(/train-models\.ts/);
    return;
  }
  throw new Error('expected a DATA_CORRUPT error');
}

describe('the Fashion-MNIST sample of the live examples', () => {
  it('decodes a manifest and its pixels', () => {
    const sample = decodeFashionSample(manifest, pixels, 'sample.json');
    expect(sample).toMatchObject({ count: 2, height: 2, width: 3, classNames: ['a', 'b', 'c'] });
    expect(Array.from(sample.labels)).toEqual([2, 0]);
    expect(sample.pixels).toBe(pixels);
  });

  it('refuses a manifest that does not match its pixels, naming the file and the field', () => {
    expectCorrupt(
      () => decodeFashionSample(null, pixels, 'sample.json'),
      /sample\.json: is not a JSON object/,
    );
    expectCorrupt(
      () => decodeFashionSample({ ...manifest, count: 0 }, pixels, 'sample.json'),
      /'count' is 0/,
    );
    expectCorrupt(() => decodeFashionSample({ ...manifest, labels: [2] }, pixels, 'sample.json'), /2 labels/);
    expectCorrupt(
      () => decodeFashionSample({ ...manifest, labels: [2, 3] }, pixels, 'sample.json'),
      /label 1 is 3/,
    );
    expectCorrupt(
      () => decodeFashionSample({ ...manifest, classNames: [] }, pixels, 'sample.json'),
      /classNames/,
    );
    expectCorrupt(
      () => decodeFashionSample(manifest, pixels.subarray(1), 'sample.json'),
      /holds 11 bytes, but 2 images of 2x3 need 12/,
    );
  });

  it('takes the first images as views, and refuses more than it holds', () => {
    const sample = decodeFashionSample(manifest, pixels, 'sample.json');
    const first = firstImages(sample, 1);
    expect(first.count).toBe(1);
    expect(Array.from(first.labels)).toEqual([2]);
    expect(first.pixels.buffer).toBe(pixels.buffer);
    expect(first.pixels).toHaveLength(6);
    expect(() => firstImages(sample, 3)).toThrow(/holds 2 images; ask for 1 to 2, not 3/);
    expect(() => firstImages(sample, 0)).toThrow(/not 0/);
  });

  it('fetches the manifest, then the pixel file beside it', async () => {
    const requested: string[] = [];
    const fakeFetch = (async (url: string) => {
      requested.push(url);
      return url.endsWith('.json') ? new Response(JSON.stringify(manifest)) : new Response(pixels);
    }) as typeof fetch;
    const sample = await fetchFashionSample('https://example.test/site/data/sample.json', fakeFetch);
    expect(requested).toEqual([
      'https://example.test/site/data/sample.json',
      'https://example.test/site/data/sample.bin',
    ]);
    expect(Array.from(sample.pixels)).toEqual(Array.from(pixels));
  });

  it('says which file is missing when the server answers 404', async () => {
    const fakeFetch = (async () => new Response('not found', { status: 404 })) as unknown as typeof fetch;
    await expect(fetchFashionSample('https://example.test/data/sample.json', fakeFetch)).rejects.toThrow(
      /sample\.json.*HTTP 404/,
    );
  });
});

describeEachBackend('the sample as a tensor', () => {
  it('is [count, height, width, 1] float32 scaled to [0, 1]', async () => {
    await expectNoLeaks(async () => {
      const images = sampleImages(decodeFashionSample(manifest, pixels, 'sample.json'));
      expect(images.shape).toEqual([2, 2, 3, 1]);
      expect(images.dtype).toBe('float32');
      const values = await images.data();
      images.dispose();
      expect(values[1]).toBeCloseTo(0.2, 6);
      expect(values[5]).toBe(1);
    });
  });
});
