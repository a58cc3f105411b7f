import { DynnError } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Test images the live examples classify: grey 8-bit pixels, labels and class names. */
export interface FashionSample {
  count: number;
  height: number;
  width: number;
  /** `count * height * width` pixels, 0 (background) to 255, image after image, row-major. */
  pixels: Uint8Array;
  /** `count` class labels, indices into `classNames`. */
  labels: Uint8Array;
  classNames: readonly string[];
}

const REGENERATE =
  'Regenerate it with `npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/train-models.ts`.';

function corrupt(file: string, problem: string): DynnError {
  return new DynnError('DATA_CORRUPT', `${file}: ${problem}. ${REGENERATE}`, { file });
}

function positiveInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/**
 * The name of the pixel file a sample manifest (the `.json` the training script writes) points
 * to, relative to the manifest. Throws `DATA_CORRUPT` when the manifest has none.
 */
export function samplePixelsFile(manifest: unknown, file: string): string {
  const pixels = (manifest as { pixels?: unknown } | null)?.pixels;
  if (typeof pixels !== 'string' || pixels === '') throw corrupt(file, "has no 'pixels' file name");
  return pixels;
}

/**
 * Checks a sample manifest (`file` names it in errors) against its pixel bytes and returns the
 * sample. Throws `DATA_CORRUPT` naming the field when they do not agree.
 */
export function decodeFashionSample(manifest: unknown, pixels: Uint8Array, file: string): FashionSample {
  if (manifest === null || typeof manifest !== 'object' || Array.isArray(manifest)) {
    throw corrupt(file, 'is not a JSON object');
  }
  const { count, height, width, classNames, labels } = manifest as Record<string, unknown>;
  for (const [field, value] of Object.entries({ count, height, width })) {
    if (!positiveInt(value))
      throw corrupt(file, `'${field}' is ${JSON.stringify(value)}, not a positive integer`);
  }
  const [n, h, w] = [count, height, width] as [number, number, number];
  if (
    !Array.isArray(classNames) ||
    classNames.length === 0 ||
    !classNames.every((c) => typeof c === 'string')
  ) {
    throw corrupt(file, "'classNames' is not a non-empty list of names");
  }
  if (!Array.isArray(labels) || labels.length !== n) {
    throw corrupt(file, `'labels' must list ${n} labels, one per image`);
  }
  const bad = labels.findIndex((l) => !Number.isInteger(l) || l < 0 || l >= classNames.length);
  if (bad >= 0) {
    throw corrupt(
      file,
      `label ${bad} is ${JSON.stringify(labels[bad])}, not a class index below ${classNames.length}`,
    );
  }
  if (pixels.length !== n * h * w) {
    throw corrupt(
      file,
      `its pixel file holds ${pixels.length} bytes, but ${n} images of ${h}x${w} need ${n * h * w}`,
    );
  }
  return { count: n, height: h, width: w, pixels, labels: Uint8Array.from(labels as number[]), classNames };
}

async function fetchOk(url: string, file: string, fetchFunction: typeof fetch): Promise<Response> {
  let response: Response;
  try {
    response = await fetchFunction(url);
  } catch (error) {
    throw new DynnError('DATA_MISSING', `${file}: could not fetch ${url} (${(error as Error).message}).`, {
      file,
    });
  }
  if (!response.ok) {
    throw new DynnError(
      'DATA_MISSING',
      `${file}: fetching ${url} answered HTTP ${response.status}. Check that the site serves apps/docs/public/data/.`,
      { file },
    );
  }
  return response;
}

/**
 * Fetches a sample: its manifest at `manifestUrl` (an absolute URL), then the pixel file it names.
 * Throws `DATA_MISSING` when a file cannot be fetched and `DATA_CORRUPT` when they disagree.
 */
export async function fetchFashionSample(
  manifestUrl: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<FashionSample> {
  const manifest: unknown = await (await fetchOk(manifestUrl, manifestUrl, fetchFunction)).json();
  const pixelsUrl = new URL(samplePixelsFile(manifest, manifestUrl), manifestUrl).href;
  const pixels = new Uint8Array(await (await fetchOk(pixelsUrl, manifestUrl, fetchFunction)).arrayBuffer());
  return decodeFashionSample(manifest, pixels, manifestUrl);
}

/** The first `count` images of `sample` (views: nothing is copied). Throws `INVALID_OPTION` beyond its size. */
export function firstImages(sample: FashionSample, count: number): FashionSample {
  if (!Number.isInteger(count) || count < 1 || count > sample.count) {
    throw new DynnError(
      'INVALID_OPTION',
      `The sample holds ${sample.count} images; ask for 1 to ${sample.count}, not ${count}.`,
    );
  }
  const size = sample.height * sample.width;
  return {
    ...sample,
    count,
    pixels: sample.pixels.subarray(0, count * size),
    labels: sample.labels.subarray(0, count),
  };
}

/** The sample's images as a `[count, height, width, 1]` float32 tensor in [0, 1]; the caller disposes it. */
export function sampleImages(sample: FashionSample): tf.Tensor4D {
  const values = new Float32Array(sample.pixels.length);
  for (let i = 0; i < values.length; i++) values[i] = sample.pixels[i]! / 255;
  return tf.tensor4d(values, [sample.count, sample.height, sample.width, 1], 'float32');
}
