import { DynnError, type Graph, type Objective, stopGradient } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { exitOutputsOf } from './exits.js';

/** Self-distillation from the final exit (BYOT / Hinton): soft targets at a temperature. */
export interface DistillationOptions {
  /** Softmax temperature T (> 0) of teacher and students; the KL term is scaled by T². */
  temperature: number;
  /** Share of each exit's loss taken by the KL term, in [0, 1]; the rest is its cross-entropy. */
  alpha: number;
}

/** A training objective over every graph output: usable as `fit`'s and `Trainer`'s `loss`. */
export type ObjectiveFunction = Extract<Objective, (...args: never[]) => unknown>;

/** Options of {@link multiExitObjective}. */
export interface MultiExitObjectiveOptions {
  /**
   * The graph the objective trains: exit, halting and final outputs are read from its exits.
   * Without it, outputs named `exit<k>` and `halt<k>` are the exits, as the pass names them.
   */
  graph?: Graph;
  /** The final output (default: the one the exits answer for, else the only target's name). */
  output?: string;
  /** Weight of every exit's loss, then the final output's (default all 1). */
  weights?: readonly number[];
  /** Self-distillation from the final output (default none). */
  distillation?: DistillationOptions;
  /** Weight of the halting heads' loss (default 1). */
  haltingWeight?: number;
  /**
   * What a halting head learns to predict (CALM's oracle): `final`, that the exit's arg-max
   * equals the final output's (default: the exit would not change the answer); `label`, that it
   * equals the label (the exit is right).
   */
  haltingTarget?: 'final' | 'label';
  /** Whether the final output holds logits (default true); false for an imported softmax head. */
  fromLogits?: boolean;
}

function byIndex(prefix: string, names: readonly string[]): string[] {
  const pattern = new RegExp(`^${prefix}(\\d+)$`);
  return names
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter((e) => e.match !== null)
    .sort((a, b) => Number(a.match![1]) - Number(b.match![1]))
    .map((e) => e.name);
}

/**
 * 1 where the rows of `a` and `b` have the same arg-max, else 0, `[rows]`: a target, so its
 * gradient is zero (tfjs has no gradient for the comparison itself).
 */
const sameArgMax: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor = tf.customGrad(
  // biome-ignore lint/suspicious/noExplicitAny: tf.customGrad's callback signature is untyped.
  (a: any, b: any) => ({
    value: tf.cast(tf.equal(tf.argMax(a as tf.Tensor, -1), tf.argMax(b as tf.Tensor, -1)), 'float32'),
    gradFunc: () => [tf.zerosLike(a as tf.Tensor), tf.zerosLike(b as tf.Tensor)],
  }),
) as unknown as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/** Mean sparse cross-entropy of log-probabilities `[rows, classes]` against one-hot labels. */
function crossEntropy(logProbs: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logProbs), -1))) as tf.Scalar;
}

/**
 * The joint multi-exit training objective, for `fit(model, data, { loss })` and `Trainer`:
 *
 * `Σ_k w_k · [(1 − α) · CE(exit_k, y) + α · T² · KL(softmax(final / T) ‖ softmax(exit_k / T))]
 *  + w_final · CE(final, y) + haltingWeight · Σ_k BCE(halt_k, target_k)`
 *
 * where the final output's logits are a fixed teacher (no gradient flows into them from the KL
 * term), α = 0 without `distillation`, and `target_k` is 1 when exit k's arg-max equals the final
 * output's (or the label's, see `haltingTarget`). Labels are sparse class ids: `[batch]` for
 * `[batch, classes]` outputs, `[batch, time]` for per-position outputs `[batch, time, classes]`
 * (a language model trained on every position; exits with `positions: 'all'`).
 *
 * @example
 * ```ts
 * await fit(model, { x, y }, { loss: multiExitObjective({ graph: model.graph, distillation: { temperature: 3, alpha: 0.5 } }) });
 * ```
 */
