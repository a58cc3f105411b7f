// The real work the consumer test does with the installed packages, shared by esm.mjs (which
// imports every package) and cjs.cjs (which requires them): the entry scripts load the packages
// in their module format and pass them in, so each format's build is exercised end to end.
'use strict';
const assert = require('node:assert/strict');
const { mkdir, writeFile } = require('node:fs/promises');
const { join } = require('node:path');

/** Largest absolute difference between two tensors' values. */
async function maxAbsDiff(a, b) {
  assert.deepEqual(a.shape, b.shape, `shapes differ: [${a.shape}] vs [${b.shape}]`);
  const [x, y] = [await a.data(), await b.data()];
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
  return max;
}

async function accuracy(tf, logits, labels) {
  const predicted = tf.argMax(logits, -1);
  const [p, y] = [await predicted.data(), await labels.data()];
  predicted.dispose();
  return p.filter((v, i) => v === y[i]).length / p.length;
}

/** Writes what tfjs-layers' `model.save` hands a save handler as model.json + weights.bin. */
function layersFileWriter(tf, dir) {
  return tf.io.withSaveHandler(async (artifacts) => {
    await mkdir(dir, { recursive: true });
    const data = Array.isArray(artifacts.weightData)
      ? tf.io.concatenateArrayBuffers(artifacts.weightData)
      : artifacts.weightData;
    const modelJson = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy,
      weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
    };
    await writeFile(join(dir, 'model.json'), JSON.stringify(modelJson));
    await writeFile(join(dir, 'weights.bin'), Buffer.from(data));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  });
}

/**
 * @param m the loaded modules: `packages` (every @dynn package by name), `core`, `earlyExit`,
 *   `sortedNet`, `moeRouter`, `sparseAttention`, `datasets`, `testing`, `tf` (tfjs-core), `tfl`
 *   (tfjs-layers)
 * @param label `esm` or `cjs`, printed before each step
 * @param outDir where the model files (the CLI's fixtures) go
 */
