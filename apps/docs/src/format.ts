/** A FLOP count with an SI prefix: `2.73 MFLOPs`. */
export function formatFlops(flops: number): string {
  const prefixes = ['', 'k', 'M', 'G', 'T'];
  let value = flops;
  let prefix = 0;
  while (Math.abs(value) >= 1000 && prefix < prefixes.length - 1) {
    value /= 1000;
    prefix++;
  }
  return `${value.toFixed(value >= 100 || prefix === 0 ? 0 : 2)} ${prefixes[prefix]}FLOPs`;
}

/** A duration in milliseconds: `842 ms`, `12.4 ms`, `3.21 s`. */
export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms.toFixed(ms >= 100 ? 0 : 1)} ms`;
}

/** A fraction as a percentage: `0.8832` gives `88.3%`. */
export function formatPercent(fraction: number, digits = 1): string {
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** A count with thousands separators: `26,682`. */
export function formatCount(count: number): string {
  return count.toLocaleString('en-US');
}
