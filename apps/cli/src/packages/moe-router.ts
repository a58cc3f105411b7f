import { moeRouter } from '@dynn/moe-router';
import {
  benchKeyValueBottleneckMarkdown,
  QUICK_BENCH_KEY_VALUE_BOTTLENECK,
  runBenchKeyValueBottleneck,
} from '../commands/bench-key-value-bottleneck.js';
import {
  benchMoeRouterMarkdown,
  DEFAULT_IMAGE,
  DEFAULT_SPEED,
  DEFAULT_TEXT,
  QUICK_BENCH_MOE_ROUTER,
  runBenchMoeRouter,
} from '../commands/bench-moe-router.js';
import { QUICK_DEMO_MOE_ROUTER, runDemoMoeRouter } from '../commands/demo-moe-router.js';
import { formatSplitResult, splitModelFile } from '../commands/moe-router-split.js';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/moe-router` adds to `dynn`: `moe-router split`, two benches (the MoE layer, `kv-bottleneck`) and a demo. */
export const moeRouterCli = defineCliContribution({
  name: 'moe-router',
  description: 'mixture-of-experts layers that compute only the experts a token needs',
  plugins: [moeRouter()],
  commands: [
    {
      name: 'split',
      description:
        'turn the dense feed-forward blocks of a model into mixture-of-experts layers (MoEfication, or sparse upcycling with --upcycle), checked to compute the dense model with every expert active',
      arguments: [
        {
          name: 'model.json',
          description: 'dense dynn model file (dynn convert turns a Keras model into one)',
        },
        { name: 'out-dir', description: 'folder to write the mixture-of-experts model to' },
      ],
      options: [
        {
          flags: '--experts <n>',
          description: 'experts per feed-forward block (required)',
          parse: 'positive-int',
        },
        { flags: '--top-k <k>', description: 'experts per token', parse: 'positive-int', default: 2 },
        {
          flags: '--method <m>',
          description:
            'how the hidden neurons are grouped into experts: balanced k-means of their input weights, or in order (default cluster)',
          choices: ['cluster', 'contiguous'],
        },
        {
          flags: '--upcycle',
          description:
            'copy each block into every expert (sparse upcycling; the router then trains from scratch)',
        },
        {
          flags: '--node <name...>',
          description:
            'the first Dense of a block to split, repeatable or comma-separated (default: every block the experts split evenly)',
        },
        {
          flags: '--seed <n>',
          description: 'seed of the clustering or of the upcycled router',
          parse: 'number',
          default: 0,
        },
      ],
      async run({ args, options, out, runtime }) {
        const node = options.node as string | string[] | undefined;
        const result = await splitModelFile(runtime, args[0]!, args[1]!, {
          ...(options.experts === undefined ? {} : { experts: options.experts as number }),
          topK: options.topK as number,
          ...(options.method === undefined ? {} : { method: String(options.method) }),
          upcycle: options.upcycle === true,
          ...(node === undefined ? {} : { nodes: typeof node === 'string' ? [node] : node }),
          seed: options.seed as number,
        });
        out(formatSplitResult(result));
      },
    },
  ],
  benches: [
    {
      description:
        'the MoE layer (8 experts of 1,024, top-2, d_model 256) against a dense FFN of equal parameters and against every expert on every token masked, at 256/1,024/4,096 tokens, forward and training step; then quality over 3 seeds (MoE vs dense of equal active compute vs dense of equal total parameters) on Fashion-MNIST and Austen; on wasm',
      options: [
        {
          flags: '--repeats <n>',
          description: 'timed runs per speed case (median reported)',
          parse: 'positive-int',
          default: DEFAULT_SPEED.repeats,
        },
        {
          flags: '--image-steps <n>',
          description: 'Fashion-MNIST training steps per arm and seed',
          parse: 'positive-int',
          default: DEFAULT_IMAGE.steps,
        },
        {
          flags: '--text-steps <n>',
          description: 'Austen training steps per arm and seed',
          parse: 'positive-int',
          default: DEFAULT_TEXT.steps,
        },
        {
          flags: '--out <dir>',
          description: 'folder for result.json, quality-runs.json and the expert load and co-activation SVGs',
          default: 'reports/moe-router',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchMoeRouter(
          {
            ...(quick
              ? QUICK_BENCH_MOE_ROUTER
              : {
                  speed: { repeats: options.repeats as number },
                  image: { steps: options.imageSteps as number },
                  text: { steps: options.textSteps as number },
                }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchMoeRouterMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
    {
      variant: 'kv-bottleneck',
      description:
        'the discrete key-value bottleneck against a fine-tuned linear probe, class-incremental on Fashion-MNIST (5 tasks of 2 classes, features from an autoencoder trained without labels), 3 seeds, on wasm: accuracy after the last task and forgetting per task',
      options: [
        {
          flags: '--train-images <n>',
          description: 'training images (the first of the 60,000)',
          parse: 'positive-int',
          default: 12_000,
        },
        {
          flags: '--task-epochs <n>',
          description: 'epochs of each arm on each task',
          parse: 'positive-int',
          default: 3,
        },
        {
          flags: '--out <dir>',
          description: 'folder for result.json and the accuracy-on-seen-tasks chart',
          default: 'reports/moe-router-kv',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchKeyValueBottleneck(
          {
            ...(quick
              ? QUICK_BENCH_KEY_VALUE_BOTTLENECK
              : { trainImages: options.trainImages as number, taskEpochs: options.taskEpochs as number }),
            out: options.out as string,
            progress,
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchKeyValueBottleneckMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
  ],
  demo: {
    description:
      'train a top-2-of-8 mixture-of-experts MLP on Fashion-MNIST, then run it dropless, at an inference capacity and top-1: accuracy, per-expert load, dropped tokens, FLOPs, and which experts serve which classes',
    options: [
      {
        flags: '--capacity <factor>',
        description:
          'inference capacity factor compared with dropless (tokens per expert as a multiple of an even share)',
        parse: 'number',
        default: 1,
      },
      {
        flags: '--out <dir>',
        description: 'folder for the report (markdown + SVG)',
        default: 'reports/demo-moe-router',
      },
    ],
    async run({ options, quick, progress, out, log }) {
      const result = await runDemoMoeRouter(
        {
          ...(quick ? QUICK_DEMO_MOE_ROUTER : {}),
          capacity: options.capacity as number,
          out: options.out as string,
          progress,
        },
        log,
      );
      const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
      out(
        [
          `a top-2-of-8 MoE MLP, trained on ${result.trainImages} images (${result.trainSeconds.toFixed(0)} s), measured on ${result.testImages} test images:`,
          ...result.rows.map(
            (r) =>
              `  ${r.setting}: ${pct(r.accuracy)} accuracy, ${pct(r.droppedShare)} of image-expert pairs dropped, ` +
              `${pct(r.unroutedShare)} of images with no expert, ${r.expertMflops.toFixed(4)} expert MFLOPs/image, ` +
              `${r.msPerBatch.toFixed(1)} ms per batch of 256`,
          ),
          `per-expert load (dropless): ${result.expertShare.map(pct).join(' ')}`,
          `report: ${result.reportDir}`,
          '',
        ].join('\n'),
      );
    },
  },
});
