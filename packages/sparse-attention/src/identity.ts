/**
 * Who the sparse-attention plugin is: its name, its op domain (op types are
 * `sparse-attention.<Name>`) and its op-set version, which passes record in the graphs they write.
 */
export const SPARSE_ATTENTION_PLUGIN = {
  /** The package. */
  name: '@dynn/sparse-attention',
  /** The op domain. */
  domain: 'sparse-attention',
  /** The op-set version of the domain. */
  opset: 1,
} as const;
