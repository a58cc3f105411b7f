import { DynnError } from './errors.js';

let registration: Promise<void> | undefined;

function inNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/**
 * Makes sure tfjs's gradient functions are registered, once. `@tensorflow/tfjs-core` ships them
 * only as an ES module of extensionless imports (`dist/register_all_gradients`), which bundlers
 * load but Node cannot; in Node the tfjs-layers bundle registers the same gradients into the same
 * global registry. Called by {@link useBackend} and before every training step.
 */
export function ensureGradients(): Promise<void> {
  registration ??= (
    inNode() ? import('@tensorflow/tfjs-layers') : import('@tensorflow/tfjs-core/dist/register_all_gradients')
  ).then(
    () => undefined,
    (error: unknown) => {
      registration = undefined;
      const text = error instanceof Error ? error.message : String(error);
      if (!text.includes('@tensorflow/tfjs-layers')) throw error;
      // A peer dependency of @dynn/core that the package manager did not install.
      throw new DynnError(
        'BACKEND_UNAVAILABLE',
        'dynn needs @tensorflow/tfjs-layers in Node (it registers the gradients training uses), ' +
          'which is not installed. Install it next to @dynn/core: npm install @tensorflow/tfjs-layers@^4.22.0',
      );
    },
  );
  return registration;
}
