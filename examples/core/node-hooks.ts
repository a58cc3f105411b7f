// Two hooks into a run of dynn's interpreter, on the row-by-row RNN of scan-rnn.ts:
// - a node hook (`model.run(x, { hooks })`) that profiles every node, sub-graph nodes included:
//   calls, milliseconds between `beforeNode` and `afterNode`, and the output shape;
// - a gradient hook (`fit`'s `onGradients`) that keeps magnitude-pruned weights at zero while the
//   rest trains: it masks their gradients after clipping, before the optimizer step.
// CI runs `main()` (examples/core.node.test.ts).
import {
  type BackendName,
  createModel,
  createRuntime,
  evaluate,
  fit,
  type NodeEvent,
  type NodeHook,
  useBackend,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { digitRows, rowRnnGraph } from './scan-rnn.js';

/** Share of each kernel's weights pruned. */
const PRUNED = 0.4;

/** What the profiler measured of one node, summed over its calls. */
export interface NodeProfile {
  /** Its path: `rnn/body/cell` inside the Scan's body. */
  name: string;
  /** The node that runs it, inside a sub-graph. */
  parent?: string;
  op: string;
  /** Times it ran (once per time step inside the Scan). */
  calls: number;
  /** Milliseconds from `beforeNode` to `afterNode`, summed over calls; a Scan's include its body's. */
  ms: number;
  /** Shape of its first output, last call. */
  shape: number[];
}

// #region profiler
/**
 * A node hook timing every node. Hooks are called synchronously around the node's forward, so on
 * cpu and wasm, whose kernels run as they are called, the interval is the node's compute. (On
 * webgl and webgpu it is the time to queue the kernels: read the outputs back in `afterNode` to
 * wait for them, at the cost of a sync per node.)
 */
export function profiler(): { hook: NodeHook; nodes: Map<string, NodeProfile> } {
  const nodes = new Map<string, NodeProfile>();
  const started = new Map<string, number>();
  // An entry is made when a node starts, so a Scan comes before its body's nodes.
  const entry = (event: NodeEvent): NodeProfile => {
    let found = nodes.get(event.path);
    if (found === undefined) {
      found = { name: event.path, op: event.node.op, calls: 0, ms: 0, shape: [] };
      if (event.parent !== undefined) found.parent = event.parent;
      nodes.set(event.path, found);
    }
    return found;
  };
  const hook: NodeHook = {
    beforeNode: (event) => {
      entry(event);
      started.set(event.path, performance.now());
    },
    afterNode: (event) => {
      // A node every row had retired before gets `afterNode` alone, with no outputs.
      const ms = performance.now() - (started.get(event.path) ?? performance.now());
      const profile = entry(event);
      profile.calls += 1;
      profile.ms += ms;
      profile.shape = event.outputs[0]?.shape ?? [];
    },
  };
  return { hook, nodes };
}
// #endregion profiler

/** What the example measured. */
export interface NodeHooksResult {
  /** The profile of a run on the test digits, in the order nodes started. */
  profile: NodeProfile[];
  /** Per pruned kernel: its elements, those pruned, and those nonzero after training. */
  pruned: { name: string; size: number; pruned: number; nonzero: number }[];
  /** Accuracy on the test digits: trained dense, just pruned, fine-tuned with the pruned weights held at zero. */
  accuracy: { dense: number; pruned: number; fineTuned: number };
}

/** Trains the RNN, prunes 40% of its kernels, fine-tunes the rest, then profiles a run on the test digits. */
export async function main(
  backend: BackendName = 'wasm',
  log: (line: string) => void = console.log,
): Promise<NodeHooksResult> {
  await useBackend(backend);
  const runtime = createRuntime();
  const model = createModel(runtime, rowRnnGraph(runtime), { seed: 1 });
  const { train, test } = await digitRows();

  // Trained dense first; then the smallest weights of each kernel, by magnitude, are cut.
  const optimizer = tf.train.adam(0.02);
  await fit(model, train, { epochs: 10, batchSize: 50, optimizer, seed: 1 });
  const dense = (await evaluate(model, test)).accuracy!;

  // #region prune
  const kernels = ['rnn/body/cell/kernel', 'classifier/kernel'];
  const masks = new Map<string, tf.Tensor>();
  for (const name of kernels) {
    const weights = model.params.get(name)!;
    const magnitudes = Float32Array.from(await weights.data(), Math.abs).sort();
    const threshold = magnitudes[Math.floor(magnitudes.length * PRUNED)]!;
    const mask = tf.tidy(() => tf.cast(tf.greaterEqual(tf.abs(weights), threshold), 'float32'));
    const kept = tf.mul(weights, mask);
    weights.assign(kept);
    kept.dispose();
    masks.set(name, mask);
  }
  const cutAccuracy = (await evaluate(model, test)).accuracy!;
  // Fine-tuning with the pruned weights' gradients masked: they stay exactly zero. (With a fresh
  // Adam: its moments for them start, and stay, at zero. An optimizer that already holds momentum
  // for them, or weight decay, would move them: re-apply the masks in `afterUpdate` then.)
  const fineTuner = tf.train.adam(0.01);
  await fit(model, train, {
    epochs: 6,
    batchSize: 50,
    optimizer: fineTuner,
    seed: 2,
    onGradients: (grads) =>
      Object.fromEntries(
        Object.entries(grads).map(([key, grad]) => {
          const mask = masks.get(key);
          return [key, mask === undefined ? grad : tf.mul(grad, mask)];
        }),
      ),
  });
  // #endregion prune
  const { accuracy } = await evaluate(model, test);
  const pruned: NodeHooksResult['pruned'] = [];
  for (const name of kernels) {
    const weights = model.params.get(name)!;
    const values = await weights.data();
    const cut = (await masks.get(name)!.data()).filter((m) => m === 0).length;
    pruned.push({ name, size: values.length, pruned: cut, nonzero: values.filter((v) => v !== 0).length });
    log(
      `${name}: ${cut} of ${values.length} weights pruned, ${values.filter((v) => v !== 0).length} nonzero after training`,
    );
  }
  const percent = (a: number) => `${(a * 100).toFixed(1)}%`;
  log(
    `test accuracy: ${percent(dense)} dense, ${percent(cutAccuracy)} pruned, ${percent(accuracy!)} fine-tuned`,
  );

  // #region profile
  const { hook, nodes } = profiler();
  const { outputs } = await model.run(test.x, { hooks: [hook], report: false });
  for (const node of nodes.values()) {
    const indent = node.parent === undefined ? '  ' : '    ';
    log(`${indent}${node.name} (${node.op}): ${node.calls} calls, [${node.shape}], ${node.ms.toFixed(2)} ms`);
  }
  // #endregion profile

  tf.dispose([
    ...Object.values(train.x),
    train.y,
    ...Object.values(test.x),
    test.y,
    ...Object.values(outputs),
  ]);
  tf.dispose([...masks.values()]);
  optimizer.dispose();
  fineTuner.dispose();
  model.dispose();
  return {
    profile: [...nodes.values()],
    pruned,
    accuracy: { dense, pruned: cutAccuracy, fineTuned: accuracy! },
  };
}
