import { DynnError, forwardForTraining, type Model, type RunOptions } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { describeExits, exitOutputsOf } from './exits.js';

/** Options of {@link slowdownAttack}. */
export interface SlowdownOptions {
  /** L-infinity bound of the perturbation, in input units (e.g. 0.03 for pixels in [0, 1]). */
  epsilon: number;
  /** Gradient steps: 1 is FGSM, more is PGD with step 2.5 * epsilon / steps. Default 1. */
  steps?: number;
  /** The operating point attacked (early-exit run options, e.g. from `runOptionsFor`). */
  options: RunOptions;
  /** Valid input range the perturbed input is clipped to (default [0, 1]). */
  clip?: readonly [number, number];
  /** The graph output the exits answer for (default the first exit's). */
  output?: string;
}

/** Depth and cost of a dynamic run: where rows left and what they cost. */
export interface ExitDepth {
  /** Mean 1-based position of the exit that served each row (exits + 1 for the final layer). */
  meanDepth: number;
  /** Mean MFLOPs executed per row. */
  mflopsPerSample: number;
  /** Rows served per exit, then by the final layer. */
  histogram: number[];
}

/** What {@link slowdownAttack} measured on clean and perturbed inputs. */
export interface SlowdownResult {
  /** The L-infinity radius of the perturbation (inputs in [0, 1]). */
  epsilon: number;
  /** Gradient steps taken (1: FGSM). */
  steps: number;
  /** Exit depth and compute on the clean inputs. */
  clean: ExitDepth;
  /** Exit depth and compute on the perturbed inputs. */
  attacked: ExitDepth;
  /** attacked.meanDepth / clean.meanDepth. */
  depthIncrease: number;
  /** attacked.mflopsPerSample / clean.mflopsPerSample. */
  flopsIncrease: number;
}

async function measureDepth(
  model: Model,
  x: tf.Tensor,
  options: RunOptions,
  output: string,
): Promise<ExitDepth> {
  const exits = describeExits(model.graph).map((e) => e.node);
  const { outputs, report } = await model.run(x, { outputs: [output], options });
  tf.dispose(Object.values(outputs));
  const histogram = new Array<number>(exits.length + 1).fill(0);
  let depth = 0;
  for (const node of report!.servedBy[output]!) {
    const index = exits.indexOf(node);
    const position = index < 0 ? exits.length : index;
    histogram[position]! += 1;
    depth += position + 1;
  }
  const rows = x.shape[0]!;
  return { meanDepth: depth / rows, mflopsPerSample: report!.flops / rows / 1e6, histogram };
}

/**
 * Measures how far a small perturbation can push a dynamic network into computing more: the
 * "slowdown" attack surface of early exits (crafted inputs that never exit early). The input is
 * moved against the confidence of every exit (the sum of their max-softmax probabilities) by
 * FGSM or PGD within an L-infinity ball, then the mean exit depth and FLOPs per row of the
 * operating point are compared on clean and perturbed inputs. Leaks no tensor.
 */
export async function slowdownAttack(
  model: Model,
  x: tf.Tensor,
  options: SlowdownOptions,
): Promise<SlowdownResult> {
  const steps = options.steps ?? 1;
  if (!(options.epsilon > 0) || !Number.isInteger(steps) || steps < 1) {
    throw new DynnError(
      'INVALID_OPTION',
      'slowdownAttack needs epsilon > 0 and a positive integer number of steps.',
    );
  }
  const exits = exitOutputsOf(model.graph);
  const output = options.output ?? exits[0]!.output;
  const [low, high] = options.clip ?? [0, 1];
  const input = model.graph.inputs[0]!.name;
  const confidence = (probe: tf.Tensor): tf.Scalar => {
    const forward = forwardForTraining(model, new Map([[input, probe]]), {}, 0, {
      trainable: new Set(),
      training: false,
      inputGradients: true,
    });
    tf.dispose([...forward.stateUpdates.values()]);
    return tf.addN(
      exits.map((e) => tf.mean(tf.max(tf.softmax(forward.outputs[e.logits]!), -1))),
    ) as tf.Scalar;
  };
  const stepSize = steps === 1 ? options.epsilon : (2.5 * options.epsilon) / steps;
  let attacked = tf.clone(x);
  for (let i = 0; i < steps; i++) {
    const next = tf.tidy(() => {
      const gradient = tf.grad(confidence)(attacked);
      const moved = tf.sub(attacked, tf.mul(tf.sign(gradient), stepSize));
      const inBall = tf.clipByValue(tf.sub(moved, x), -options.epsilon, options.epsilon);
      return tf.clipByValue(tf.add(x, inBall), low, high);
    });
    attacked.dispose();
    attacked = next;
  }
  try {
    const clean = await measureDepth(model, x, options.options, output);
    const perturbed = await measureDepth(model, attacked, options.options, output);
    return {
      epsilon: options.epsilon,
      steps,
      clean,
      attacked: perturbed,
      depthIncrease: perturbed.meanDepth / clean.meanDepth,
      flopsIncrease: perturbed.mflopsPerSample / clean.mflopsPerSample,
    };
  } finally {
    attacked.dispose();
  }
}
