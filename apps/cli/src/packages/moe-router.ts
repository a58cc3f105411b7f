import { moeRouter } from '@dynn/moe-router';
import { defineCliContribution } from '../contribution.js';

/** What `@dynn/moe-router` adds to `dynn`: `moe-router split`, the MoE bench and demo. */
export const moeRouterCli = defineCliContribution({
  name: 'moe-router',
  description: 'mixture-of-experts layers that compute only the experts a token needs',
  plugins: [moeRouter()],
  commands: [],
  benches: [],
});
