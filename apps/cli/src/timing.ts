/** Median of a list of numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Options of {@link timeMedian} and {@link timeSideBySide}. */
export interface TimingOptions {
  /** Untimed runs first. */
  warmup: number;
  /** Timed runs at least. */
  repeats: number;
  /** Keep timing until this many milliseconds have been spent (sub-millisecond cases), default 0. */
  minTotalMs?: number;
}

async function timed(body: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await body();
  return performance.now() - started;
}

/**
 * Runs `body` `warmup` times untimed, then at least `repeats` times timed (more until
 * `minTotalMs` is spent), and returns the median milliseconds. `body` must finish its work (read
 * results back) before resolving.
 */
export async function timeMedian(body: () => Promise<void>, options: TimingOptions): Promise<number> {
  const [median] = await timeSideBySide([body], options);
  return median!;
}

/**
 * Times several bodies alternately (a, b, a, b...), so a change in machine load affects them
 * alike, and returns each one's median milliseconds.
 */
export async function timeSideBySide(
  bodies: ReadonlyArray<() => Promise<void>>,
  { warmup, repeats, minTotalMs = 0 }: TimingOptions,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) for (const body of bodies) await body();
  const times = bodies.map(() => [] as number[]);
  let spent = 0;
  for (let i = 0; i < repeats || (spent < minTotalMs && i < 10_000); i++) {
    for (const [k, body] of bodies.entries()) {
      const ms = await timed(body);
      times[k]!.push(ms);
      spent += ms;
    }
  }
  return times.map(median);
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
