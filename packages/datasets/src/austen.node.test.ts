import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CharCorpus, loadAusten } from './austen.js';

describe('loadAusten', () => {
  let austen: CharCorpus;
  beforeAll(async () => {
    await useBackend('cpu');
    austen = await loadAusten();
  });

  it('has 4,025,032 characters over 81 distinct symbols, as byte ids', () => {
    expect(austen.text).toHaveLength(4_025_032);
    expect(austen.ids).toHaveLength(4_025_032);
    expect(austen.ids).toBeInstanceOf(Uint8Array);
    expect(austen.vocab).toHaveLength(81);
    expect(austen.vocab[0]).toBe('\n');
    expect(austen.vocab[80]).toBe('£');
  });

  it('decodes its ids back to the text, and encodes new text', () => {
    expect(austen.text.startsWith('EMMA\n\nBy Jane Austen')).toBe(true);
    expect(austen.decode(austen.ids)).toBe(austen.text);
    const ids = austen.encode('Emma Woodhouse');
    expect(austen.decode(ids)).toBe('Emma Woodhouse');
    expect(Array.from(ids.subarray(0, 2))).toEqual([austen.vocab.indexOf('E'), austen.vocab.indexOf('m')]);
  });

  it('gives the ids as an int32 tensor', async () => {
    const before = tf.memory().numTensors;
    const { ids } = austen.toTensors();
    expect(ids.shape).toEqual([4_025_032]);
    expect(ids.dtype).toBe('int32');
    expect(austen.decode((await ids.data()).subarray(0, 4))).toBe('EMMA');
    ids.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
