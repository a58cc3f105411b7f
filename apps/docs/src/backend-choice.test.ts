import { DynnError } from '@dynn/core';
import { describe, expect, it } from 'vitest';
import {
  BACKEND_CHOICES,
  backendFromSearch,
  DEFAULT_BACKEND,
  errorMessage,
  searchWithBackend,
} from './backend-choice.js';

describe('backend choice from the page address', () => {
  it('offers the four dynn backends, GPU first', () => {
    expect(BACKEND_CHOICES.map((c) => c.name)).toEqual(['webgpu', 'webgl', 'wasm', 'cpu']);
  });

  it('reads ?backend= and falls back to the default without it', () => {
    expect(backendFromSearch('?backend=webgl')).toEqual({ backend: 'webgl' });
    expect(backendFromSearch('?lang=en&backend=webgpu')).toEqual({ backend: 'webgpu' });
    expect(backendFromSearch('')).toEqual({ backend: DEFAULT_BACKEND });
    expect(backendFromSearch('?backend=')).toEqual({ backend: DEFAULT_BACKEND });
  });

  it('names an unknown backend and the valid ones, using the default', () => {
    const request = backendFromSearch('?backend=cuda');
    expect(request.backend).toBe(DEFAULT_BACKEND);
    expect(request.problem).toMatch(/'cuda'.*webgpu, webgl, wasm, cpu/);
  });

  it('writes the choice into the address, keeping other parameters', () => {
    expect(searchWithBackend('', 'cpu')).toBe('?backend=cpu');
    expect(searchWithBackend('?lang=en&backend=webgl', 'wasm')).toBe('?lang=en&backend=wasm');
  });

  it('tells the visitor to pick another backend when one cannot start', () => {
    const unavailable = new DynnError('BACKEND_UNAVAILABLE', "Backend 'webgpu' could not be initialised.");
    expect(errorMessage(unavailable)).toBe(
      "Backend 'webgpu' could not be initialised. Pick another backend above.",
    );
    expect(errorMessage(new DynnError('MODEL_FILE', 'model.json: bad.'))).toBe('model.json: bad.');
    expect(errorMessage('plain')).toBe('plain');
  });
});
