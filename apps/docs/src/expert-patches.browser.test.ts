import { describe, expect, it } from 'vitest';
import { expertPatchUrls } from './expert-patches.js';

async function pixelsOf(url: string): Promise<Uint8ClampedArray> {
  const image = new Image();
  image.src = url;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext('2d')!;
  context.drawImage(image, 0, 0);
  return context.getImageData(0, 0, image.width, image.height).data;
}

describe('expert map thumbnails', () => {
  it('draws each image as a PNG with its patches tinted by their experts', async () => {
    const layout = { height: 2, width: 2, patch: 2, scale: 2, colors: ['#ff0000', '#0000ff'] };
    const urls = expertPatchUrls(new Uint8Array(8), 2, (i) => [[i]], layout);
    expect(urls).toHaveLength(2);
    for (const url of urls) expect(url).toMatch(/^data:image\/png;base64,/);
    const [first, second] = [await pixelsOf(urls[0]!), await pixelsOf(urls[1]!)];
    // The pixel at (1, 1), inside the patch: expert 0's tint, then expert 1's.
    const at = (1 * 4 + 1) * 4;
    expect(Array.from(first.subarray(at, at + 4))).toEqual([255, 102, 102, 255]);
    expect(Array.from(second.subarray(at, at + 4))).toEqual([102, 102, 255, 255]);
  });
});
