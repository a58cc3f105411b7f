import * as tf from '@tensorflow/tfjs-core';
import { isGpuBackend } from './backends.js';

/** Absolute and relative tolerance for a backend: 1e-5 on cpu/wasm, 1e-3 on GPU backends. */
export function toleranceFor(backend: string = tf.getBackend()): number {
  return isGpuBackend(backend) ? 1e-3 : 1e-5;
}

/** Options for {@link expectClose}. */
export interface CloseOptions {
  /** Tolerance; defaults to {@link toleranceFor} the active backend. Used as atol and rtol. */
  tolerance?: number;
  /** Words that prefix the failure message (e.g. the op and case name). */
  label?: string;
}

type Values = tf.Tensor | ArrayLike<number> | number;

async function readValues(values: Values): Promise<{ data: ArrayLike<number>; shape?: number[] }> {
  if (typeof values === 'number') return { data: [values] };
  if (values instanceof tf.Tensor) return { data: await values.data(), shape: values.shape };
  return { data: values };
}

/**
 * Asserts `actual` is elementwise within tolerance of `expected`:
 * `|a - e| <= tol + tol * |e|`, with the same shape when both are tensors. Reads tensors with
 * async readback (so it works on WebGL/WebGPU) and does not dispose them. Throws naming the
 * worst element, so a test fails with a useful message.
 */
export async function expectClose(
  actual: Values,
  expected: Values,
  options: CloseOptions = {},
): Promise<void> {
  const tolerance = options.tolerance ?? toleranceFor();
  const prefix = options.label ? `${options.label}: ` : '';
  const a = await readValues(actual);
  const e = await readValues(expected);
  if (a.shape && e.shape && a.shape.join(',') !== e.shape.join(',')) {
    throw new Error(`${prefix}shape [${a.shape}] differs from expected [${e.shape}]`);
  }
  if (a.data.length !== e.data.length) {
    throw new Error(`${prefix}${a.data.length} values, expected ${e.data.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.data.length; i++) {
    const av = a.data[i] as number;
    const ev = e.data[i] as number;
    const allowed = tolerance + tolerance * Math.abs(ev);
    const excess =
      Number.isNaN(av) !== Number.isNaN(ev) ? Number.POSITIVE_INFINITY : Math.abs(av - ev) - allowed;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${prefix}value ${worst} is ${a.data[worst]}, expected ${e.data[worst]} ` +
        `(tolerance ${tolerance} on ${tf.getBackend()})`,
    );
  }
}
