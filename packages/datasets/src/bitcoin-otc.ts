import type { DataLocation } from './byte-source.js';
import { parseNumberTable, tableColumn } from './number-table.js';
import { readDataFile } from './read-data-file.js';
import { type TemporalGraph, temporalGraph } from './temporal-graph.js';

const FILE = 'soc-sign-bitcoinotc.csv.gz';

/** EvolveGCN's time step for Bitcoin-OTC: 1,200,000 s (about two weeks), giving 138 snapshots. */
export const BITCOIN_OTC_STEP_SECONDS = 1_200_000;

/**
 * Loads the Bitcoin-OTC trust network (SNAP soc-sign-bitcoinotc; Kumar et al. 2016, 2018): 35,592
 * ratings between 5,881 traders, as edges `src -> dst` at unix time `time` with the rating
 * (-10..10) as `weight`. `snapshots()` splits it into EvolveGCN's 138 steps. Throws a
 * `DATA_MISSING` or `DATA_CORRUPT` `DynnError` naming the file when it is absent or damaged.
 *
 * @example
 * ```ts
 * const graph = await loadBitcoinOtc();
 * const { src, dst, weight } = graph.toTensors();
 * ```
 */
export async function loadBitcoinOtc(location: DataLocation = {}): Promise<TemporalGraph> {
  const table = parseNumberTable(await readDataFile(FILE, location), {
    columns: 4,
    header: false,
    file: FILE,
  });
  return temporalGraph(
    {
      src: tableColumn(table, 0),
      dst: tableColumn(table, 1),
      weight: Float32Array.from(tableColumn(table, 2)),
      time: tableColumn(table, 3),
    },
    BITCOIN_OTC_STEP_SECONDS,
  );
}
