/**
 * Machine-readable error codes raised by dynn. Each code names one kind of failure so callers can
 * branch on `error.code` instead of parsing messages.
 */
export type DynnErrorCode =
  | 'BACKEND_UNAVAILABLE'
  | 'INVALID_GRAPH'
  | 'SHAPE_MISMATCH'
  | 'UNKNOWN_OP'
  | 'OP_VERSION'
  | 'INVALID_ATTR'
  | 'INVALID_INPUT'
  | 'INVALID_OPTION'
  | 'MODEL_FILE'
  | 'UNSUPPORTED_LAYER'
  | 'DATA_MISSING'
  | 'DATA_CORRUPT';

/** Extra context attached to a {@link DynnError}: the node, op or file it concerns. */
export interface DynnErrorContext {
  /** Name of the graph node the error concerns. */
  node?: string;
  /** Op type (`domain.Name`) the error concerns. */
  op?: string;
  /** File or URL the error concerns. */
  file?: string;
}

/**
 * The brand every {@link DynnError} carries. `Symbol.for` gives the same symbol to every copy of
 * `@dynn/core` loaded in one process (its ESM and CommonJS builds, a bundled copy), so errors
 * thrown by one copy are recognised by another.
 */
const BRAND = Symbol.for('dynn.error');

function hasBrand(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
}

/**
 * The one error type dynn throws. `code` says what went wrong; the message names the node, op or
 * file and says how to fix it.
 *
 * `error instanceof DynnError` and {@link isDynnError} also hold for an error thrown by another
 * copy of `@dynn/core` (the other module format's build): both test a brand, not the class.
 */
export class DynnError extends Error {
  /** What kind of failure this is. */
  readonly code: DynnErrorCode;
  /** The node, op or file the error concerns, when known. */
  readonly context: DynnErrorContext;

  /** An error of kind `code`; `message` says what is wrong and how to fix it. */
  constructor(code: DynnErrorCode, message: string, context: DynnErrorContext = {}) {
    super(message);
    this.name = 'DynnError';
    this.code = code;
    this.context = context;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * `instanceof DynnError` tests the brand, so it holds across copies of `@dynn/core`. A subclass
   * keeps the ordinary prototype test.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class right of `instanceof`, maybe a subclass.
    return this === DynnError ? hasBrand(value) : Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/**
 * True when `error` is a {@link DynnError}, optionally of the given code. Recognises errors from
 * every copy of `@dynn/core` in the process (ESM and CommonJS builds are two classes).
 */
export function isDynnError(error: unknown, code?: DynnErrorCode): error is DynnError {
  return hasBrand(error) && (code === undefined || (error as DynnError).code === code);
}

/** `word` with its indefinite article: "an Int32Array", "a number". */
const withArticle = (word: string) => `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;

/** How a value that should have been a tf.Tensor looks, in words ("a JavaScript array"). */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'a JavaScript array';
  if (ArrayBuffer.isView(value)) return withArticle(value.constructor.name);
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? withArticle(name) : 'a plain object';
  }
  return withArticle(typeof value);
}

/**
 * @internal The error for a value given where a tf.Tensor belongs: `label` names it
 * (`Input 'x'`), the message says what it is and how to wrap it.
 */
export function notATensor(label: string, value: unknown): DynnError {
  return new DynnError(
    'INVALID_INPUT',
    `${label} is ${describeValue(value)}, not a tf.Tensor; wrap it with ` +
      `${ArrayBuffer.isView(value) ? 'tf.tensor(values, shape), rows first' : 'tf.tensor(...)'}.`,
  );
}
