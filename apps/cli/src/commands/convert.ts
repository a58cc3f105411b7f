import { join, resolve } from 'node:path';
import {
  createRng,
  createRuntime,
  importLayersModel,
  loadModel,
  type Model,
  type QuantizationDType,
  saveModel,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** Options of {@link convert}. */
export interface ConvertOptions {
  /** Store float32 weights quantized (tfjs converter format): 1 byte (`uint8`) or 2 bytes (`uint16`, `float16`) each. */
  quantize?: QuantizationDType;
}

/** What {@link convert} did: the file written, its size and, when quantized, how much the outputs moved. */
export interface ConvertResult {
  /** The model.json written. */
  file: string;
  nodes: number;
  /** Trainable parameter elements. */
  params: number;
  /** The quantization the weights were written with, if any. */
  quantize?: QuantizationDType;
  /** Bytes of weight data written (all shards together). */
  bytes: number;
  /** Bytes the same weights take unquantized. */
  floatBytes: number;
  /** Rows of the seeded random probe batch the float and quantized models ran on. */
  probeRows?: number;
  /** Largest absolute difference between the float and the quantized model's outputs on the probe batch. */
  maxAbsError?: number;
  /**
   * Share of probe rows whose argmax (predicted class) is the same in both models, over every
   * output of shape [batch, classes] with 2 or more classes; absent when there is none.
   */
  agreement?: number;
  /** Why the accuracy change was not measured, when the model was quantized but could not be probed. */
  accuracyNote?: string;
}

/** Rows of the probe batch, and its seed (the same probe on every run). */
const PROBE_ROWS = 64;
const PROBE_SEED = 20_261_205;

const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1 };

/** Bytes of the model's parameters and state stored unquantized. */
function floatBytesOf(model: Model): number {
  let total = 0;
  for (const tensor of [...model.params.values(), ...model.state.values()]) {
    total += tensor.size * (DTYPE_BYTES[tensor.dtype] ?? 4);
  }
  return total;
}

/**
 * A seeded random batch for every graph input: {@link PROBE_ROWS} rows, float32 values uniform in
 * [-1, 1), int32 values 0 or 1 (valid indices for any embedding), random bools. Returns the
 * reason instead when an input has a symbolic dimension besides the batch, whose size the model
 * file does not tell.
 */
function probeInputs(model: Model): Record<string, tf.Tensor> | string {
  const rng = createRng(PROBE_SEED);
  const shapes: number[][] = [];
  for (const input of model.graph.inputs) {
    const shape: number[] = [];
    for (const [axis, dim] of input.shape.entries()) {
      if (typeof dim === 'number') shape.push(dim);
      else if (axis === 0) shape.push(PROBE_ROWS);
      else {
        return `input '${input.name}' has the symbolic dimension '${dim}' besides the batch, so no probe batch can be made`;
      }
    }
    shapes.push(shape);
  }
  const feeds: Record<string, tf.Tensor> = {};
  for (const [i, input] of model.graph.inputs.entries()) {
    const shape = shapes[i]!;
    const size = shape.reduce((a, b) => a * b, 1);
    if (input.dtype === 'float32') {
      const values = new Float32Array(size);
      for (let j = 0; j < size; j++) values[j] = 2 * rng.next() - 1;
      feeds[input.name] = tf.tensor(values, shape, 'float32');
    } else {
      const values = new Int32Array(size);
      for (let j = 0; j < size; j++) values[j] = rng.next() < 0.5 ? 0 : 1;
      feeds[input.name] = tf.tensor(values, shape, input.dtype);
    }
  }
  return feeds;
}

/** The index of the largest value of each row of a [rows, columns] array. */
function argmaxRows(values: ArrayLike<number>, rows: number, columns: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < columns; c++) {
      if (values[r * columns + c]! > values[r * columns + best]!) best = c;
    }
    out[r] = best;
  }
  return out;
}

/**
 * Runs both models on the same seeded probe batch and compares every graph output: the largest
 * absolute difference, and for [batch, classes] outputs how often the argmax agrees.
 */
