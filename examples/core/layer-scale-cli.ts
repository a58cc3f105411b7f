// What the layer-scale example plugin adds to the `dynn` command: a tool (`dynn layer-scale add`),
// a bench (`dynn bench layer-scale`) and a demo (`dynn demo layer-scale`), as one plain object that
// users load with `dynn --plugin <module>`. docs/plugins.md quotes the region;
// examples/plugins.node.test.ts loads this file as `--plugin` does and runs all three.
import { join, resolve } from 'node:path';
import { defineCliContribution, measuredOn } from '@dynn/cli';
import {
  applyPass,
  createModel,
  createRuntime,
  GraphBuilder,
  loadModel,
  type Model,
  type Runtime,
  runPass,
  saveModel,
  useBackend,
} from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { layerScale, main as trainWithScales } from './layer-scale-plugin.js';

/** A model of an MLP, with a Scale after every Dense layer when `scaled`. */
function mlp(runtime: Runtime, scaled: boolean): Model {
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 64]);
  const h = b.add('core.Dense', x, { units: 256, activation: 'relu' }, { name: 'hidden' });
  const graph = b.build({ logits: b.add('core.Dense', h, { units: 10 }, { name: 'head' }) });
  return createModel(runtime, scaled ? runPass(runtime, 'layer-scale.insert', graph, {}).graph : graph);
}

/** FLOPs per row and the median milliseconds of one run of `model` on `x`. */
async function measure(model: Model, x: tf.Tensor, repeats: number) {
  const times: number[] = [];
  let flops = 0;
  for (let i = 0; i <= repeats; i++) {
    const start = performance.now();
    const { outputs, report } = await model.run(x);
    await outputs.logits!.data();
    tf.dispose(Object.values(outputs));
    if (i > 0) times.push(performance.now() - start); // the first run warms up
    flops = report!.flops / x.shape[0]!;
  }
  times.sort((a, b) => a - b);
  return { flops_per_row: flops, ms: times[Math.floor(times.length / 2)]! };
}

// #region cli
export default defineCliContribution({
  name: 'layer-scale', // dynn layer-scale <verb>, dynn bench layer-scale, dynn demo layer-scale
  description: 'LayerScale: a learned per-channel scale after every Dense layer',
  commands: [
    {
      name: 'add',
      description: 'insert a Scale after every Dense layer of a dynn model and save the result',
      arguments: [
        { name: 'model.json', description: 'dynn model file' },
        { name: 'out-dir', description: 'folder to write the scaled model to' },
      ],
      options: [{ flags: '--init <value>', description: 'initial scale', parse: 'number', default: 0.1 }],
      async run({ args, options, out }) {
        // The CLI's own runtime knows dynn's packages only: a command builds one with its plugin.
        const runtime = createRuntime({ plugins: [layerScale()] });
        const model = await loadModel(runtime, resolve(args[0]!));
        // A new model holding copies of the old weights; the scales start at --init.
        const scaled = applyPass(model, 'layer-scale.insert', { init: options.init as number });
        model.dispose();
        const { graph } = scaled;
        try {
          await saveModel(scaled, resolve(args[1]!));
        } finally {
          scaled.dispose();
        }
        const scales = graph.nodes.filter((n) => n.op === 'layer-scale.Scale').length;
        out(`wrote ${join(resolve(args[1]!), 'model.json')} with ${scales} scales\n`);
      },
    },
  ],
  benches: [
    {
      description: 'an MLP with and without scales on wasm: FLOPs per row and time per batch of 256',
      options: [{ flags: '--repeats <n>', description: 'timed runs', parse: 'positive-int', default: 50 }],
      async run({ options, quick, log }) {
        await useBackend('wasm');
        const runtime = createRuntime({ plugins: [layerScale()] });
        const x = tf.randomNormal([256, 64], 0, 1, 'float32', 1);
        const [plain, scaled] = [mlp(runtime, false), mlp(runtime, true)];
        try {
          const repeats = quick ? 2 : (options.repeats as number); // --quick: a smoke run for CI
          log(`timing ${repeats} runs of each model`);
          const fields = {
            rows: 256,
            plain: await measure(plain, x, repeats),
            scaled: await measure(scaled, x, repeats),
          };
          return {
            fields, // the CLI puts them in the envelope: { bench, backend, date, machine, quick, ...fields, error }
            markdown: (head) =>
              [
                `${measuredOn(head)}.`,
                '',
                '| model | FLOPs per row | ms per batch of 256 |',
                '| --- | ---: | ---: |',
                `| MLP | ${fields.plain.flops_per_row} | ${fields.plain.ms.toFixed(2)} |`,
                `| MLP with scales | ${fields.scaled.flops_per_row} | ${fields.scaled.ms.toFixed(2)} |`,
              ].join('\n'),
          };
        } finally {
          tf.dispose([x]);
          plain.dispose();
          scaled.dispose();
        }
      },
    },
  ],
  demo: {
    description: 'trains an MLP with scales on a toy task and prints its compute report',
    async run({ out }) {
      await trainWithScales('wasm', (line) => out(`${line}\n`));
    },
  },
});
// #endregion cli
