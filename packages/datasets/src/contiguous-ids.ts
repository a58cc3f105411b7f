/** Original ids renumbered `0..n-1`; see {@link contiguousIds}. */
export interface ContiguousIds {
  /** The distinct original ids in ascending order: index `k` holds the original id of `k`. */
  ids: Int32Array;
  /** For each input column, every value replaced by its index in `ids`. */
  indices: Int32Array[];
}

/**
 * Renumbers the integer ids found across `columns` to `0..n-1`, in ascending order of the
 * original id, so that ids can index arrays and embedding tables directly.
 */
export function contiguousIds(...columns: ArrayLike<number>[]): ContiguousIds {
  const seen = new Set<number>();
  for (const column of columns) for (let i = 0; i < column.length; i++) seen.add(column[i]!);
  const ids = Int32Array.from(seen).sort();
  const indexOf = new Map<number, number>();
  for (let k = 0; k < ids.length; k++) indexOf.set(ids[k]!, k);
  const indices = columns.map((column) => {
    const out = new Int32Array(column.length);
    for (let i = 0; i < column.length; i++) out[i] = indexOf.get(column[i]!)!;
    return out;
  });
  return { ids, indices };
}
