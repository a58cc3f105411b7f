import type { DataLocation } from './byte-source.js';
import { parseNumberTable, tableColumn } from './number-table.js';
import { readDataFile } from './read-data-file.js';
import { type TemporalGraph, temporalGraph } from './temporal-graph.js';

const FILE = 'CollegeMsg.txt.gz';

/** EvolveGCN's time step for UCI messages: 190,080 s (2.2 days), giving 89 snapshots. */
export const UCI_MESSAGES_STEP_SECONDS = 190_080;

/**
 * Loads the UC Irvine messages temporal graph (SNAP CollegeMsg; Panzarasa, Opsahl & Carley 2009):
 * 59,835 private messages between 1,899 students, as edges `src -> dst` at unix time `time`.
 * `snapshots()` splits it into EvolveGCN's 89 steps. Throws a `DATA_MISSING` or `DATA_CORRUPT`
 * `DynnError` naming the file when it is absent or damaged.
 *
 * @example
 * ```ts
 * const graph = await loadUciMessages();
 * const steps = graph.snapshots(); // 89 snapshots over nodes 0..1898
 * ```
 */
export async function loadUciMessages(location: DataLocation = {}): Promise<TemporalGraph> {
  const table = parseNumberTable(await readDataFile(FILE, location), {
    columns: 3,
    header: true,
    file: FILE,
  });
  return temporalGraph(
    { src: tableColumn(table, 0), dst: tableColumn(table, 1), time: tableColumn(table, 2) },
    UCI_MESSAGES_STEP_SECONDS,
  );
}