async function work(m, label, outDir) {
  const { core, earlyExit: ee, datasets, testing, tf, tfl } = m;
  const step = (text) => console.log(`[${label}] ${text}`);

  for (const [name, mod] of Object.entries(m.packages)) {
    const keys = Object.keys(mod).filter((k) => k !== 'default' && k !== '__esModule');
    assert.ok(keys.length > 0, `${name} exports nothing`);
    const undefinedExports = keys.filter((k) => mod[k] === undefined);
    assert.deepEqual(undefinedExports, [], `${name}: exports that are undefined`);
    step(`${name}: ${keys.length} exports`);
  }

  // An optional backend that is not installed names its install command.
  await assert.rejects(
    core.useBackend('webgl'),
    (error) =>
      core.isDynnError(error, 'BACKEND_UNAVAILABLE') &&
      error.message.includes('npm install @tensorflow/tfjs-backend-webgl'),
  );
  step("useBackend('webgl') without its package: BACKEND_UNAVAILABLE with the install command");

  await core.useBackend('wasm');
  assert.equal(core.activeBackend(), 'wasm');
  // dynn and the app see the same tfjs: the backend dynn chose is the app's backend.
  assert.equal(tf.getBackend(), 'wasm', "the app's tfjs does not see dynn's backend: two tfjs copies?");
  step('wasm backend active, one tfjs instance');

  // Real data, a real model, real training.
  const digits = await datasets.loadDigits();
  const order = core.shuffledIndices(digits.count, core.createRng(7));
  const train = digits.toTensors(order.subarray(0, 1200));
  const test = digits.toTensors(order.subarray(1200, digits.count));
  const runtime = core.createRuntime({ plugins: [ee.earlyExit()] });
  const b = new core.GraphBuilder(runtime);
  let h = b.input('pixels', 'float32', ['batch', 64]);
  h = b.add('core.Dense', h, { units: 32, activation: 'relu' }, { name: 'hidden1' });
  h = b.add('core.Dense', h, { units: 32, activation: 'relu' }, { name: 'hidden2' });
  const backbone = b.build({ logits: b.add('core.Dense', h, { units: 10 }, { name: 'classifier' }) });
  const model = core.createModel(runtime, backbone, { seed: 1 });
  const optimizer = tf.train.adam(1e-2);
  await core.fit(model, { x: train.features, y: train.labels }, { epochs: 4, batchSize: 32, optimizer });
  optimizer.dispose();
  const run = await model.run(test.features);
  const acc = await accuracy(tf, run.outputs.logits, test.labels);
  assert.ok(acc > 0.8, `test accuracy after training is ${acc}`);
  assert.ok(run.report.flops > 0, 'the compute report counts no FLOPs');
  step(`trained an MLP on the UCI digits on wasm: test accuracy ${(acc * 100).toFixed(1)}%`);

  // Save, load, same outputs.
  const modelDir = join(outDir, 'dynn-model');
  await core.saveModel(model, modelDir);
  const loaded = await core.loadModel(runtime, join(modelDir, 'model.json'));
  const again = await loaded.run(test.features);
  assert.equal(await maxAbsDiff(run.outputs.logits, again.outputs.logits), 0, 'loaded model differs');
  step(`saved to ${modelDir} and loaded back: identical outputs`);

  // A tfjs-layers model, saved as tfjs files, imported: outputs equal tfjs-layers' own.
  const sequential = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [64], units: 16, activation: 'relu', name: 'dense1' }),
      tfl.layers.dense({ units: 10, activation: 'softmax', name: 'dense2' }),
    ],
  });
  const layersDir = join(outDir, 'layers-model');
  await sequential.save(layersFileWriter(tf, layersDir));
  const imported = await core.importLayersModel(runtime, join(layersDir, 'model.json'));
  const expected = sequential.predict(test.features);
  const importedRun = await imported.run(test.features);
  const importedOut = Object.values(importedRun.outputs)[0];
  const diff = await maxAbsDiff(expected, importedOut);
  assert.ok(diff < 1e-5, `imported model differs from tfjs-layers by ${diff}`);
  step(`imported a tfjs-layers model from ${layersDir}: max difference ${diff.toExponential(1)}`);

  // Early exits: insert, train, run dynamically.
  const { graph } = core.runPass(runtime, 'early-exit.insert-exits', backbone, {
    at: ['hidden1'],
    head: 'linear',
    classes: 10,
  });
  const multi = core.createModel(runtime, graph, { seed: 1 });
  const multiOptimizer = tf.train.adam(1e-2);
  await core.fit(
    multi,
    { x: train.features, y: train.labels },
    { epochs: 3, batchSize: 32, optimizer: multiOptimizer, loss: ee.multiExitObjective() },
  );
  multiOptimizer.dispose();
  const dynamic = await multi.run(test.features, {
    outputs: ['logits'],
    options: ee.exitRunOptions({ criterion: 'maxProb', thresholds: 0.9 }),
  });
  const full = await ee.staticModel(multi).run(test.features);
  const served = dynamic.report.servedBy.logits;
  assert.equal(served.length, test.features.shape[0]);
  assert.ok(dynamic.report.flops < full.report.flops, 'the exit saved no FLOPs');
  step(
    `early exit after hidden1: ${served.filter((by) => by !== 'logits').length} of ${served.length} rows left early, ` +
      `${((1 - dynamic.report.flops / full.report.flops) * 100).toFixed(0)}% of the FLOPs saved`,
  );

  // Nested networks: nest a small residual CNN on the digits, train it with sorted training,
  // recalibrate batch norm, run a narrower and shallower sub-network, export it and load it with a
  // runtime that has no sorted-net plugin.
  const sn = m.sortedNet;
  const image = (features) => tf.reshape(features, [-1, 8, 8, 1]);
  const trainImages = image(train.features);
  const testImages = image(test.features);
  const nestRuntime = core.createRuntime({ plugins: [sn.sortedNet()] });
  const cnn = core.createModel(
    nestRuntime,
    sn.residualCnnGraph(nestRuntime, { size: 8, widths: [8, 16], blocks: 1 }),
    { seed: 1 },
  );
  const nested = await sn.nestModel(cnn, { multiple: 2, sort: 'none' });
  const nesting = sn.describeNesting(nested.graph);
  assert.ok(nesting.knobs.length > 0 && nesting.stages.length === 2, 'nothing nested');
  const nestedOptimizer = tf.train.adam(1e-2);
  await core.fit(
    nested,
    { x: trainImages, y: train.labels },
    {
      epochs: 1,
      batchSize: 64,
      optimizer: nestedOptimizer,
      windows: sn.sortedWindows({ widths: [0.5, 1], depths: [0, 1], perStep: 2 }),
      loss: sn.sortedObjective(),
    },
  );
  nestedOptimizer.dispose();
  const sub = { width: 0.5, depth: 0 };
  const calibrated = await sn.calibrateBatchNorm(nested, [sub, {}], { x: trainImages });
  const fullRun = await calibrated.run(testImages);
  const subRun = await calibrated.run(testImages, { options: sn.subNetworkOptions(sub) });
  assert.ok(subRun.report.flops < 0.5 * fullRun.report.flops, 'the sub-network computed no less');
  const exported = core.runPass(nestRuntime, 'sorted-net.export', calibrated, sub);
  const plain = core.createModel(core.createRuntime(), exported.graph, { weights: exported.weights });
  assert.ok(
    plain.graph.nodes.every((n) => n.op.startsWith('core.')),
    'the export holds ops other than core ones',
  );
  const plainRun = await plain.run(testImages);
  const exportDiff = await maxAbsDiff(plainRun.outputs.logits, subRun.outputs.logits);
  assert.ok(exportDiff < 1e-4, `the exported sub-network differs from the nested run by ${exportDiff}`);
  // The CLI's fixture: a saved nested model for `dynn sorted-net export`.
  await core.saveModel(calibrated, join(outDir, 'nested-model'));
  step(
    `sorted-net: ${nesting.knobs.length} width knobs; ${sn.subNetworkKey(sub)} runs ` +
      `${((subRun.report.flops / fullRun.report.flops) * 100).toFixed(0)}% of the full network's FLOPs; ` +
      `exported (${plain.paramCount} of ${calibrated.paramCount} parameters), max difference ${exportDiff.toExponential(1)}`,
  );
  for (const r of [fullRun, subRun, plainRun]) tf.dispose(Object.values(r.outputs));
  tf.dispose([trainImages, testImages]);
  for (const model of [cnn, nested, calibrated, plain]) model.dispose();

  // Mixture of experts: a top-2-of-4 MoE layer trained on the digits; each expert computes only its
  // tokens, k and the inference capacity change per call, and the model saves and loads.
  const mr = m.moeRouter;
  const moeRuntime = core.createRuntime({ plugins: [mr.moeRouter()] });
  const mb = new core.GraphBuilder(moeRuntime);
  const token = mb.add('core.Dense', mb.input('pixels', 'float32', ['batch', 64]), {
    units: 16,
    activation: 'relu',
  });
  const moe = mr.addMoeLayer(mb, moeRuntime, token, {
    name: 'moe',
    experts: 4,
    expert: { hidden: 16 },
    k: 2,
    capacityFactor: 1.25,
    balanceLoss: 0.01,
  });
  const mixed = mb.add('core.Add', [token, moe]);
  const moeModel = core.createModel(
    moeRuntime,
    mb.build({ logits: mb.add('core.Dense', mixed, { units: 10 }) }),
    {
      seed: 1,
    },
  );
  const moeOptimizer = tf.train.adam(1e-2);
  await core.fit(
    moeModel,
    { x: train.features, y: train.labels },
    { epochs: 3, batchSize: 64, optimizer: moeOptimizer },
  );
  moeOptimizer.dispose();
  const top2 = await moeModel.run(test.features, { options: mr.moeOptions({ recordAssignment: true }) });
  const top1 = await moeModel.run(test.features, { options: mr.moeOptions({ k: 1 }) });
  const capped = await moeModel.run(test.features, { options: mr.moeOptions({ capacityFactor: 0.5 }) });
  const moeStats = (r) => r.report.nodes.find((n) => n.name === 'moe').stats;
  const expertFlops = (r) =>
    r.report.nodes.filter((n) => n.name.startsWith('moe/experts/')).reduce((sum, n) => sum + n.flops, 0);
  const tokens = test.features.shape[0];
  const load2 = moeStats(top2).load;
  assert.equal(
    load2.reduce((a, b) => a + b, 0),
    2 * tokens,
    'dropless top-2 did not send every token to two experts',
  );
  assert.equal(moeStats(top2).assignment.length, tokens);
  assert.ok(
    Math.abs(expertFlops(top1) - expertFlops(top2) / 2) < 1e-6 * expertFlops(top2),
    'top-1 is not half of top-2',
  );
  assert.ok(moeStats(capped).dropped > 0, 'a capacity factor of 0.5 dropped nothing');
  const moeAcc = await accuracy(tf, top2.outputs.logits, test.labels);
  assert.ok(moeAcc > 0.6, `MoE test accuracy after training is ${moeAcc}`);
  const moeDir = join(outDir, 'moe-model');
  await core.saveModel(moeModel, moeDir);
  const moeLoaded = await core.loadModel(moeRuntime, join(moeDir, 'model.json'));
  const moeAgain = await moeLoaded.run(test.features);
  assert.equal(await maxAbsDiff(top2.outputs.logits, moeAgain.outputs.logits), 0, 'loaded MoE model differs');
  step(
    `moe-router: top-2 of 4 experts, test accuracy ${(moeAcc * 100).toFixed(1)}%, load ${load2.join('/')}; ` +
      `top-1 halves the experts' FLOPs; capacity 0.5 dropped ${moeStats(capped).dropped} pairs; saved and loaded`,
  );
  for (const r of [top2, top1, capped, moeAgain]) tf.dispose(Object.values(r.outputs));
  for (const model of [moeModel, moeLoaded]) model.dispose();

  // The discrete key-value bottleneck on the digits' pixels: keys by k-means, values by SGD.
  const kb = new core.GraphBuilder(moeRuntime);
  const kvLogits = kb.add(
    mr.KEY_VALUE_BOTTLENECK_OP,
    kb.input('pixels', 'float32', ['batch', 64]),
    { heads: 8, keysPerHead: 16, keySize: 4, valueSize: 10 },
    { name: 'kv' },
  );
  const kvModel = core.createModel(moeRuntime, kb.build({ logits: kvLogits }), { seed: 1 });
  await mr.initKeyValueKeys(kvModel, 'kv', train.features, { iterations: 5, seed: 1 });
  const sgd = tf.train.sgd(1);
  await core.fit(
    kvModel,
    { x: train.features, y: train.labels },
    { epochs: 2, batchSize: 32, optimizer: sgd },
  );
  sgd.dispose();
  const kvRun = await kvModel.run(test.features);
  const kvAcc = await accuracy(tf, kvRun.outputs.logits, test.labels);
  const keysUsed = kvRun.report.nodes.find((n) => n.name === 'kv').stats.keysUsed;
  assert.ok(kvAcc > 0.5, `key-value bottleneck test accuracy is ${kvAcc}`);
  assert.equal(keysUsed.length, 8);
  step(
    `key-value bottleneck: test accuracy ${(kvAcc * 100).toFixed(1)}%, keys used per head ${keysUsed.join('/')}`,
  );
  tf.dispose(Object.values(kvRun.outputs));
  kvModel.dispose();

  await sparseAttentionWork(m, step, outDir);

  // @dynn/testing helpers outside vitest (the package is ESM only, as vitest is).
  const seeded = testing.seededNormal([2, 3], { seed: 1 });
  assert.deepEqual(seeded.shape, [2, 3]);
  seeded.dispose();
  step('@dynn/testing seededNormal');

  if (m.packages['@dynn/data-fashion-mnist']) {
    const fashion = m.packages['@dynn/data-fashion-mnist'];
    assert.equal(typeof fashion.loadFashionMnist, 'function');
    step('@dynn/data-fashion-mnist loads');
  }

  // Errors from this copy of @dynn/core are recognised by the other module format's copy.
  if (m.otherCore) {
    const foreign = new m.otherCore.DynnError('INVALID_INPUT', 'from the other build');
    assert.ok(core.isDynnError(foreign, 'INVALID_INPUT'), 'isDynnError misses an error of the other build');
    assert.ok(foreign instanceof core.DynnError, 'instanceof DynnError misses an error of the other build');
    assert.equal(m.otherCore.activeBackend(), 'wasm', "the other build's tfjs is another instance");
    step('errors and tfjs shared with the other module format');
  }

  // The CLI's fixtures: an input for `dynn predict`.
  const firstRows = tf.slice(test.features, [0, 0], [3, 64]);
  const rows = await firstRows.array();
  firstRows.dispose();
  await writeFile(join(outDir, 'input.json'), JSON.stringify(rows));
  tf.dispose([train.features, train.labels, test.features, test.labels, expected]);
  for (const r of [run, again, importedRun, dynamic, full]) tf.dispose(Object.values(r.outputs));
  step('done');
}

