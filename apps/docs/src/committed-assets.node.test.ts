import { readFile } from 'node:fs/promises';
import { loadModel, type Model, type Runtime } from '@dynn/core';
import { describeEachBackend, guardLeaks } from '@dynn/testing';
import { expect, it } from 'vitest';
import { coreExampleRuntime, runCoreExample } from './core-example.js';
import {
  defaultChoice,
  type EarlyExitCalibration,
  earlyExitRuntime,
  operatingChoices,
  readCalibration,
  runEarlyExitExample,
} from './early-exit-example.js';
import { decodeFashionSample, type FashionSample, samplePixelsFile } from './fashion-sample.js';

// The files the training script committed under apps/docs/public/, read from disk. In Node only:
// in a browser, the end-to-end test (e2e/) runs them on the built site.
const publicDir = new URL('../public/', import.meta.url);
const publicUrl = (path: string) => new URL(path, publicDir);

async function readSample(): Promise<FashionSample> {
  const url = publicUrl('data/fashion-mnist-sample.json');
  const manifest: unknown = JSON.parse(await readFile(url, 'utf8'));
  const pixels = new Uint8Array(await readFile(new URL(samplePixelsFile(manifest, url.href), url)));
  return decodeFashionSample(manifest, pixels, url.href);
}

async function readCalibrationFile(): Promise<EarlyExitCalibration> {
  const url = publicUrl('models/fashion-cnn-exits/calibration.json');
  return readCalibration(JSON.parse(await readFile(url, 'utf8')), url.href);
}

async function withModel<T>(runtime: Runtime, name: string, body: (model: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(runtime, publicUrl(`models/${name}/model.json`).href);
  try {
    return await body(model);
  } finally {
    model.dispose();
  }
}

describeEachBackend('the live examples on the committed models', (backend) => {
  guardLeaks();

  it('core: the CNN classifies the 256 sample images, every node computing every row', async () => {
    const sample = await readSample();
    expect(sample).toMatchObject({ count: 256, height: 28, width: 28 });
    const result = await withModel(coreExampleRuntime(), 'fashion-cnn', (model) =>
      runCoreExample(model, sample),
    );
    expect(result.backend).toBe(backend);
    expect(result.predictions).toHaveLength(256);
    // Trained to 87.5% on the 10,000 test images.
    expect(result.accuracy).toBeGreaterThan(0.8);
    expect(result.report.nodes.map((n) => n.name)).toEqual([
      'conv1',
      'pool1',
      'conv2',
      'pool2',
      'conv3',
      'pool3',
      'flatten',
      'classifier',
    ]);
    for (const node of result.report.nodes) expect(node.rows, node.name).toBe(256);
    expect(result.report.flops).toBe(result.report.fullFlops);
    expect(result.ms).toBeGreaterThan(0);
  });

  it('early exit: at the calibrated point, images leave early and later nodes compute fewer rows', async () => {
    const [sample, calibration] = await Promise.all([readSample(), readCalibrationFile()]);
    const choices = operatingChoices(calibration);
    const [calibrated, off] = await withModel(earlyExitRuntime(), 'fashion-cnn-exits', async (model) => [
      await runEarlyExitExample(model, sample, calibration, defaultChoice(calibration, choices)),
      await runEarlyExitExample(model, sample, calibration, choices.find((c) => c.key === 'off')!),
    ]);
    expect(calibrated!.backend).toBe(backend);
    expect(calibrated!.threshold).toBe(calibration.operatingPoint.threshold);
    const { histogram, report } = calibrated!;
    expect(histogram.reduce((a, b) => a + b, 0)).toBe(256);
    expect(histogram.slice(0, -1).reduce((a, b) => a + b, 0)).toBeGreaterThan(64);
    // The final classifier computes only the rows no exit served.
    expect(report.nodes.find((n) => n.name === 'classifier')!.rows).toBe(histogram.at(-1));
    expect(calibrated!.meanFlops).toBeLessThan(0.8 * calibrated!.staticFlops);
    expect(calibrated!.accuracy).toBeGreaterThan(0.8);
    // Exits off: every image through the whole network, exit heads included.
    expect(off!.histogram).toEqual([0, 0, 0, 256]);
    expect(off!.meanFlops).toBeGreaterThan(off!.staticFlops);
    expect(off!.accuracy).toBeGreaterThanOrEqual(calibrated!.accuracy - 0.03);
  });
});
