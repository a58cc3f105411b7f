import { describeEachBackend, expectClose, guardLeaks, inBrowser, isGpuBackend } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { forwardForTraining } from './executor.js';
import { type HostOptimizer, HostTable } from './host-table.js';
import { initTensor } from './initializers.js';
import { lossFunction } from './losses.js';
import { createModel } from './model.js';
import { gatherRows } from './ops/basic/index.js';
import { createRng } from './random.js';
import { createRuntime } from './runtime.js';

const runtime = createRuntime();

/** A copy of every row of `table`, row-major. */
function snapshot(table: HostTable): Float32Array {
  const out = new Float32Array(table.rows * table.dim);
  for (let r = 0; r < table.rows; r++) out.set(table.row(r), r * table.dim);
  return out;
}

/** The error `body` throws (or rejects with). */
async function failure(body: () => unknown): Promise<Error> {
  try {
    await body();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

async function expectDynnError(body: () => unknown, code: string, message: RegExp): Promise<void> {
  const error = await failure(body);
  expect(isDynnError(error, code as never), String(error)).toBe(true);
  expect(error.message).toMatch(message);
}

describeEachBackend('HostTable (host-resident rows)', (backend) => {
  guardLeaks();

  it('starts as initTensor would make it, in one chunk or several', async () => {
    const init = {
      kind: 'concat' as const,
      parts: [
        { size: 3, init: { kind: 'uniform' as const, min: -1, max: 1 } },
        { size: 1, init: { kind: 'ones' as const } },
        { size: 2, init: { kind: 'normal' as const, mean: 0, std: 2 } },
      ],
    };
    const expected = initTensor(init, [10, 6], 'float32', createRng(7));
    const values = await expected.data();
    expected.dispose();
    const whole = new HostTable({ rows: 10, dim: 6, init, seed: 7 });
    // Chunks of 3 rows (72 bytes): 4 chunks, the last with 1 row.
    const chunked = new HostTable({ rows: 10, dim: 6, init, seed: 7, maxChunkBytes: 3 * 6 * 4 + 5 });
    expect([whole.chunkRows, chunked.chunkRows]).toEqual([10, 3]);
    expect(Array.from(snapshot(whole))).toEqual(Array.from(values));
    expect(Array.from(snapshot(chunked))).toEqual(Array.from(values));
    expect(whole.memoryBytes).toBe(10 * 6 * 4);
    expect(chunked.memoryBytes).toBe(10 * 6 * 4);
    const zeros = new HostTable({ rows: 4, dim: 2 });
    expect(Array.from(snapshot(zeros))).toEqual(new Array(8).fill(0));
    const constant = new HostTable({ rows: 2, dim: 2, init: { kind: 'constant', value: 3 } });
    expect(Array.from(snapshot(constant))).toEqual([3, 3, 3, 3]);
  });

  it('reads each distinct row once and rebuilds the batch from them', async () => {
    const table = new HostTable({
      rows: 7,
      dim: 2,
      init: { kind: 'uniform', min: 0, max: 1 },
      maxChunkBytes: 16,
    });
    const ids = [5, 1, 5, 0, 1, 5];
    const rows = table.read(ids);
    expect(Array.from(rows.unique)).toEqual([5, 1, 0]);
    expect(Array.from(rows.inverse)).toEqual([0, 1, 0, 2, 1, 0]);
    expect(rows.values.shape).toEqual([3, 2]);
    expect(rows.values.dtype).toBe('float32');
    const inverse = tf.tensor1d(rows.inverse, 'int32');
    const batch = gatherRows(rows.values, inverse);
    await expectClose(
      batch,
      ids.flatMap((id) => Array.from(table.row(id))),
      { tolerance: 0 },
    );
    tf.dispose([rows.values, inverse, batch]);
    // A trainable read gives a variable; no ids give no rows.
    const trainable = table.read(new Int32Array([2]), { trainable: true });
    expect(trainable.values).toBeInstanceOf(tf.Variable);
    expect(trainable.values.trainable).toBe(true);
    await expectClose(trainable.values, Array.from(table.row(2)), { tolerance: 0 });
    trainable.values.dispose();
    const none = table.read([]);
    expect(none.values.shape).toEqual([0, 2]);
    expect(none.unique).toHaveLength(0);
    none.values.dispose();
  });

  it('names the table and the bad index, and changes nothing on a failed write', async () => {
    const table = new HostTable({ rows: 4, dim: 2, name: 'memory', init: { kind: 'ones' } });
    const before = snapshot(table);
    const range =
      /^HostTable 'memory': index (.+) at position (\d) is not a row id; ids are integers in \[0, 4\)\.$/;
    await expectDynnError(() => table.read([0, 4]), 'INVALID_INPUT', range);
    await expectDynnError(() => table.read([1.5]), 'INVALID_INPUT', /index 1\.5 at position 0/);
    await expectDynnError(() => table.read([0, 1, -1]), 'INVALID_INPUT', /index -1 at position 2/);
    await expectDynnError(
      () => table.row(9),
      'INVALID_INPUT',
      /^HostTable 'memory': row 9 is not a row id; ids are integers in \[0, 4\)\.$/,
    );
    const idsTensor = tf.tensor1d([0], 'int32');
    await expectDynnError(
      () => table.read(idsTensor as unknown as number[]),
      'INVALID_INPUT',
      /indices is a tf\.Tensor; pass ids on the host/,
    );
    idsTensor.dispose();

    const values = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    await expectDynnError(
      () => table.write([1, 1], values),
      'INVALID_INPUT',
      /row 1 appears twice in unique \(positions 0 and 1\)/,
    );
    await expectDynnError(
      () => table.write([1], values),
      'INVALID_INPUT',
      /values has shape \[2, 2\]; 1 rows of dim 2 need \[1, 2\]/,
    );
    await expectDynnError(() => table.write([0, 7], values), 'INVALID_INPUT', /index 7 at position 1/);
    await expectDynnError(
      () => table.write([0, 1], new Float32Array([1, 2, Number.NaN, 4])),
      'INVALID_INPUT',
      /values holds NaN for row 1 \(position 1, element 0\); nothing was changed\./,
    );
    await expectDynnError(
      () => table.write([0], new Float32Array(3)),
      'INVALID_INPUT',
      /3 floats; \[1, 2\] needs 2/,
    );
    const ints = tf.tensor2d([[1, 2]], [1, 2], 'int32');
    await expectDynnError(
      () => table.write([0], ints),
      'INVALID_INPUT',
      /values is int32; the table holds float32/,
    );
    ints.dispose();
    const bad: HostOptimizer[] = [
      { kind: 'sgd', learningRate: 0 },
      { kind: 'adagrad', learningRate: 0.1, initialAccumulatorValue: 0, epsilon: 0 },
      { kind: 'adam', learningRate: 0.1 } as unknown as HostOptimizer,
    ];
    for (const optimizer of bad) {
      await expectDynnError(
        () => table.applyGradients([0, 1], values, optimizer),
        'INVALID_OPTION',
        /^HostTable 'memory': /,
      );
    }
    expect(Array.from(snapshot(table))).toEqual(Array.from(before));
    // The caller's tensor is read, not disposed.
    await table.write([3, 0], values);
    expect(values.isDisposed).toBe(false);
    expect(Array.from(table.row(3))).toEqual([1, 2]);
    expect(Array.from(table.row(0))).toEqual([3, 4]);
    values.dispose();
    await expectDynnError(() => table.write([0, 1], values), 'INVALID_INPUT', /values was already disposed/);
    await expectDynnError(
      () => new HostTable({ rows: 0, dim: 2 }),
      'INVALID_OPTION',
      /rows must be an integer in \[1, 2\^31 - 1\], got 0/,
    );
    await expectDynnError(
      () => new HostTable({ rows: 2, dim: 8, maxChunkBytes: 16 }),
      'INVALID_OPTION',
      /at least one row \(32 bytes\)/,
    );
  });

  it('updates a large table batch by batch with bounded backend memory', async () => {
    // 10^6 rows in Node (64 MB on the host); a smaller table in the browser.
    const rows = inBrowser() ? 50_000 : 1_000_000;
    const dim = 16;
    const batches = inBrowser() ? 40 : 200;
    const batchSize = 512;
    const table = new HostTable({
      rows,
      dim,
      init: { kind: 'normal', mean: 0, std: 1 },
      seed: 3,
      name: 'memory',
    });
    expect(table.memoryBytes).toBe(rows * dim * 4);
    const reference = snapshot(table);
    const touched = new Uint8Array(rows);
    const rng = createRng(11);
    const start = tf.memory();
    let peak = 0;
    const f = Math.fround;
    for (let b = 0; b < batches; b++) {
      const ids = Int32Array.from({ length: batchSize }, () => rng.int(rows));
      const { values, unique } = table.read(ids);
      // A message per distinct row, made on the host; the update blends it into the memory (TGN).
      const messages = new Float32Array(unique.length * dim);
      for (let k = 0; k < unique.length; k++)
        for (let j = 0; j < dim; j++) messages[k * dim + j] = ((unique[k]! + b + j) % 7) - 3;
      const message = tf.tensor2d(messages, [unique.length, dim]);
      const updated = tf.tidy(() => tf.add(tf.mul(values, 0.9), tf.mul(message, 0.1)));
      peak = Math.max(peak, tf.memory().numBytes - start.numBytes);
      await table.write(unique, updated);
      tf.dispose([values, message, updated]);
      expect(tf.memory().numBytes).toBe(start.numBytes);
      expect(tf.memory().numTensors).toBe(start.numTensors);
      for (let k = 0; k < unique.length; k++) {
        const id = unique[k]!;
        touched[id] = 1;
        for (let j = 0; j < dim; j++) {
          const i = id * dim + j;
          reference[i] = f(f(reference[i]! * f(0.9)) + f(messages[k * dim + j]! * f(0.1)));
        }
      }
    }
    // Three [unique, 16] float32 tensors (rows, messages, update) at most: 3 x 512 x 64 bytes.
    expect(peak).toBeLessThanOrEqual(3 * batchSize * dim * 4);
    expect(peak).toBeGreaterThan(0);
    const actual = snapshot(table);
    // Touched rows equal the typed-array reference (exactly on cpu and wasm); the others are unchanged.
    const tolerance = isGpuBackend(backend) ? 1e-5 : 0;
    let touchedRows = 0;
    for (let r = 0; r < rows; r++) {
      if (touched[r]) touchedRows++;
      for (let j = 0; j < dim; j++) {
        const i = r * dim + j;
        if (touched[r] ? Math.abs(actual[i]! - reference[i]!) > tolerance : actual[i] !== reference[i]) {
          throw new Error(
            `row ${r} element ${j}: ${actual[i]}, expected ${reference[i]} (touched: ${touched[r]})`,
          );
        }
      }
    }
    // About the expected number of distinct rows among the ids drawn, far fewer than the table's.
    const expectedTouched = rows * (1 - (1 - 1 / rows) ** (batches * batchSize));
    expect(Math.abs(touchedRows - expectedTouched)).toBeLessThan(0.03 * expectedTouched);
    expect(touchedRows).toBeLessThan(rows / 2);
  });

  for (const optimizer of [
    { kind: 'sgd', learningRate: 0.3 },
    { kind: 'adagrad', learningRate: 0.3, initialAccumulatorValue: 0.1 },
  ] as const) {
    it(`applies ${optimizer.kind} to the touched rows as the dense tfjs optimizer does`, async () => {
      const rows = 12;
      const dim = 3;
      const init = { kind: 'uniform' as const, min: -1, max: 1 };
      const table = new HostTable({ rows, dim, init, seed: 5, maxChunkBytes: 5 * dim * 4 });
      const start = initTensor(init, [rows, dim], 'float32', createRng(5));
      const dense = tf.variable(start);
      start.dispose();
      const denseOptimizer: tf.Optimizer =
        optimizer.kind === 'sgd'
          ? tf.train.sgd(optimizer.learningRate)
          : tf.train.adagrad(optimizer.learningRate, optimizer.initialAccumulatorValue);
      const target = tf.tensor1d([0.5, -1, 2]);
      /** A loss of the rows a batch gathers: repeated ids add up their gradients. */
      const loss = (batch: tf.Tensor) => tf.sum(tf.square(tf.sub(tf.tanh(batch), target))) as tf.Scalar;
      const rng = createRng(2);
      for (let step = 0; step < 6; step++) {
        // Rows 0..7 only, with repeats: rows 8..11 never get a gradient.
        const ids = Int32Array.from({ length: 6 }, () => rng.int(8));
        const read = table.read(ids, { trainable: true });
        const inverse = tf.tensor1d(read.inverse, 'int32');
        const sparse = tf.variableGrads(() => loss(gatherRows(read.values, inverse)), [read.values]);
        await table.applyGradients(read.unique, sparse.grads[read.values.name]!, optimizer);
        const idTensor = tf.tensor1d(ids, 'int32');
        const full = tf.variableGrads(() => loss(gatherRows(dense, idTensor)), [dense]);
        denseOptimizer.applyGradients(full.grads);
        await expectClose(sparse.value, full.value, { label: `loss at step ${step}` });
        tf.dispose([read.values, inverse, idTensor, sparse.value, full.value]);
        tf.dispose([...Object.values(sparse.grads), ...Object.values(full.grads)]);
      }
      await expectClose(snapshot(table), dense, { label: optimizer.kind });
      const initial = initTensor(init, [rows, dim], 'float32', createRng(5));
      const untouched = Array.from((await initial.data()).slice(8 * dim));
      initial.dispose();
      expect(Array.from(snapshot(table).slice(8 * dim))).toEqual(untouched);
      expect(table.memoryBytes).toBe(rows * dim * 4 * (optimizer.kind === 'adagrad' ? 2 : 1));
      tf.dispose([dense, target]);
      denseOptimizer.dispose();
    });
  }

  it('keeps one Adagrad accumulator per row with rowwise', async () => {
    const table = new HostTable({ rows: 5, dim: 2, init: { kind: 'ones' } });
    const optimizer: HostOptimizer = {
      kind: 'adagrad',
      learningRate: 0.5,
      rowwise: true,
      initialAccumulatorValue: 1,
    };
    const grads = tf.tensor2d([
      [3, 1],
      [-2, 2],
    ]);
    await table.applyGradients([4, 1], grads, optimizer);
    await table.applyGradients([4], new Float32Array([1, -1]), optimizer);
    // Row 4: acc = 1 + (9 + 1) / 2 = 6, then 6 + 1 = 7. Row 1: acc = 1 + 4 = 5.
    const eps = 1e-7;
    const f = Math.fround;
    const row4 = [1, 1].map((v, j) =>
      f(f(v - (0.5 * [3, 1][j]!) / Math.sqrt(6 + eps)) - (0.5 * [1, -1][j]!) / Math.sqrt(7 + eps)),
    );
    const row1 = [1, 1].map((v, j) => v - (0.5 * [-2, 2][j]!) / Math.sqrt(5 + eps));
    await expectClose(table.row(4), row4, { tolerance: 1e-6 });
    await expectClose(table.row(1), row1, { tolerance: 1e-6 });
    expect(Array.from(table.row(0))).toEqual([1, 1]);
    expect(table.memoryBytes).toBe(5 * 2 * 4 + 5 * 4);
    await expectDynnError(
      () => table.applyGradients([0], new Float32Array(2), { kind: 'adagrad', learningRate: 0.5 }),
      'INVALID_OPTION',
      /keeps row-wise Adagrad accumulators; this step asks for element-wise ones/,
    );
    grads.dispose();
  });

  it('trains embedding rows from the host with a model on top: loss falls, untouched rows stay', async () => {
    const rows = 200;
    const dim = 8;
    const classes = 4;
    const table = new HostTable({ rows, dim, init: { kind: 'uniform', min: -0.05, max: 0.05 }, seed: 1 });
    const initial = snapshot(table);
    const b = new GraphBuilder(runtime);
    const x = b.input('x', 'float32', ['batch', dim]);
    const model = createModel(
      runtime,
      b.build({ logits: b.add('core.Dense', x, { units: classes }, { name: 'head' }) }),
      {
        seed: 2,
      },
    );
    const kernelBefore = Array.from(await model.params.get('head/kernel')!.data());
    const params = [...model.params.values()];
    const optimizer = tf.train.sgd(0.5);
    const loss = lossFunction('sparseCategoricalCrossentropy');
    const rng = createRng(4);
    const losses: number[] = [];
    for (let step = 0; step < 60; step++) {
      // Ids 0..99 only, labelled id % 4; rows 100..199 are never read.
      const ids = Int32Array.from({ length: 32 }, () => rng.int(100));
      const read = table.read(ids, { trainable: true });
      const inverse = tf.tensor1d(read.inverse, 'int32');
      const labels = tf.tensor1d(
        ids.map((id) => id % classes),
        'int32',
      );
      const { value, grads } = tf.variableGrads(() => {
        // inputGradients: the graph's ops must pass the gradient on to their inputs (the rows).
        const { outputs } = forwardForTraining(
          model,
          new Map([['x', gatherRows(read.values, inverse)]]),
          {},
          step,
          {
            inputGradients: true,
          },
        );
        return loss(outputs.logits!, labels);
      }, [read.values, ...params]);
      const rowGrad = grads[read.values.name]!;
      await table.applyGradients(read.unique, rowGrad, { kind: 'adagrad', learningRate: 0.5 });
      optimizer.applyGradients(Object.fromEntries(params.map((p) => [p.name, grads[p.name]!])));
      losses.push((await value.data())[0]!);
      tf.dispose([read.values, inverse, labels, value, ...Object.values(grads)]);
    }
    const first = losses.slice(0, 5).reduce((a, v) => a + v, 0) / 5;
    const last = losses.slice(-5).reduce((a, v) => a + v, 0) / 5;
    expect(last).toBeLessThan(first / 3);
    const after = snapshot(table);
    expect(Array.from(after.slice(100 * dim))).toEqual(Array.from(initial.slice(100 * dim)));
    expect(Array.from(after.slice(0, 100 * dim))).not.toEqual(Array.from(initial.slice(0, 100 * dim)));
    expect(Array.from(await model.params.get('head/kernel')!.data())).not.toEqual(kernelBefore);
    optimizer.dispose();
    model.dispose();
  });
});
