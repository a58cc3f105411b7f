import { isDynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import {
  calibrationPlot,
  defaultChoice,
  exitLabels,
  fetchCalibration,
  operatingChoices,
  readCalibration,
} from './early-exit-example.js';

const full = { threshold: null, accuracy: 0.9, meanFlops: 4e6, exitHistogram: [0, 0, 100] };
const cheap = { threshold: 0.6, accuracy: 0.8, meanFlops: 1e6, exitHistogram: [60, 30, 10] };
const middle = { threshold: 0.8, accuracy: 0.89, meanFlops: 2e6, exitHistogram: [30, 40, 30] };
const calibration = {
  description: 'a sweep',
  validationImages: 100,
  maxAccuracyDrop: 0.01,
  operatingPoint: middle,
  sweep: {
    criterion: 'maxProb',
    exits: ['exit0', 'exit1'],
    full,
    points: [cheap, middle],
    perExitPoints: [],
    front: [cheap, middle, full],
  },
};

describe('the early-exit example calibration', () => {
  it('reads a calibration file and offers its front, cheapest first, the calibrated point by default', () => {
    const read = readCalibration(JSON.parse(JSON.stringify(calibration)), 'calibration.json');
    const choices = operatingChoices(read);
    expect(choices.map((c) => c.key)).toEqual(['0.6', '0.8', 'off']);
    expect(choices[0]!.label).toBe('max softmax ≥ 0.6 (validation 80.0% at 1.00 MFLOPs)');
    expect(choices[2]!.label).toMatch(/^exits off/);
    expect(defaultChoice(read, choices).key).toBe('0.8');
    expect(exitLabels(read)).toEqual(['exit 1', 'exit 2', 'final']);
  });

  it('labels per-exit thresholds exit by exit', () => {
    const perExit = { ...middle, threshold: [0.9, 0.7], meanFlops: 1.5e6, accuracy: 0.85 };
    const sweep = { ...calibration.sweep, perExitPoints: [perExit], front: [cheap, perExit, middle, full] };
    const read = readCalibration({ ...calibration, sweep, operatingPoint: perExit }, 'calibration.json');
    const choice = defaultChoice(read, operatingChoices(read));
    expect(choice.key).toBe('0.9/0.7');
    expect(choice.label).toBe('max softmax ≥ 0.9 / 0.7 at exits 1 / 2 (validation 85.0% at 1.50 MFLOPs)');
  });

  it('plots the front with the chosen point circled', () => {
    const read = readCalibration(calibration, 'calibration.json');
    const svg = calibrationPlot(read, operatingChoices(read)[1]!);
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('100 held-out images');
    // Three front points and one highlight ring.
    expect(svg.match(/<circle/g)).toHaveLength(4);
  });

  it('refuses malformed files, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [[], /is not a JSON object/],
      [{ ...calibration, sweep: { ...calibration.sweep, exits: [] } }, /sweep\.exits/],
      [{ ...calibration, sweep: { ...calibration.sweep, front: [] } }, /sweep\.front/],
      [{ ...calibration, sweep: { ...calibration.sweep, perExitPoints: undefined } }, /sweep\.perExitPoints/],
      [
        { ...calibration, operatingPoint: { ...middle, threshold: [0.8] } },
        /operatingPoint is not an operating point/,
      ],
      [
        { ...calibration, sweep: { ...calibration.sweep, points: [{ ...cheap, exitHistogram: [1, 2] }] } },
        /sweep\.points\[0\]/,
      ],
      [{ ...calibration, operatingPoint: { ...middle, threshold: 0.7 } }, /not on the sweep's front/],
      [{ ...calibration, maxAccuracyDrop: '1%' }, /maxAccuracyDrop/],
    ];
    for (const [json, pattern] of cases) {
      let caught: unknown;
      try {
        readCalibration(json, 'calibration.json');
      } catch (error) {
        caught = error;
      }
      expect(isDynnError(caught, 'DATA_CORRUPT'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(pattern);
      expect((caught as Error).message).toMatch(/^calibration\.json: /);
    }
  });

  it('fetches a calibration file and reports a missing one', async () => {
    const ok = (async () => new Response(JSON.stringify(calibration))) as unknown as typeof fetch;
    expect((await fetchCalibration('https://example.test/c.json', ok)).operatingPoint).toEqual(middle);
    const missing = (async () => new Response('', { status: 404 })) as unknown as typeof fetch;
    await expect(fetchCalibration('https://example.test/c.json', missing)).rejects.toThrow(
      /c\.json.*HTTP 404/,
    );
  });
});
