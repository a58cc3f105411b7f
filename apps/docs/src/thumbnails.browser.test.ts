import { describe, expect, it } from 'vitest';
import { decodeFashionSample } from './fashion-sample.js';
import { thumbnailUrls } from './thumbnails.js';

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

describe('sample thumbnails', () => {
  it('draws each image as a PNG, ink dark on white', async () => {
    const sample = decodeFashionSample(
      { pixels: 'x.bin', count: 2, height: 1, width: 2, classNames: ['a'], labels: [0, 0] },
      Uint8Array.from([0, 255, 200, 55]),
      'x.json',
    );
    const urls = thumbnailUrls(sample);
    expect(urls).toHaveLength(2);
    for (const url of urls) expect(url).toMatch(/^data:image\/png;base64,/);
    const second = await pixelsOf(urls[1]!);
    expect(Array.from(second)).toEqual([55, 55, 55, 255, 200, 200, 200, 255]);
  });
});
