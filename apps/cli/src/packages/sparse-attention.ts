import { sparseAttention } from '@dynn/sparse-attention';
import {
  BENCH_SPARSE_ATTENTION_PARTS,
  benchSparseAttentionMarkdown,
  runBenchSparseAttention,
} from '../commands/bench-sparse-attention.js';
import {
  demoSparseAttentionSummary,
  QUICK_DEMO_SPARSE_ATTENTION,
  runDemoSparseAttention,
} from '../commands/demo-sparse-attention.js';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/sparse-attention` adds to `dynn`: its bench (speed and memory, Austen, long-range retrieval) and a demo. */
export const sparseAttentionCli = defineCliContribution({
  name: 'sparse-attention',
  description: 'attention that computes only the query-key blocks a pattern or a router keeps',
  plugins: [sparseAttention()],
  benches: [
    {
      description:
        'one attention layer, dense against each pattern and local + routing heads, at 512 to 8,192 positions: time and peak memory of the forward pass and of a training step; then, over 3 seeds, full vs local vs local + routing attention on Austen at 1,024 characters (bits per character) and on a retrieval task at 2,048 tokens; on wasm',
      options: [
        {
          flags: '--parts <list>',
          description: `what to run, comma-separated (default all: ${BENCH_SPARSE_ATTENTION_PARTS.join(',')})`,
          parse: 'list',
        },
        {
          flags: '--lengths <list>',
          description: 'sequence lengths of the speed sweep (default 512,1024,2048,4096,8192)',
          parse: 'list',
        },
        {
          flags: '--out <dir>',
          description: 'folder for result.json and the time and memory SVGs',
          default: 'reports/sparse-attention',
        },
      ],
      async run({ options, quick, progress, log }) {
        const run = await runBenchSparseAttention(
          {
            quick,
            progress,
            out: options.out as string,
            ...(options.parts === undefined ? {} : { parts: options.parts as string[] }),
            ...(options.lengths === undefined ? {} : { lengths: options.lengths as string[] }),
          },
          log,
        );
        return {
          fields: { ...run.result },
          markdown: (head) => benchSparseAttentionMarkdown(run, head),
          reportDir: run.reportDir,
        };
      },
    },
  ],
  demo: {
    description:
      'train a causal character model with sliding-window and routing attention on Austen, generate text with a KV cache (checked against recomputing), and read the FLOPs its attention computed against dense attention at 256 to 4,096 characters',
    options: [
      {
        flags: '--out <dir>',
        description: 'folder for the report (markdown + result.json)',
        default: 'reports/demo-sparse-attention',
      },
    ],
    async run({ options, quick, progress, out, log }) {
      const run = await runDemoSparseAttention(
        { ...(quick ? QUICK_DEMO_SPARSE_ATTENTION : {}), out: options.out as string, progress },
        log,
      );
      out(demoSparseAttentionSummary(run));
    },
  },
});
