/**
 * Who the moe-router plugin is: its name, its op domain (op types are `moe-router.<Name>`) and its
 * op-set version, which passes record in the graphs they write.
 */
export const MOE_ROUTER_PLUGIN = {
  /** The package. */
  name: '@dynn/moe-router',
  /** The op domain. */
  domain: 'moe-router',
  /** The op-set version of the domain. */
  opset: 1,
} as const;
