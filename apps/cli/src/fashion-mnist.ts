import type { FashionMnist } from '@dynn/data-fashion-mnist';
import { dataPackageMissing } from '@dynn/datasets';

/** What `@dynn/data-fashion-mnist` gives the CLI. */
export type FashionMnistPackage = Pick<typeof import('@dynn/data-fashion-mnist'), 'loadFashionMnist'>;

const PACKAGE = '@dynn/data-fashion-mnist';

/**
 * True when `error`, thrown by importing `specifier`, says that `specifier` itself is not
 * installed; false when the package is there but something it imports is missing, which is a
 * different fault and keeps its own message.
 */
export function isMissingPackage(error: unknown, specifier: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof message !== 'string') return false;
  const namesIt = message.includes(`'${specifier}'`) || message.includes(`"${specifier}"`);
  const notFound =
    code === 'ERR_MODULE_NOT_FOUND' ||
    code === 'MODULE_NOT_FOUND' ||
    /cannot find (package|module)|failed to (resolve|load)/i.test(message);
  return namesIt && notFound;
}

/**
 * Imports `@dynn/data-fashion-mnist`, an optional peer of the CLI, on first use, so that only
 * `dynn demo` and the Fashion-MNIST benches need its 30 MB. Its absence fails with the
 * `DATA_MISSING` `DynnError` of `@dynn/datasets` giving `npm install @dynn/data-fashion-mnist`.
 */
export async function importFashionMnist(
  load: () => Promise<FashionMnistPackage> = () => import('@dynn/data-fashion-mnist'),
): Promise<FashionMnistPackage> {
  try {
    return await load();
  } catch (error) {
    if (isMissingPackage(error, PACKAGE)) throw dataPackageMissing('fashion-mnist');
    throw error;
  }
}

/** Loads Fashion-MNIST from the optional `@dynn/data-fashion-mnist` (see {@link importFashionMnist}). */
export async function loadFashionMnist(): Promise<FashionMnist> {
  return (await importFashionMnist()).loadFashionMnist();
}
