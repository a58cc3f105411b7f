import { describeEachBackend, guardLeaks } from '@dynn/testing';
import { expect, it } from 'vitest';
import { main as layerScale } from './core/layer-scale-plugin.js';

// Every example the docs quote runs here, on every backend, so the docs cannot drift from the code.
describeEachBackend('examples', (backend) => {
  guardLeaks();
  it('core/layer-scale-plugin trains a model with a plugin op inserted by a pass', async () => {
    const lines: string[] = [];
    const { accuracy, flops } = await layerScale(backend, (line) => lines.push(line));
    expect(lines[0]).toContain('hidden_scale (layer-scale.Scale)');
    expect(accuracy).toBeGreaterThan(0.85);
    expect(flops).toBeGreaterThan(0);
  });
});
