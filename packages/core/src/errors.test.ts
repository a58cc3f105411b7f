import { describe, expect, it } from 'vitest';
import { DynnError, isDynnError, notATensor } from './errors.js';

/**
 * A stand-in for the DynnError class of another copy of @dynn/core (the other module format's
 * build): a different class that sets the same global brand.
 */
class OtherCopyDynnError extends Error {
  readonly code: string;
  readonly context = {};

  constructor(code: string, message: string) {
    super(message);
    this.name = 'DynnError';
    this.code = code;
    Object.defineProperty(this, Symbol.for('dynn.error'), { value: true });
  }
}

describe('DynnError', () => {
  it('is recognised by isDynnError and instanceof, with its code', () => {
    const error = new DynnError('INVALID_INPUT', 'bad', { node: 'n' });
    expect(error).toBeInstanceOf(Error);
    expect(error instanceof DynnError).toBe(true);
    expect(isDynnError(error)).toBe(true);
    expect(isDynnError(error, 'INVALID_INPUT')).toBe(true);
    expect(isDynnError(error, 'INVALID_GRAPH')).toBe(false);
    expect(error.name).toBe('DynnError');
    expect(error.context).toEqual({ node: 'n' });
    // The brand is not enumerable: it stays out of spreads, JSON and equality checks.
    expect(Object.getOwnPropertySymbols({ ...error })).toEqual([]);
  });

  it('recognises an error made by another copy of the class', () => {
    const foreign = new OtherCopyDynnError('MODEL_FILE', 'from the other build');
    expect(foreign instanceof DynnError).toBe(true);
    expect(isDynnError(foreign)).toBe(true);
    expect(isDynnError(foreign, 'MODEL_FILE')).toBe(true);
    expect(isDynnError(foreign, 'INVALID_INPUT')).toBe(false);
  });

  it('rejects look-alikes without the brand', () => {
    const lookAlike = Object.assign(new Error('x'), { name: 'DynnError', code: 'INVALID_INPUT' });
    for (const value of [
      lookAlike,
      new Error('x'),
      { code: 'INVALID_INPUT' },
      null,
      undefined,
      'DynnError',
      3,
    ]) {
      expect(isDynnError(value)).toBe(false);
      expect(value instanceof DynnError).toBe(false);
    }
    expect(isDynnError({ [Symbol.for('dynn.error')]: 'yes' })).toBe(false);
  });

  it('keeps the prototype test for a subclass', () => {
    class FileError extends DynnError {}
    const sub = new FileError('MODEL_FILE', 'sub');
    const base = new DynnError('MODEL_FILE', 'base');
    expect(sub instanceof FileError).toBe(true);
    expect(sub instanceof DynnError).toBe(true);
    expect(isDynnError(sub, 'MODEL_FILE')).toBe(true);
    expect(base instanceof FileError).toBe(false);
    expect(new OtherCopyDynnError('MODEL_FILE', 'foreign') instanceof FileError).toBe(false);
  });
});

describe('notATensor', () => {
  it('says what the value is and how to wrap it', () => {
    expect(notATensor("Input 'x'", [[1, 2]]).message).toBe(
      "Input 'x' is a JavaScript array, not a tf.Tensor; wrap it with tf.tensor(...).",
    );
    expect(notATensor('x', new Int32Array(2)).message).toBe(
      'x is an Int32Array, not a tf.Tensor; wrap it with tf.tensor(values, shape), rows first.',
    );
    expect(notATensor('x', 3).message).toMatch(/^x is a number, not a tf\.Tensor/);
    expect(notATensor('x', new Map()).message).toMatch(/^x is a Map, not a tf\.Tensor/);
    expect(notATensor('x', {}).message).toMatch(/^x is a plain object/);
    expect(isDynnError(notATensor('x', 'text'), 'INVALID_INPUT')).toBe(true);
  });
});
