// Node embeddings of a real temporal graph, trained from a host table: every node has a "sender"
// and a "receiver" row in one `HostTable` kept in host memory. Each batch of edges reads only the
// rows it touches (each once) to the backend, takes their gradient there, and applies it on the
// host with a sparse Adagrad step; the rows never touched stay as they were. The same code serves
// tables far larger than a GPU's memory: the backend only ever holds the rows of one batch.
//
// The task: link prediction on the UC Irvine messages graph (SNAP CollegeMsg, 1,899 students,
// 59,835 messages). Trained on the first 80% of messages in time, scored on the later ones whose
// two students both appear in training, by MRR against 100 sampled non-receivers (the EvolveGCN
// papers rank against all nodes, so their numbers are not comparable). A popularity baseline
// (receivers ranked by their messages received in training) and chance are printed beside it.
// CI runs `main()` (examples/core.node.test.ts).
import { type BackendName, createRng, gatherRows, HostTable, shuffledIndices, useBackend } from '@dynn/core';
import { loadUciMessages } from '@dynn/datasets';
import * as tf from '@tensorflow/tfjs-core';

/** What {@link main} measured. */
export interface HostTableResult {
  /** Mean training loss of each epoch. */
  losses: number[];
  /** MRR of the trained embeddings on the test messages (100 sampled negatives each). */
  mrr: number;
  /** MRR of ranking receivers by their messages received in training, on the same negatives. */
  popularityMrr: number;
  /** MRR of a random ranking: the mean of 1/rank over ranks 1..101. */
  chanceMrr: number;
  /** Test messages scored (both students seen in training). */
  testEdges: number;
  /** Host bytes of the table (its rows and Adagrad accumulators). */
  tableBytes: number;
  /** Mean bytes of rows uploaded to the backend per batch (distinct rows x dim x 4). */
  rowBytesPerBatch: number;
  /** Most backend bytes alive above the starting point during a step (rows, gradients, intermediates). */
  peakBackendBytes: number;
}

const DIM = 32;
const NEGATIVES = 5;
const BATCH = 512;
const EPOCHS = 6;
const TEST_NEGATIVES = 100;

