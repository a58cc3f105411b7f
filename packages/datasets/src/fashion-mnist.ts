import type { DataLocation } from './byte-source.js';
import { dataPackageMissing } from './catalog.js';

/**
 * Fashion-MNIST is not bundled with `@dynn/datasets`: at 30 MB it ships in its own package.
 * Install it (`npm install @dynn/data-fashion-mnist`) and import `loadFashionMnist` from
 * `@dynn/data-fashion-mnist`. This stand-in always rejects with a `DATA_MISSING` `DynnError`
 * giving that command.
 *
 * @deprecated Import `loadFashionMnist` from `@dynn/data-fashion-mnist` instead.
 * @example
 * ```ts
 * import { loadFashionMnist } from '@dynn/data-fashion-mnist'; // not from '@dynn/datasets'
 * ```
 */
export async function loadFashionMnist(_location?: DataLocation): Promise<never> {
  throw dataPackageMissing('fashion-mnist');
}
