import { describe, expect, it } from 'vitest';
import { formatCount, formatFlops, formatMs, formatPercent } from './format.js';

describe('number formats of the live examples', () => {
  it('gives FLOPs an SI prefix', () => {
    expect(formatFlops(0)).toBe('0 FLOPs');
    expect(formatFlops(999)).toBe('999 FLOPs');
    expect(formatFlops(2_727_936)).toBe('2.73 MFLOPs');
    expect(formatFlops(184_328_832)).toBe('184 MFLOPs');
    expect(formatFlops(1.09e9)).toBe('1.09 GFLOPs');
  });

  it('writes milliseconds, switching to seconds from one second', () => {
    expect(formatMs(12.34)).toBe('12.3 ms');
    expect(formatMs(842.4)).toBe('842 ms');
    expect(formatMs(3210)).toBe('3.21 s');
  });

  it('writes fractions as percentages and counts with separators', () => {
    expect(formatPercent(0.8832)).toBe('88.3%');
    expect(formatPercent(0.5, 0)).toBe('50%');
    expect(formatCount(26682)).toBe('26,682');
  });
});
