import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** Writes `files` (name -> text) into `dir`, creating it, and returns the absolute folder path. */
export async function writeReport(dir: string, files: Record<string, string>): Promise<string> {
  const folder = resolve(dir);
  await mkdir(folder, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(folder, name), text);
  return folder;
}

/** Formats a number of FLOPs with an SI prefix (`1.23 MFLOPs`). */
export function formatFlops(flops: number): string {
  const units = ['', 'k', 'M', 'G', 'T'];
  let value = flops;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value >= 100 ? 0 : 2)} ${units[unit]}FLOPs`;
}

/** A markdown table from a header row and body rows. */
export function markdownTable(
  header: readonly string[],
  rows: ReadonlyArray<readonly (string | number)[]>,
): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** An exit threshold for reports: one shared value, or one per exit joined by " / ". */
export function formatThreshold(threshold: number | readonly number[] | null): string {
  if (threshold === null) return 'none (every row to the end)';
  return typeof threshold === 'number' ? `${threshold}` : `${threshold.join(' / ')} (per exit)`;
}
