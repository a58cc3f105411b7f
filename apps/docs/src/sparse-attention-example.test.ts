import { createModel, isDynnError } from '@dynn/core';
import { describeEachBackend, guardLeaks } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  attendedPositions,
  CONTINUATION,
  encodeText,
  fetchModelInfo,
  MAX_CHARS,
  readModelInfo,
  runSparseAttentionExample,
  shapesAsUniformsOnWebgl,
  sparseAttentionAssets,
  sparseAttentionRuntime,
  topNext,
} from './sparse-attention-example.js';
import { sparseCharGraph } from './sparse-attention-model.js';

const VOCAB = [...'abcdefghij .'];
const info = {
  vocab: VOCAB,
  context: 128,
  steps: 10,
  batchSize: 4,
  trainSeconds: 3,
  backend: 'wasm',
  params: 1000,
  bitsPerChar: 3.1,
};

describe('the sparse-attention example, without a model', () => {
  it('reads the training file and refuses a malformed one, naming the field', () => {
    expect(readModelInfo(JSON.parse(JSON.stringify(info)), 'training.json')).toEqual(info);
    const cases: [unknown, RegExp][] = [
      [null, /not a JSON object/],
      [{ ...info, vocab: ['a', 'a'] }, /'vocab'/],
      [{ ...info, vocab: ['ab'] }, /'vocab'/],
      [{ ...info, context: 0 }, /'context'/],
      [{ ...info, bitsPerChar: -1 }, /'bitsPerChar'/],
      [{ ...info, backend: 3 }, /'backend'/],
    ];
    for (const [json, pattern] of cases) {
      let caught: unknown;
      try {
        readModelInfo(json, 'training.json');
      } catch (error) {
        caught = error;
      }
      expect(isDynnError(caught, 'DATA_CORRUPT'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(pattern);
      expect((caught as Error).message).toMatch(/^training\.json: .*train-sparse-attention-model\.ts/);
    }
  });

  it('fetches the training file and reports a missing one', async () => {
    const ok = (async () => new Response(JSON.stringify(info))) as unknown as typeof fetch;
    expect((await fetchModelInfo('https://example.test/t.json', ok)).vocab).toEqual(VOCAB);
    const missing = (async () => new Response('', { status: 404 })) as unknown as typeof fetch;
    await expect(fetchModelInfo('https://example.test/t.json', missing)).rejects.toThrow(/t\.json.*HTTP 404/);
  });

  it('places its files under the site root', () => {
    expect(sparseAttentionAssets('https://example.test/dynn/')).toEqual({
      model: 'https://example.test/dynn/models/austen-sparse-attention/model.json',
      info: 'https://example.test/dynn/models/austen-sparse-attention/training.json',
    });
  });

  it('encodes what the model knows, leaves out the rest once each, and cuts long text', () => {
    const encoded = encodeText(VOCAB, 'a «b» c«');
    expect(encoded).toEqual({ text: 'a b c', ids: [0, 10, 1, 10, 2], unknown: ['«', '»'], cut: false });
    const long = encodeText(VOCAB, 'ab'.repeat(MAX_CHARS));
    expect([long.ids.length, long.cut]).toEqual([MAX_CHARS, true]);
  });
});

describeEachBackend('the sparse-attention example on an untrained model', (backend) => {
  guardLeaks();
  afterEach(() => {
    if (backend === 'webgl') tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', false);
  });

  it('shows what each head attends to, the next characters, a session continuation and the FLOPs', async () => {
    shapesAsUniformsOnWebgl();
    const runtime = sparseAttentionRuntime();
    const model = createModel(runtime, sparseCharGraph(runtime, VOCAB.length), { seed: 3 });
    const length = 300;
    const ids = Array.from({ length }, (_, i) => (i * 7 + Math.floor(i / 5)) % VOCAB.length);
    try {
      const result = await runSparseAttentionExample(model, VOCAB, ids);
      expect(result.backend).toBe(backend);
      expect(result.text).toHaveLength(length);
      expect(result.layers.map((l) => l.name)).toEqual(['block1/attention', 'block2/attention']);
      for (const layer of result.layers) {
        // The routing read from the session is the plan the layer made in the timed run.
        expect(layer.routingAgrees, layer.name).toBe(true);
        expect([layer.numHeads, layer.patternHeads]).toEqual([4, 2]);
        // A window head: the position and the 31 before it.
        expect(attendedPositions(layer, 0, 100, length)).toEqual(
          Array.from({ length: 32 }, (_, k) => 69 + k),
        );
        expect(attendedPositions(layer, 1, 3, length)).toEqual([0, 1, 2, 3]);
        // A routing head: itself, earlier positions of its own cluster, at most two windows of 16.
        for (const head of [2, 3]) {
          const clusters = layer.clusters[head - 2]!;
          for (const position of [0, 57, 200, length - 1]) {
            const keys = attendedPositions(layer, head, position, length);
            expect(keys.at(-1)).toBe(position);
            expect(keys.length).toBeLessThanOrEqual(32);
            for (const key of keys) expect(clusters[key]).toBe(clusters[position]);
          }
        }
        expect(layer.keptTiles).toBeLessThan(layer.denseTiles);
        expect(layer.routingPairs).toBeGreaterThan(0);
      }
      // Every position's next-character distribution sums to 1.
      for (const position of [0, length - 1]) {
        const top = topNext(result, position, VOCAB.length);
        expect(top.reduce((sum, t) => sum + t.probability, 0)).toBeCloseTo(1, 4);
        expect(top[0]!.probability).toBeGreaterThanOrEqual(top[1]!.probability);
      }
      expect(result.continuation).toHaveLength(CONTINUATION);
      // At 300 characters, the windows and clusters keep a small share of dense attention's pairs.
      expect(result.attentionFlops).toBeGreaterThan(0);
      expect(result.attentionFlops).toBeLessThan(0.6 * result.denseAttentionFlops);
      expect(result.report.nodes.filter((n) => n.op === 'sparse-attention.SparseAttention')).toHaveLength(2);
    } finally {
      model.dispose();
    }
  });
});
