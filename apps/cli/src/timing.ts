/** Median of a list of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Options of {@link timeMedian}. */
export interface TimingOptions {
  warmup: number;
  repeats: number;
}

/**
 * Runs `body` `warmup` times untimed, then `repeats` times timed, and returns the median
 * milliseconds. `body` must finish its work (read results back) before resolving.
 */
export async function timeMedian(
  body: () => Promise<void>,
  { warmup, repeats }: TimingOptions,
): Promise<number> {
  for (let i = 0; i < warmup; i++) await body();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    await body();
    times.push(performance.now() - started);
  }
  return median(times);
}

/** Replaces the text between `<!-- name:start -->` and `<!-- name:end -->` in `document`. */
export function replaceSection(document: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = document.indexOf(start);
  const to = document.indexOf(end);
  const section = `${start}\n${body.trim()}\n${end}`;
  if (from < 0 || to < from) return `${document.trimEnd()}\n\n${section}\n`;
  return document.slice(0, from) + section + document.slice(to + end.length);
}