export function multiExitObjective(options: MultiExitObjectiveOptions = {}): ObjectiveFunction {
  const { distillation } = options;
  if (distillation !== undefined) {
    if (!(distillation.temperature > 0)) {
      throw new DynnError(
        'INVALID_OPTION',
        `distillation.temperature must be > 0, got ${distillation.temperature}.`,
      );
    }
    if (!(distillation.alpha >= 0 && distillation.alpha <= 1)) {
      throw new DynnError(
        'INVALID_OPTION',
        `distillation.alpha must lie in [0, 1], got ${distillation.alpha}.`,
      );
    }
  }
  const exits = options.graph ? exitOutputsOf(options.graph) : undefined;
  const haltingWeight = options.haltingWeight ?? 1;
  const alpha = distillation?.alpha ?? 0;
  const temperature = distillation?.temperature ?? 1;
  return (outputs, targets) => {
    const exitNames = exits?.map((e) => e.logits) ?? byIndex('exit', Object.keys(outputs));
    // Pairs of (exit logits, its halting probability) for the exits that have a halting head.
    const halting: [string, string][] = exits
      ? exits.flatMap((e) =>
          e.halt !== undefined && e.halt in outputs ? [[e.logits, e.halt] as [string, string]] : [],
        )
      : byIndex('halt', Object.keys(outputs)).flatMap((halt) => {
          const logits = `exit${halt.slice('halt'.length)}`;
          return logits in outputs ? [[logits, halt] as [string, string]] : [];
        });
    const targetNames = Object.keys(targets);
    const output =
      options.output ?? exits?.[0]?.output ?? (targetNames.length === 1 ? targetNames[0]! : 'logits');
    const final = outputs[output];
    const labels = targets[output] ?? (targetNames.length === 1 ? targets[targetNames[0]!] : undefined);
    if (final === undefined || labels === undefined) {
      throw new DynnError(
        'INVALID_OPTION',
        `multiExitObjective: needs output '${output}' and its labels; outputs are ${Object.keys(outputs).join(', ')}.`,
      );
    }
    const weights = options.weights ?? new Array<number>(exitNames.length + 1).fill(1);
    if (weights.length !== exitNames.length + 1) {
      throw new DynnError(
        'INVALID_OPTION',
        `multiExitObjective: weights has ${weights.length} entries; it needs ${exitNames.length + 1} (one per exit, then the final output).`,
      );
    }
    return tf.tidy(() => {
      // Per-position outputs [batch, time, classes] with labels [batch, time] count every
      // position as a row: each predicts its own label.
      const classes = final.shape[final.rank - 1]!;
      const rows = (t: tf.Tensor) => tf.reshape(t, [-1, classes]);
      const oneHot = tf.oneHot(tf.cast(tf.reshape(labels, [-1]), 'int32'), classes);
      const finalLogProbs =
        options.fromLogits === false
          ? tf.log(tf.clipByValue(rows(final), 1e-7, 1))
          : tf.logSoftmax(rows(final));
      let total = tf.mul(crossEntropy(finalLogProbs, oneHot), weights[exitNames.length]!) as tf.Scalar;
      const teacher = alpha > 0 ? tf.softmax(tf.div(stopGradient(finalLogProbs), temperature)) : undefined;
      exitNames.forEach((name, k) => {
        const logits = rows(outputs[name]!);
        let loss = crossEntropy(tf.logSoftmax(logits), oneHot);
        if (teacher !== undefined) {
          const student = tf.logSoftmax(tf.div(logits, temperature));
          const kl = tf.mean(
            tf.sum(tf.mul(teacher, tf.sub(tf.log(tf.clipByValue(teacher, 1e-12, 1)), student)), -1),
          );
          loss = tf.add(tf.mul(loss, 1 - alpha), tf.mul(kl, alpha * temperature * temperature)) as tf.Scalar;
        }
        total = tf.add(total, tf.mul(loss, weights[k]!)) as tf.Scalar;
      });
      if (halting.length > 0 && haltingWeight > 0) {
        const reference = options.haltingTarget === 'label' ? oneHot : rows(final);
        for (const [logits, halt] of halting) {
          const target = sameArgMax(rows(outputs[logits]!), reference);
          const p = tf.clipByValue(tf.reshape(outputs[halt]!, [-1]), 1e-7, 1 - 1e-7);
          const bce = tf.neg(
            tf.mean(tf.add(tf.mul(target, tf.log(p)), tf.mul(tf.sub(1, target), tf.log(tf.sub(1, p))))),
          );
          total = tf.add(total, tf.mul(bce, haltingWeight)) as tf.Scalar;
        }
      }
      return total;
    });
  };
}
