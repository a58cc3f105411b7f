import { DynnError } from '@dynn/core';

/**
 * Fetches the JSON file at `url` (an absolute URL) for a live example, unchecked: the caller reads
 * it into its type. Throws `DATA_MISSING`, naming the file, when it cannot be fetched.
 */
export async function fetchJson(
  url: string,
  fetchFunction: typeof fetch = (input, init) => globalThis.fetch(input, init),
): Promise<unknown> {
  let response: Response;
  try {
    response = await fetchFunction(url);
  } catch (error) {
    throw new DynnError('DATA_MISSING', `${url}: could not fetch it (${(error as Error).message}).`, {
      file: url,
    });
  }
  if (!response.ok) {
    throw new DynnError('DATA_MISSING', `${url}: fetching it answered HTTP ${response.status}.`, {
      file: url,
    });
  }
  return response.json();
}
