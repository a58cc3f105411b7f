import type { FashionSample } from './fashion-sample.js';

/**
 * Every image of `sample` as a PNG data URL (grey, dark clothing on white, as a page shows it
 * best), for `<img>` tags. Browser only: draws on a canvas.
 */
export function thumbnailUrls(sample: FashionSample): string[] {
  const { width, height, count, pixels } = sample;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d');
  if (context === null) throw new Error('This browser gives no 2D canvas to draw the sample images on.');
  const image = context.createImageData(width, height);
  const urls: string[] = [];
  for (let n = 0; n < count; n++) {
    const offset = n * width * height;
    for (let i = 0; i < width * height; i++) {
      // Fashion-MNIST stores ink as high values on a black background; invert for a light page.
      const grey = 255 - pixels[offset + i]!;
      image.data.set([grey, grey, grey, 255], i * 4);
    }
    context.putImageData(image, 0, 0);
    urls.push(canvas.toDataURL('image/png'));
  }
  return urls;
}
