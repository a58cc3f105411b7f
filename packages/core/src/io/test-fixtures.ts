/**
 * Shared fixtures of the model-file tests: a small test plugin whose op has float32 parameters
 * and int32 and bool state, a graph using it between core Dense layers, and in-memory readers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { GraphBuilder } from '../builder.js';
import type { DynnErrorCode } from '../errors.js';
import { isDynnError } from '../errors.js';
import type { Attrs, AttrValue, Graph } from '../ir.js';
import { createModel, type Model } from '../model.js';
import { defineOp } from '../op.js';
import { definePlugin } from '../plugin.js';
import { createRuntime, type Runtime } from '../runtime.js';
import type { ModelReader } from './reader.js';
import { saveModel } from './save-model.js';

/** Multiplies by a learned per-feature weight, a float attribute and a bool mask held as state. */
export const scaleOp = defineOp<{ factor: number; note: AttrValue }>({
  type: 'iotest.Scale',
  version: 1,
  description: 'Multiplies by a learned weight, a factor and a mask.',
  attrs: {
    factor: { kind: 'float', default: 1 },
    note: { kind: 'json', default: null, doc: 'free-form data' },
  },
  inputs: { min: 1 },
  params: (_, [x]) => [
    { name: 'weight', shape: [x!.shape.at(-1) as number], init: { kind: 'normal', mean: 0, std: 1 } },
  ],
  state: (_, [x]) => [
    { name: 'steps', shape: [1], dtype: 'int32', init: { kind: 'zeros' } },
    { name: 'mask', shape: [x!.shape.at(-1) as number], dtype: 'bool', init: { kind: 'ones' } },
  ],
  inferShape: (_, [x]) => [{ shape: x!.shape, dtype: x!.dtype }],
  forward: (ctx, [x]) => [
    tf.tidy(() =>
      tf.mul(tf.mul(x!, ctx.params.weight!), tf.mul(tf.cast(ctx.state.mask!, 'float32'), ctx.attrs.factor)),
    ),
  ],
  flops: (_, [x]) => 3 * x!.reduce((a, b) => a * b, 1),
});

/** The plugin of {@link scaleOp}. */
export const ioTestPlugin = definePlugin({
  name: '@dynn/iotest',
  domain: 'iotest',
  opset: 1,
  ops: [scaleOp],
});

/** A runtime with the core ops and {@link ioTestPlugin}. */
export function testRuntime(): Runtime {
  return createRuntime({ plugins: [ioTestPlugin] });
}

/** `x [batch, 3]` -> Dense(4, relu) -> iotest.Scale (with `scaleAttrs`) -> Dense(2). */
export function testGraph(runtime: Runtime, scaleAttrs: Attrs = { factor: 1.5 }): Graph {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 3]);
  const h = b.add('core.Dense', x, { units: 4, activation: 'relu' }, { name: 'hidden' });
  const s = b.add('iotest.Scale', h, scaleAttrs, { name: 'scale' });
  return b.build({ y: b.add('core.Dense', s, { units: 2 }, { name: 'out' }) });
}

/** A model of {@link testGraph} whose int32 and bool state hold non-default values. */
export function testModel(runtime: Runtime, seed = 1, scaleAttrs?: Attrs): Model {
  const model = createModel(runtime, testGraph(runtime, scaleAttrs), { seed });
  tf.tidy(() => {
    model.state.get('scale/steps')!.assign(tf.tensor1d([seed * 7], 'int32'));
    model.state.get('scale/mask')!.assign(tf.tensor1d([true, false, true, seed % 2 === 0], 'bool'));
  });
  return model;
}

/** The raw bytes of every parameter and state tensor, by name. */
export async function bytesOf(model: Model): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const [name, tensor] of [...model.params, ...model.state]) {
    const data = await tensor.data();
    out.set(name, new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
  }
  return out;
}

/** Saves `model` through tf.io.withSaveHandler and returns the artifacts the handler received. */
export async function savedArtifacts(model: Model): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await saveModel(
    model,
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return captured!;
}

/** A {@link ModelReader} over in-memory model.json text and shards; records which shards were read. */
export class MemoryReader implements ModelReader {
  readonly shardsRead: string[] = [];

  constructor(
    readonly url: string,
    private readonly text: string,
    private readonly shards: Readonly<Record<string, ArrayBuffer>> = {},
  ) {}

  async readModelJson(): Promise<string> {
    return this.text;
  }

  async readShard(path: string): Promise<ArrayBuffer> {
    this.shardsRead.push(path);
    const shard = this.shards[path];
    if (shard === undefined) throw new Error(`no shard ${path}`);
    return shard;
  }
}

/** The model.json and single shard a file save of `artifacts` would write. */
export function modelFiles(artifacts: tf.io.ModelArtifacts): {
  json: Record<string, unknown>;
  shard: ArrayBuffer;
} {
  const json = {
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs }],
  };
  return {
    json: JSON.parse(JSON.stringify(json)),
    shard: tf.io.CompositeArrayBuffer.join(artifacts.weightData!),
  };
}

/** Expects `promise` to reject with a {@link DynnError} of `code` whose message contains every one of `parts`. */
export async function expectDynnError(
  promise: Promise<unknown>,
  code: DynnErrorCode,
  ...parts: string[]
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isDynnError(error), `expected a DynnError, got ${String(error)}`).toBe(true);
  expect(error).toMatchObject({ code });
  for (const part of parts) expect((error as Error).message).toContain(part);
}