/** Trains sender/receiver embeddings of UCI messages from a host table and reports MRR and memory. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<HostTableResult> {
  await useBackend(backend);
  const graph = await loadUciMessages();
  const n = graph.numNodes;
  const split = Math.floor(graph.numEdges * 0.8); // edges are in time order
  const trainSrc = graph.src.subarray(0, split);
  const trainDst = graph.dst.subarray(0, split);

  // #region table
  // Rows 0..n-1: each student as a sender; rows n..2n-1: as a receiver.
  const table = new HostTable({
    rows: 2 * n,
    dim: DIM,
    init: { kind: 'normal', mean: 0, std: 0.1 },
    seed: 1,
    name: 'uci-embeddings',
  });
  const adagrad = { kind: 'adagrad', learningRate: 0.2 } as const;
  // #endregion table

  const rng = createRng(2);
  const losses: number[] = [];
  const start = tf.memory().numBytes;
  let peak = 0;
  let rowBytes = 0;
  let batches = 0;
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const order = shuffledIndices(split, rng);
    let lossSum = 0;
    for (let from = 0; from < split; from += BATCH) {
      const b = Math.min(BATCH, split - from);
      // #region step
      // Row ids of the batch: senders, their receivers, then NEGATIVES random receivers per message.
      const ids = new Int32Array(b * (2 + NEGATIVES));
      for (let k = 0; k < b; k++) {
        const edge = order[from + k]!;
        ids[k] = trainSrc[edge]!;
        ids[b + k] = n + trainDst[edge]!;
      }
      for (let k = 2 * b; k < ids.length; k++) ids[k] = n + rng.int(n);
      const rows = table.read(ids, { trainable: true }); // each distinct row once
      const inverse = tf.tensor1d(rows.inverse, 'int32');
      const { value, grads } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            // gatherRows rather than tf.gather: its gradient works on wasm too.
            const batch = gatherRows(rows.values, inverse);
            const src = tf.slice(batch, [0, 0], [b, DIM]);
            const dst = tf.slice(batch, [b, 0], [b, DIM]);
            const neg = tf.reshape(tf.slice(batch, [2 * b, 0], [b * NEGATIVES, DIM]), [b, NEGATIVES, DIM]);
            const positive = tf.sum(tf.mul(src, dst), 1);
            const negative = tf.sum(tf.mul(tf.expandDims(src, 1), neg), 2);
            // Logistic loss summed over the batch (each message's gradient at full size, as sparse
            // Adagrad wants): -log sigmoid(positive) - sum log sigmoid(-negative).
            return tf.add(tf.sum(tf.softplus(tf.neg(positive))), tf.sum(tf.softplus(negative)));
          }) as tf.Scalar,
        [rows.values],
      );
      peak = Math.max(peak, tf.memory().numBytes - start);
      await table.applyGradients(rows.unique, grads[rows.values.name]!, adagrad);
      lossSum += (await value.data())[0]!;
      rowBytes += rows.unique.length * DIM * 4;
      batches++;
      tf.dispose([rows.values, inverse, value, ...Object.values(grads)]);
      // #endregion step
    }
    losses.push(lossSum / split);
    log(`epoch ${epoch + 1}: loss ${losses.at(-1)!.toFixed(4)}`);
  }

  // Scores come straight from the host rows: no backend needed to rank.
  const seen = new Uint8Array(n);
  const received = new Float64Array(n);
  for (let e = 0; e < split; e++) {
    seen[trainSrc[e]!] = 1;
    seen[trainDst[e]!] = 1;
    received[trainDst[e]!]!++;
  }
  const candidates = Int32Array.from(Array.from({ length: n }, (_, v) => v).filter((v) => seen[v]));
  const score = (u: number, v: number) => {
    const a = table.row(u);
    const c = table.row(n + v);
    let dot = 0;
    for (let j = 0; j < DIM; j++) dot += a[j]! * c[j]!;
    return dot;
  };
  const reciprocal = (positive: number, negatives: number[]) => {
    let above = 0;
    for (const s of negatives) above += s > positive ? 1 : s === positive ? 0.5 : 0;
    return 1 / (1 + above);
  };
  const evalRng = createRng(3);
  let mrr = 0;
  let popularityMrr = 0;
  let testEdges = 0;
  for (let e = split; e < graph.numEdges; e++) {
    const u = graph.src[e]!;
    const v = graph.dst[e]!;
    if (!seen[u] || !seen[v]) continue;
    const negatives: number[] = [];
    while (negatives.length < TEST_NEGATIVES) {
      const w = candidates[evalRng.int(candidates.length)]!;
      if (w !== v) negatives.push(w);
    }
    mrr += reciprocal(
      score(u, v),
      negatives.map((w) => score(u, w)),
    );
    popularityMrr += reciprocal(
      received[v]!,
      negatives.map((w) => received[w]!),
    );
    testEdges++;
  }
  mrr /= testEdges;
  popularityMrr /= testEdges;
  let chanceMrr = 0;
  for (let r = 1; r <= TEST_NEGATIVES + 1; r++) chanceMrr += 1 / r / (TEST_NEGATIVES + 1);

  const result: HostTableResult = {
    losses,
    mrr,
    popularityMrr,
    chanceMrr,
    testEdges,
    tableBytes: table.memoryBytes,
    rowBytesPerBatch: rowBytes / batches,
    peakBackendBytes: peak,
  };
  log(
    `test MRR over ${testEdges} later messages (${TEST_NEGATIVES} negatives each): ` +
      `embeddings ${mrr.toFixed(3)}, popularity ${popularityMrr.toFixed(3)}, chance ${chanceMrr.toFixed(3)}`,
  );
  log(
    `host table: ${table.rows} rows x ${DIM} = ${(result.tableBytes / 1024).toFixed(0)} KiB with Adagrad state; ` +
      `per batch ${(result.rowBytesPerBatch / 1024).toFixed(0)} KiB of rows moved to the backend, ` +
      `peak backend memory ${(peak / 1024).toFixed(0)} KiB`,
  );
  return result;
}