/**
 * Sparse attention: a causal layer of two window heads (a learned relative-position bias) and one
 * routing head learns to copy the token 4 positions back; the report counts the tiles it kept, a
 * session decoding one token per run gives what a run over the whole sequence gives, and the
 * model saves and loads (the CLI inspects the file).
 */
async function sparseAttentionWork(m, step, outDir) {
  const { core, tf } = m;
  const sa = m.sparseAttention;
  const vocab = 8;
  const length = 32;
  const back = 4;
  const runtime = core.createRuntime({ plugins: [sa.sparseAttention()] });
  const b = new core.GraphBuilder(runtime);
  const tokens = b.input('tokens', 'int32', ['batch', 'time']);
  const h = b.add('core.Embedding', tokens, { inputDim: vocab, outputDim: 16 }, { name: 'embed' });
  const attended = sa.addSparseAttention(b, h, {
    name: 'attention',
    numHeads: 3,
    keyDim: 8,
    blockSize: 8,
    pattern: { type: 'and', of: [{ type: 'causal' }, { type: 'window', before: 7, after: 0 }] },
    scoreMods: [{ type: 'relative-bias', buckets: 16, maxDistance: 32, bidirectional: false }],
    routing: { heads: 1, clusters: 2, window: 8, causal: true, decay: 0.9, commitment: 1e-4 },
  });
  const mixed = b.add('core.Add', [h, attended]);
  const logits = b.add('core.Dense', mixed, { units: vocab }, { name: 'head' });
  const model = core.createModel(runtime, b.build({ logits }), { seed: 1 });
  // Random tokens; the target at t is the token at t - 4 (the token itself for the first 4).
  const batch = (rows, seed) => {
    const rng = core.createRng(seed);
    const x = Int32Array.from({ length: rows * length }, () => rng.int(vocab));
    const y = x.map((_, i) => (i % length >= back ? x[i - back] : x[i]));
    return { x: tf.tensor2d(x, [rows, length], 'int32'), y: tf.tensor2d(y, [rows, length], 'int32') };
  };
  const optimizer = tf.train.adam(1e-2);
  const trainer = new core.Trainer(model, { loss: 'sparseCategoricalCrossentropy', optimizer });
  for (let s = 0; s < 80; s++) {
    const { x, y } = batch(16, s + 1);
    await trainer.step(x, y, s);
    tf.dispose([x, y]);
  }
  trainer.dispose();
  optimizer.dispose();
  const test = batch(32, 999);
  const run = await model.run(test.x);
  const copied = await accuracy(tf, run.outputs.logits, test.y);
  assert.ok(copied > 0.8, `sparse attention copies the token 4 back ${copied} of the time`);
  const stats = run.report.nodes.find((n) => n.name === 'attention').stats;
  assert.ok(stats.keptTiles < stats.denseTiles, `kept ${stats.keptTiles} of ${stats.denseTiles} tiles`);
  assert.equal(
    stats.clusterSizes.reduce((a, c) => a + c, 0),
    32 * length,
  );
  // A session: the first 20 tokens in one run, then one per run; the last position's logits agree.
  const first = tf.slice(test.x, [0, 0], [1, length]);
  const sequence = Array.from(await first.data());
  first.dispose();
  const session = model.session();
  let last;
  for (const [from, to] of [[0, 20], ...Array.from({ length: length - 20 }, (_, k) => [20 + k, 21 + k])]) {
    const input = tf.tensor2d(sequence.slice(from, to), [1, to - from], 'int32');
    tf.dispose(last);
    last = await session.predict(input);
    input.dispose();
  }
  session.dispose();
  const whole = tf.tensor2d(sequence, [1, length], 'int32');
  const full = await model.predict(whole);
  const lastFull = tf.slice(full, [0, length - 1, 0], [1, 1, vocab]);
  const decodeDiff = await maxAbsDiff(last, lastFull);
  assert.ok(decodeDiff < 1e-4, `decoding in a session differs by ${decodeDiff}`);
  const dir = join(outDir, 'sparse-attention-model');
  await core.saveModel(model, dir);
  const loaded = await core.loadModel(runtime, join(dir, 'model.json'));
  const again = await loaded.run(test.x);
  assert.equal(
    await maxAbsDiff(run.outputs.logits, again.outputs.logits),
    0,
    'loaded sparse-attention model differs',
  );
  step(
    `sparse-attention: copies the token 4 back ${(copied * 100).toFixed(1)}% of the time, ` +
      `${stats.keptTiles} of ${stats.denseTiles} tiles kept; session decoding within ${decodeDiff.toExponential(1)}; saved and loaded`,
  );
  tf.dispose([
    test.x,
    test.y,
    whole,
    full,
    lastFull,
    last,
    ...Object.values(run.outputs),
    ...Object.values(again.outputs),
  ]);
  for (const mod of [model, loaded]) mod.dispose();
}

module.exports = { work };
