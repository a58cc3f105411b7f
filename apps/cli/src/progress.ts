import { SingleBar } from 'cli-progress';

/** A progress bar on stderr; in a non-interactive terminal it prints a line every few seconds. */
export function progressBar(label: string, enabled = true): SingleBar {
  return new SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} | {status}`,
    barCompleteChar: '=',
    barIncompleteChar: ' ',
    hideCursor: true,
    noTTYOutput: enabled,
    notTTYSchedule: 10_000,
    stream: process.stderr,
    clearOnComplete: false,
  });
}
