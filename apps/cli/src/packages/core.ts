import { benchCoreMarkdown, runBenchCore } from '../commands/bench-core.js';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/core` adds to `dynn` beyond the top-level `inspect`, `predict` and `convert`. */
export const coreCli = defineCliContribution({
  name: 'core',
  description: 'the graph IR, executor and training of @dynn/core',
  benches: [
    {
      description:
        'MLP and demo CNN in dynn vs tfjs-layers on wasm: inference (batch 1, 256) and a training step (batch 64); ' +
        'executor overhead: 200 tiny Dense nodes vs tfjs-layers and a hand-written tf.tidy chain; ' +
        "sparse ops (Gather, ScatterAdd, segment reductions, with gradients) vs tfjs's own where they run",
      options: [
        {
          flags: '--warmup <n>',
          description: 'untimed runs before timing',
          parse: 'positive-int',
          default: 5,
        },
        {
          flags: '--repeats <n>',
          description: 'timed runs per case (the median is reported)',
          parse: 'positive-int',
          default: 20,
        },
      ],
      async run({ options, quick, log }) {
        const timing = quick
          ? { warmup: 1, repeats: 1 }
          : { warmup: options.warmup as number, repeats: options.repeats as number };
        const result = await runBenchCore(timing, (label) => log(`measuring ${label}`), {
          overheadMs: quick ? 300 : 2000,
        });
        return { fields: { ...result }, markdown: (head) => benchCoreMarkdown(result, head) };
      },
    },
  ],
});
