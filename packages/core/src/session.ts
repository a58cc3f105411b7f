import * as tf from '@tensorflow/tfjs-core';
import { DynnError } from './errors.js';
import type { RunRequest, RunResult } from './executor.js';
import type { Model } from './model.js';
import type { SessionValue } from './op.js';

/** @internal The tensors among session values (numbers stay on the host); skips undefined. */
export function sessionTensors(values: Iterable<SessionValue | undefined>): tf.Tensor[] {
  return [...values].filter((v): v is tf.Tensor => v !== undefined && typeof v !== 'number');
}

/**
 * State that belongs to a caller's sequence of runs, not to the model: a KV cache for
 * incremental decoding, a recurrent state carried from one chunk of a sequence to the next, a
 * node memory. Ops keep it through `ctx.session` under the names their `sessionState` declares;
 * a value written in one run is what the next run reads, and may grow along a symbolic axis (a
 * cache along time). Make one with {@link Model.session}; free it with {@link Session.dispose}
 * (the model stays). Several sessions of one model live side by side.
 *
 * @example
 * ```ts
 * const session = model.session();
 * for (const token of prompt) logits = await session.predict(token); // one position per run
 * session.dispose();
 * ```
 */
export class Session {
  /** The model it runs. */
  readonly model: Model;
  private readonly stored = new Map<string, SessionValue>();
  private disposed = false;

  /** @internal Use {@link Model.session}. */
  constructor(model: Model) {
    this.model = model;
  }

  /** The values stored so far, by `<node>/<name>` (read-only; the session owns them). */
  get values(): ReadonlyMap<string, SessionValue> {
    this.assertLive();
    return this.stored;
  }

  /** Runs the model in this session: ops read what earlier runs stored and store what the next reads. */
  async run(
    inputs: tf.Tensor | Record<string, tf.Tensor>,
    request: Omit<RunRequest, 'inputs' | 'session'> = {},
  ): Promise<RunResult> {
    this.assertLive();
    return this.model.run(inputs, { ...request, session: this });
  }

  /** Convenience: runs in this session and returns one graph output (default: the first). */
  async predict(
    inputs: tf.Tensor | Record<string, tf.Tensor>,
    request: Omit<RunRequest, 'inputs' | 'report' | 'outputs' | 'session'> & { output?: string } = {},
  ): Promise<tf.Tensor> {
    this.assertLive();
    return this.model.predict(inputs, { ...request, session: this });
  }

  /**
   * @internal Replaces stored values with a run's writes (taking ownership) and frees the values
   * they replace.
   */
  commit(writes: ReadonlyMap<string, SessionValue>): void {
    this.assertLive();
    for (const [key, value] of writes) {
      const old = this.stored.get(key);
      if (old !== value) tf.dispose(sessionTensors([old]));
      this.stored.set(key, value);
    }
  }

  /** Forgets everything stored (the next run starts a new sequence) and frees its tensors. */
  reset(): void {
    this.assertLive();
    tf.dispose(sessionTensors(this.stored.values()));
    this.stored.clear();
  }

  /** Frees the session's tensors. The session cannot run afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.reset();
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed)
      throw new DynnError('INVALID_OPTION', 'This session was disposed; start another with model.session().');
    if (this.model.isDisposed) throw new DynnError('INVALID_OPTION', "This session's model was disposed.");
  }
}
