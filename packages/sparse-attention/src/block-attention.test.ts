import {
  describeEachBackend,
  expectClose,
  expectNoLeaks,
  isGpuBackend,
  seededNormal,
  seededUniform,
  toleranceFor,
} from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import type { Pattern } from './pattern.js';
import type { ScoreMod } from './score-mods.js';
import type { SparseAttentionAttrs } from './sparse-attention-op.js';
import {
  denseReference,
  opAttrs,
  opWithGradients,
  type RowData,
  referenceGradients,
  referenceKeep,
  runOpAlone,
  seededParams,
  shapeUniformsOnWebgl,
  valuesOnCpu,
} from './test-models.js';

const D = 6;
const BATCH = 2;

/** One comparison against dense masked attention. */
interface Case {
  name: string;
  pattern: Pattern;
  numHeads?: number;
  numKvHeads?: number;
  scoreMods?: ScoreMod[];
  /** Per batch row: document ids / prefix lengths the pattern reads. */
  rows?: RowData[];
  /**
   * Whether row 1 is padded (default true; row 0 never is). Without padding a static pattern's
   * plan is shared by every row, a path of its own.
   */
  padded?: boolean;
  /** Whether GPU backends check the gradients too (cpu and wasm always do). */
  gradientsOnGpu?: boolean;
}

// Not a multiple of the block size: the last key block is cut short.
const N = 14;
const B = 4;
const documents = (n: number): RowData[] => [
  { documents: Array.from({ length: n }, (_, i) => (i < 5 ? 0 : i < 9 ? 1 : 2)) },
  { documents: Array.from({ length: n }, (_, i) => i % 3) },
];

const CASES: Case[] = [
  { name: 'full', pattern: { type: 'full' } },
  {
    name: 'full, no padding (one plan for every row)',
    pattern: { type: 'full' },
    padded: false,
    gradientsOnGpu: true,
  },
  { name: 'causal', pattern: { type: 'causal' }, gradientsOnGpu: true },
  { name: 'window', pattern: { type: 'window', before: 3, after: 2 } },
  { name: 'dilated', pattern: { type: 'dilated', before: 6, after: 4, dilation: 2 } },
  { name: 'global', pattern: { type: 'global', tokens: [0, 7, 40] } },
  { name: 'random blocks', pattern: { type: 'random', blocks: 2, seed: 3 } },
  { name: 'random blocks, no padding', pattern: { type: 'random', blocks: 2, seed: 3 }, padded: false },
  { name: 'fixed (short last window)', pattern: { type: 'fixed', localBlocks: 3, globalBlocks: 1 } },
  {
    name: 'bigbird',
    pattern: { type: 'bigbird', windowBlocks: 3, globalBlocks: 1, randomBlocks: 1, seed: 7 },
  },
  { name: 'longformer', pattern: { type: 'longformer', windowBlocks: 3, globalBlocks: [2] } },
  { name: 'variable', pattern: { type: 'variable', localWindows: [1, 2], globalBlocks: [0] } },
  { name: 'document', pattern: { type: 'document' }, rows: documents(N) },
  { name: 'prefix-lm (fixed prefix)', pattern: { type: 'prefix-lm', prefix: 5 } },
  {
    name: 'prefix-lm (per-row prefix)',
    pattern: { type: 'prefix-lm' },
    rows: [{ prefix: 3 }, { prefix: 9 }],
  },
  {
    name: 'and(causal, window)',
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 5, after: 0 }] },
  },
  {
    name: 'and(causal, window), no padding',
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 5, after: 0 }] },
    padded: false,
  },
  {
    name: 'or(window, global)',
    pattern: {
      type: 'or',
      of: [
        { type: 'window', before: 1, after: 1 },
        { type: 'global', tokens: [0] },
      ],
    },
  },
  {
    name: 'and(causal, document)',
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'document' }] },
    rows: documents(N),
  },
  {
    name: 'grouped-query attention',
    numHeads: 4,
    numKvHeads: 2,
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 4, after: 0 }] },
    gradientsOnGpu: true,
  },
  {
    name: 'grouped-query attention, no padding',
    numHeads: 4,
    numKvHeads: 2,
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 4, after: 0 }] },
    padded: false,
  },
  { name: 'alibi', numHeads: 3, pattern: { type: 'causal' }, scoreMods: [{ type: 'alibi' }] },
  {
    name: 'relative bias (bidirectional)',
    pattern: { type: 'window', before: 6, after: 6 },
    scoreMods: [{ type: 'relative-bias', buckets: 8, maxDistance: 10, bidirectional: true }],
  },
  {
    name: 'relative bias (causal), grouped',
    numHeads: 4,
    numKvHeads: 1,
    pattern: { type: 'causal' },
    scoreMods: [{ type: 'relative-bias', buckets: 6, maxDistance: 12, bidirectional: false }],
    gradientsOnGpu: true,
  },
  {
    name: 'softcap then alibi',
    pattern: { type: 'full' },
    scoreMods: [{ type: 'softcap', cap: 0.5 }, { type: 'alibi' }],
    gradientsOnGpu: true,
  },
];

