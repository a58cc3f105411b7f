import type { Attrs, GraphBuilder } from '@dynn/core';
import { type Pattern, validatePattern } from './pattern.js';
import type { RoutingAttrs } from './routing-attention.js';
import { type ScoreMod, validateScoreMods } from './score-mods.js';
import { type ExtraInput, SPARSE_ATTENTION_OP, type SparseAttentionAttrs } from './sparse-attention-op.js';

/**
 * Options of {@link addSparseAttention}: the layer's attributes (`numHeads` and `keyDim`
 * required, the others at their defaults unless set), the values wired to its optional inputs,
 * and the node's name.
 */
export type SparseAttentionOptions = Partial<
  Omit<SparseAttentionAttrs, 'extraInputs' | 'pattern' | 'scoreMods' | 'routing'>
> & {
  /** Attention heads, routing heads included. */
  numHeads: number;
  /** Size of each query/key head. */
  keyDim: number;
  /** Which pairs the pattern heads keep (default `{ type: 'full' }`). */
  pattern?: Pattern;
  /** Score modifiers of the pattern heads. */
  scoreMods?: ScoreMod[];
  /** Routing heads, or null / omitted for none. */
  routing?: RoutingAttrs | null;
  /** A `[batch, time]` value: 1 for a token, 0 for padding. */
  padding?: string;
  /** A `[batch, time]` int32 value: each position's document id (`document` patterns). */
  documents?: string;
  /** A `[batch]` int32 value: each row's prefix length (`prefix-lm` patterns without `prefix`). */
  prefix?: string;
  /** Node name (default: the builder's). */
  name?: string;
};

/**
 * Adds a `sparse-attention.SparseAttention` node (self-attention of `x` `[batch, time, d]`) to a
 * graph being built and returns its output. The values given as `padding`, `documents` and
 * `prefix` are wired after `x` and named in the node's `extraInputs`. The pattern and score
 * modifiers are checked first: a bad one throws an `INVALID_ATTR` `DynnError` naming the field.
 *
 * @example
 * ```ts
 * const y = addSparseAttention(b, x, {
 *   numHeads: 4, keyDim: 16, blockSize: 32,
 *   pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 256, after: 0 }] },
 *   scoreMods: [{ type: 'alibi' }],
 *   padding: mask,
 * });
 * ```
 */
export function addSparseAttention(
  builder: GraphBuilder,
  x: string,
  options: SparseAttentionOptions,
): string {
  const { padding, documents, prefix, name, ...attrs } = options;
  if (attrs.pattern !== undefined) validatePattern(attrs.pattern);
  if (attrs.scoreMods !== undefined) validateScoreMods(attrs.scoreMods);
  const wired: [ExtraInput, string | undefined][] = [
    ['padding', padding],
    ['documents', documents],
    ['prefix', prefix],
  ];
  const extras = wired.filter((w): w is [ExtraInput, string] => w[1] !== undefined);
  return builder.add(
    SPARSE_ATTENTION_OP,
    [x, ...extras.map(([, value]) => value)],
    { ...attrs, extraInputs: extras.map(([input]) => input) } as Attrs,
    name === undefined ? {} : { name },
  );
}
