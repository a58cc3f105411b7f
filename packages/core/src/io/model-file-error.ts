import { DynnError } from '../errors.js';

/**
 * What to do about a file that breaks the tfjs model format where the message points: nothing is
 * assumed about which tool wrote it.
 */
export const DAMAGED_FIX =
  'Check that the file is complete and unmodified; if it is, the program that wrote it did not follow the tfjs model format here, so export the model again.';

/** A `MODEL_FILE` {@link DynnError} whose message starts with the file and says what is wrong and how to fix it. */
export function modelFileError(file: string, problem: string, fix: string = DAMAGED_FIX): DynnError {
  return new DynnError('MODEL_FILE', `${file}: ${problem} ${fix}`, { file });
}

/** A `MODEL_FILE` error for a file that exceeds one of the load limits, naming the limit to raise. */
export function limitError(file: string, what: string, limitName: string, limit: number): DynnError {
  return modelFileError(
    file,
    `${what} exceeds the load limit ${limitName} = ${limit}.`,
    `If you trust this file, raise the limit: loadModel(runtime, source, { limits: { ${limitName}: ... } }).`,
  );
}

/**
 * `error` as a {@link DynnError} that names `file`: a DynnError keeps its code and gains the file
 * in its message and context; anything else becomes a `MODEL_FILE` error.
 */
export function namingFile(error: unknown, file: string): DynnError {
  if (error instanceof DynnError) {
    if (error.context.file === file && error.message.startsWith(file)) return error;
    const message = error.message.startsWith(`${file}: `) ? error.message : `${file}: ${error.message}`;
    return new DynnError(error.code, message, { ...error.context, file });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return modelFileError(
    file,
    `could not be read: ${reason}.`,
    'Check that the location exists and is readable.',
  );
}