/** Row 0 has no padding; row 1 a padded position inside and three at the end. */
function paddingRows(n: number): number[][] {
  return [new Array(n).fill(1), Array.from({ length: n }, (_, i) => (i === 2 || i >= n - 3 ? 0 : 1))];
}

/** A case's tensors, made on the active backend from seeds (the same values on every backend). */
function caseTensors(c: Case) {
  const padding = c.padded === false ? undefined : paddingRows(N);
  const rows = Array.from({ length: BATCH }, (_, r) => ({
    ...(c.rows?.[r] ?? {}),
    ...(padding ? { padding: padding[r]! } : {}),
  }));
  const extraInputs: SparseAttentionAttrs['extraInputs'] = [];
  const x = seededNormal([BATCH, N, D], { seed: 11 });
  const inputs = [x];
  if (padding) {
    extraInputs.push('padding');
    inputs.push(tf.tensor2d(padding.flat(), [BATCH, N]));
  }
  if (c.rows?.[0]?.documents) {
    extraInputs.push('documents');
    inputs.push(
      tf.tensor2d(
        rows.flatMap((r) => r.documents!),
        [BATCH, N],
        'int32',
      ),
    );
  }
  if (c.rows?.[0]?.prefix !== undefined) {
    extraInputs.push('prefix');
    inputs.push(
      tf.tensor1d(
        rows.map((r) => r.prefix!),
        'int32',
      ),
    );
  }
  const numHeads = c.numHeads ?? 2;
  const attrs = opAttrs({
    numHeads,
    numKvHeads: c.numKvHeads ?? null,
    keyDim: 4,
    valueDim: 3,
    blockSize: B,
    pattern: c.pattern,
    scoreMods: c.scoreMods ?? [],
    extraInputs,
  });
  const params = seededParams(attrs, inputs);
  const weights = seededUniform([BATCH, N, D], { seed: 12, min: -1, max: 1 });
  const reference = {
    numHeads,
    numKvHeads: c.numKvHeads ?? numHeads,
    keyDim: 4,
    valueDim: 3,
    scoreMods: c.scoreMods ?? [],
    keep: rows.map((row) => referenceKeep(c.pattern, N, B, row)),
    ...(padding ? { padding } : {}),
  };
  return { x, inputs, attrs, params, weights, reference };
}

/**
 * Dense masked attention's output, then its gradients with respect to `x` and every parameter,
 * per case: computed once on cpu, what every backend is held to.
 */
const references = new Map<string, Promise<Float32Array[]>>();
function referenceValues(c: Case): Promise<Float32Array[]> {
  let values = references.get(c.name);
  if (values === undefined) {
    values = valuesOnCpu(() => {
      const { x, params, weights, reference } = caseTensors(c);
      return [denseReference(x, params, reference), ...referenceGradients(x, params, reference, weights)];
    });
    references.set(c.name, values);
  }
  return values;
}

describeEachBackend('block attention against dense masked attention', (backend) => {
  shapeUniformsOnWebgl(backend);
  for (const c of CASES) {
    // A GPU compiles its own shaders for the backward pass; a few cases cover each op of it.
    const gradients = !isGpuBackend(backend) || c.gradientsOnGpu === true;
    it(`${c.name}: outputs${gradients ? ' and gradients' : ''}`, async () => {
      const expected = await referenceValues(c);
      const { inputs, attrs, params, weights } = caseTensors(c);
      await expectNoLeaks(async () => {
        const got = gradients
          ? await opWithGradients(attrs, inputs, params, weights)
          : { ...(await runOpAlone(attrs, inputs, params)), grads: [] };
        const tensors = [got.output, ...got.grads];
        const values = await Promise.all(tensors.map((t) => t.data()));
        const labels = ['output', ...['x', ...Object.keys(params)].map((name) => `gradient of ${name}`)];
        const tolerance = toleranceFor(backend);
        for (const [i, value] of values.entries()) {
          await expectClose(value, expected[i]!, { tolerance, label: labels[i] });
        }
        tf.dispose(tensors);
      });
      tf.dispose([...inputs, weights, ...Object.values(params)]);
    });
  }
});

it('keeps every query of a padded row that has a key, and zeroes the padded ones', () => {
  const keep = referenceKeep({ type: 'causal' }, 4, 2, { padding: [1, 0, 1, 1] });
  expect(Array.from(keep)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1]);
});
