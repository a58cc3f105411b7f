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
 * The one error type dynn throws. `code` says what went wrong; the message names the node, op or
 * file and says how to fix it.
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
  }
}

/** True when `error` is a {@link DynnError}, optionally of the given code. */
export function isDynnError(error: unknown, code?: DynnErrorCode): error is DynnError {
  return error instanceof DynnError && (code === undefined || error.code === code);
}
