import { createRuntime, type Runtime } from '@dynn/core';
import { earlyExit } from '@dynn/early-exit';

/** The runtime every CLI command loads models with: the core ops plus every dynn plugin. */
export function cliRuntime(): Runtime {
  return createRuntime({ plugins: [earlyExit()] });
}
