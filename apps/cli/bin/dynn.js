#!/usr/bin/env node
// The `dynn` command. A committed file rather than the build output itself, so that npm links it
// into node_modules/.bin on install even before a checkout is built (`npx dynn` in the repository).
import('../dist/bin.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/bin.js')) {
    process.stderr.write('dynn: the CLI is not built yet; run `npm run build` in the repository first.\n');
    process.exitCode = 1;
    return;
  }
  throw error;
});
