// The consumer test's CommonJS app: requires every installed @dynn package (their CommonJS
// builds) and does real work with them (work.cjs). Run by scripts/consumer-test.ts.
'use strict';
const assert = require('node:assert/strict');
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { work } = require('./work.cjs');

async function main() {
  const core = require('@dynn/core');
  const packages = {
    '@dynn/core': core,
    '@dynn/datasets': require('@dynn/datasets'),
    '@dynn/early-exit': require('@dynn/early-exit'),
    '@dynn/sorted-net': require('@dynn/sorted-net'),
    '@dynn/moe-router': require('@dynn/moe-router'),
    '@dynn/sparse-attention': require('@dynn/sparse-attention'),
    // ESM only, as vitest is: CommonJS code loads it with import().
    '@dynn/testing': await import('@dynn/testing'),
  };
  if (existsSync(join(__dirname, 'node_modules/@dynn/data-fashion-mnist/package.json'))) {
    packages['@dynn/data-fashion-mnist'] = require('@dynn/data-fashion-mnist');
  }
  // The CommonJS build really is what `require` loads.
  assert.match(require.resolve('@dynn/core'), /index\.cjs$/);
  await work(
    {
      packages,
      core,
      datasets: packages['@dynn/datasets'],
      earlyExit: packages['@dynn/early-exit'],
      sortedNet: packages['@dynn/sorted-net'],
      moeRouter: packages['@dynn/moe-router'],
      sparseAttention: packages['@dynn/sparse-attention'],
      testing: packages['@dynn/testing'],
      tf: require('@tensorflow/tfjs-core'),
      tfl: require('@tensorflow/tfjs-layers'),
      otherCore: await import('@dynn/core'),
    },
    'cjs',
    join(__dirname, 'fixtures-cjs'),
  );
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
