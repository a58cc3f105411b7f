import { isDynnError, useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDigits } from './digits.js';
import { isNodeRuntime } from './runtime.js';

// The vitest browser server serves the repository root, so the package's data folder is here.
const baseUrl = '/packages/datasets/data/';

describe('loadDigits in the browser', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('runs outside Node, so it fetches, hashes with crypto.subtle and gunzips with DecompressionStream', () => {
    expect(isNodeRuntime()).toBe(false);
  });

  it('loads the 1,797 digits from baseUrl', async () => {
    const before = tf.memory().numTensors;
    const digits = await loadDigits({ baseUrl });
    expect(digits.count).toBe(1_797);
    expect(Array.from(digits.features.subarray(0, 8))).toEqual([0, 0, 5, 13, 9, 1, 0, 0]);
    const { features, labels } = digits.toTensors();
    expect(features.shape).toEqual([1_797, 64]);
    expect(Array.from((await labels.data()).subarray(0, 3))).toEqual([0, 1, 2]);
    tf.dispose([features, labels]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('asks for baseUrl when it has none, naming the file', async () => {
    const error = await loadDigits().catch((caught: unknown) => caught);
    expect(isDynnError(error, 'DATA_MISSING')).toBe(true);
    expect((error as Error).message).toMatch(/'digits\.csv\.gz'.*Pass baseUrl/);
  });

  it('reports a file the server does not have as DATA_MISSING, naming its URL', async () => {
    const error = await loadDigits({ baseUrl: '/packages/datasets/no-such-folder/' }).catch(
      (caught: unknown) => caught,
    );
    expect(isDynnError(error)).toBe(true);
    expect((error as Error).message).toContain('/packages/datasets/no-such-folder/digits.csv.gz');
  });
});
