import { expect, it } from 'vitest';
import { spreadOf } from './spread.js';

it('spreadOf gives the mean, the sample standard deviation, min and max', () => {
  expect(spreadOf([1, 2, 3])).toEqual({ mean: 2, std: 1, min: 1, max: 3 });
  expect(spreadOf([0.5])).toEqual({ mean: 0.5, std: 0, min: 0.5, max: 0.5 });
});
