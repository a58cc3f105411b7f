import { describeEachBackend, guardLeaks } from '@dynn/testing';
import { expect, it } from 'vitest';
import { main as layerScale } from './core/layer-scale-plugin.js';

// Every example the docs quote runs here, on every backend, so the docs cannot drift from the code.
describeEachBackend('examples', (backend) => {
  guardLeaks();
  it('core/layer-scale-plugin trains a model with a plugin op inserted by a pass', async () => {
    const lines: string[] = [];
    const { accuracy, flops, params } = await layerScale(backend, (line) => lines.push(line));
    expect(lines[0]).toContain('hidden_scale (layer-scale.Scale)');
    expect(accuracy).toBeGreaterThan(0.85);
    expect(flops).toBeGreaterThan(0);
    // 4 hidden units go with their kernel column, bias, scale and head row: 4 * (4 + 1 + 1 + 2).
    expect(params.before - params.after).toBe(32);
    expect(lines).toContain(
      'channel group 1: hidden/kernel axis 1, hidden/bias axis 0, hidden_scale/gamma axis 0, head/kernel axis 0',
    );
  });
});
