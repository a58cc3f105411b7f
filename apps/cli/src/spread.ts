/** Mean, standard deviation (over seeds, n - 1 in the denominator; 0 for one seed), min and max. */
export interface Spread {
  /** Mean. */
  mean: number;
  /** Sample standard deviation (0 for one value). */
  std: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
}

/** Mean, sample standard deviation, min and max of `values` (results over seeds). */
export function spreadOf(values: readonly number[]): Spread {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, std: Math.sqrt(variance), min: Math.min(...values), max: Math.max(...values) };
}