async function measureChange(
  float: Model,
  quantized: Model,
): Promise<Pick<ConvertResult, 'probeRows' | 'maxAbsError' | 'agreement' | 'accuracyNote'>> {
  const feeds = probeInputs(float);
  if (typeof feeds === 'string') return { accuracyNote: feeds };
  try {
    const [a, b] = [await float.run(feeds, { report: false }), await quantized.run(feeds, { report: false })];
    try {
      let maxAbsError = 0;
      let agree = 0;
      let compared = 0;
      for (const { name } of float.graph.outputs) {
        const [x, y] = [a.outputs[name]!, b.outputs[name]!];
        const [xs, ys] = [await x.data(), await y.data()];
        for (let i = 0; i < xs.length; i++) {
          const difference = Math.abs((xs[i] as number) - (ys[i] as number));
          // NaN in either output is reported as NaN, not hidden by Math.max.
          maxAbsError = Number.isNaN(difference) ? Number.NaN : Math.max(maxAbsError, difference);
        }
        if (x.rank === 2 && x.shape[1]! >= 2) {
          const [rows, columns] = x.shape as [number, number];
          const [p, q] = [argmaxRows(xs, rows, columns), argmaxRows(ys, rows, columns)];
          for (let r = 0; r < rows; r++) if (p[r] === q[r]) agree++;
          compared += rows;
        }
      }
      const probeRows = Object.values(feeds)[0]?.shape[0] ?? 0;
      return compared > 0
        ? { probeRows, maxAbsError, agreement: agree / compared }
        : { probeRows, maxAbsError };
    } finally {
      tf.dispose([...Object.values(a.outputs), ...Object.values(b.outputs)]);
    }
  } finally {
    tf.dispose(Object.values(feeds));
  }
}

/**
 * Converts a tfjs-layers / Keras model.json (+ weights, quantized or not) into a dynn model
 * folder. With `options.quantize`, float32 weights are written quantized, and the result says how
 * much smaller they are and how much the outputs moved: the float model and the model loaded back
 * from the written file run on a seeded random probe batch of 64 rows.
 */
export async function convert(
  source: string,
  outDir: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const runtime = createRuntime();
  const folder = resolve(outDir);
  const model = await importLayersModel(runtime, resolve(source));
  try {
    const saved = await saveModel(
      model,
      folder,
      options.quantize === undefined ? {} : { quantize: options.quantize },
    );
    const floatBytes = floatBytesOf(model);
    const result: ConvertResult = {
      file: join(folder, 'model.json'),
      nodes: model.graph.nodes.length,
      params: model.paramCount,
      bytes: saved.modelArtifactsInfo.weightDataBytes ?? floatBytes,
      floatBytes,
    };
    if (options.quantize === undefined) return result;
    result.quantize = options.quantize;
    const quantized = await loadModel(runtime, folder);
    try {
      return { ...result, ...(await measureChange(model, quantized)) };
    } finally {
      quantized.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** A byte count for people: B, KiB or MiB. */
function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** What `dynn convert` prints for a {@link ConvertResult}: one line per fact, no final newline. */
export function formatConvertResult(result: ConvertResult): string {
  const lines = [
    `wrote ${result.file}: ${result.nodes} nodes, ${result.params.toLocaleString('en-US')} parameters`,
  ];
  if (result.quantize === undefined) {
    lines.push(`weights: ${formatBytes(result.bytes)} (float32)`);
  } else {
    const share = result.floatBytes > 0 ? ` (${((100 * result.bytes) / result.floatBytes).toFixed(1)}%)` : '';
    lines.push(
      `weights: ${formatBytes(result.bytes)} as ${result.quantize}, ${formatBytes(result.floatBytes)} as float32${share}`,
    );
    if (result.maxAbsError !== undefined) {
      const agreement =
        result.agreement === undefined ? '' : `, argmax agreement ${(100 * result.agreement).toFixed(1)}%`;
      lines.push(
        `accuracy change on ${result.probeRows} random rows: max abs output difference ${result.maxAbsError.toExponential(2)}${agreement}`,
      );
    } else if (result.accuracyNote !== undefined) {
      lines.push(`accuracy change not measured: ${result.accuracyNote}`);
    }
  }
  return lines.join('\n');
}
