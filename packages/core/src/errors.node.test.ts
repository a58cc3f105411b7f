import { expect, it, vi } from 'vitest';
import { DynnError, isDynnError } from './errors.js';

// A second, independent instance of the errors module, as an app gets when one dependency loads
// @dynn/core's ESM build and another its CommonJS build.
async function secondCopy(): Promise<typeof import('./errors.js')> {
  vi.resetModules();
  return import('./errors.js');
}

it('recognises DynnErrors across two copies of the module', async () => {
  const copy = await secondCopy();
  expect(copy.DynnError).not.toBe(DynnError);
  const theirs = new copy.DynnError('INVALID_INPUT', 'thrown by the other copy');
  const ours = new DynnError('DATA_MISSING', 'thrown by this copy');
  expect(Object.getPrototypeOf(theirs)).not.toBe(DynnError.prototype);
  expect(isDynnError(theirs, 'INVALID_INPUT')).toBe(true);
  expect(theirs instanceof DynnError).toBe(true);
  expect(copy.isDynnError(ours, 'DATA_MISSING')).toBe(true);
  expect(ours instanceof copy.DynnError).toBe(true);
  expect(isDynnError(new Error('plain'))).toBe(false);
  expect(new Error('plain') instanceof copy.DynnError).toBe(false);
});
