import type { Dim } from '../../ir.js';

/** Writes a shape as `[batch, 3, 4]` for error messages. */
export function formatShape(shape: readonly Dim[]): string {
  return `[${shape.join(', ')}]`;
}

/** Whether two shapes have the same rank and dimensions. */
export function sameDims(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The number of elements of a concrete shape (1 for a scalar). */
export function product(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) size *= d;
  return size;
}

/**
 * Resolves an axis that may count from the end (`-1` is the last) against a rank. Throws a plain
 * `Error` naming `what` when the axis is outside the input.
 */
export function normalizeAxis(axis: number, rank: number, what = 'axis'): number {
  const resolved = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(axis) || resolved < 0 || resolved >= rank) {
    throw new Error(`${what} ${axis} is out of range for an input of rank ${rank}`);
  }
  return resolved;
}
