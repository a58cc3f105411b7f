import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  allPictures,
  PATTERN_PICTURES,
  PICTURE_DIR,
  PICTURE_LENGTH,
  pictureCells,
  routingCells,
} from './pattern-pictures.js';

// The sparse-attention guide's pictures are drawn from the package's code by
// scripts/draw-sparse-attention-patterns.ts and committed: these fail when a committed picture is
// not what the code draws now (a pattern's meaning changed, or the drawing did).
const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = `${root}${PICTURE_DIR}/`;
const REDRAW = 'npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/draw-sparse-attention-patterns.ts';

const count = (cells: boolean[][]) => cells.flat().filter(Boolean).length;
const picture = (file: string) => PATTERN_PICTURES.find((p) => p.file === file)!;

describe('the sparse-attention pattern pictures', () => {
  it('are committed as drawn now, and no others', () => {
    const pictures = allPictures();
    expect(readdirSync(dir).sort(), `redraw them: ${REDRAW}`).toEqual(pictures.map((p) => p.file).sort());
    for (const { file, svg } of pictures) {
      expect(readFileSync(`${dir}${file}`, 'utf8') === svg, `${file} is stale; redraw it: ${REDRAW}`).toBe(
        true,
      );
    }
  });

  it('are each shown by the guide', () => {
    const guide = readFileSync(`${root}docs/sparse-attention.md`, 'utf8');
    for (const { file } of allPictures()) {
      expect(guide, file).toContain(`results/sparse-attention-patterns/${file}`);
    }
  });

  it('draw the pairs the patterns keep and the tiles their plans compute', () => {
    const n = PICTURE_LENGTH;
    const causal = pictureCells(picture('causal.svg'));
    expect(count(causal.kept)).toBe((n * (n + 1)) / 2);
    // 8 x 8 blocks: the lower triangle of tiles, the diagonal included.
    expect(causal.tiles).toHaveLength(36);
    // The window keeps 16 keys per query (fewer for the first 15).
    const window = pictureCells(picture('sliding-window.svg'));
    expect(count(window.kept)).toBe(16 * n - (15 * 16) / 2);
    // Every kept pair lies in a computed tile.
    for (const p of PATTERN_PICTURES) {
      const { kept, tiles } = pictureCells(p);
      const computed = new Set(tiles.map(([q, k]) => `${q},${k}`));
      kept.forEach((row, i) => {
        row.forEach((on, j) => {
          if (on)
            expect(computed.has(`${Math.floor(i / 8)},${Math.floor(j / 8)}`), `${p.file} ${i},${j}`).toBe(
              true,
            );
        });
      });
    }
    // Padding: no pair of the last 10 positions.
    const padded = pictureCells(picture('padding.svg'));
    expect(
      padded.kept
        .slice(n - 10)
        .flat()
        .some(Boolean),
    ).toBe(false);
    expect(padded.kept.flatMap((row) => row.slice(n - 10)).some(Boolean)).toBe(false);
  });

  it('draw causal routing: each query attends to itself and earlier keys of its own cluster', () => {
    const cells = routingCells();
    cells.forEach((row, i) => {
      const cluster = row[i]!;
      expect(cluster, `query ${i} attends to itself`).toBeGreaterThanOrEqual(0);
      row.forEach((c, j) => {
        if (c >= 0) {
          expect(j).toBeLessThanOrEqual(i);
          expect(c).toBe(cluster);
        }
      });
    });
  });
});
