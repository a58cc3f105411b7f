// The consumer test's ESM app: imports every installed @dynn package (their ESM builds) and does
// real work with them (work.cjs). Run by scripts/consumer-test.ts in a fresh project.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as core from '@dynn/core';
import * as datasets from '@dynn/datasets';
import * as earlyExit from '@dynn/early-exit';
import * as moeRouter from '@dynn/moe-router';
import * as sortedNet from '@dynn/sorted-net';
import * as sparseAttention from '@dynn/sparse-attention';
import * as testing from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

const require = createRequire(import.meta.url);
const { work } = require('./work.cjs');

const packages = {
  '@dynn/core': core,
  '@dynn/datasets': datasets,
  '@dynn/early-exit': earlyExit,
  '@dynn/sorted-net': sortedNet,
  '@dynn/moe-router': moeRouter,
  '@dynn/sparse-attention': sparseAttention,
  '@dynn/testing': testing,
};
// Packages that may not exist yet in the repository: imported when installed.
for (const name of ['@dynn/data-fashion-mnist', '@dynn/cli']) {
  if (existsSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))) {
    packages[name] = await import(name);
  }
}
// The ESM build really is what `import` loads.
assert.match(fileURLToPath(import.meta.resolve('@dynn/core')), /index\.js$/);

await work(
  {
    packages,
    core,
    datasets,
    earlyExit,
    sortedNet,
    moeRouter,
    sparseAttention,
    testing,
    tf,
    tfl,
    otherCore: require('@dynn/core'),
  },
  'esm',
  fileURLToPath(new URL('./fixtures', import.meta.url)),
);
