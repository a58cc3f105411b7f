/**
 * Draws the pictures of the sparse-attention guide (docs/sparse-attention.md) into
 * `docs/results/sparse-attention-patterns/`: each pattern on a 64-position sequence, from the
 * package's own `pairKept` (the pairs kept) and `planBlocks` (the tiles computed), and the pairs
 * causal routing heads attend to for random vectors, from `planRouting`. The drawing is
 * `apps/docs/src/pattern-pictures.ts`; `pattern-pictures.node.test.ts` fails when a committed
 * picture is not what it draws now, so rerun this when a pattern's meaning or a picture changes.
 * From the repository root:
 *
 *     npx tsx --tsconfig tsconfig.base.json apps/docs/scripts/draw-sparse-attention-patterns.ts
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allPictures, PICTURE_DIR } from '../src/pattern-pictures.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = join(root, PICTURE_DIR);

async function main(): Promise<void> {
  await mkdir(dir, { recursive: true });
  const pictures = allPictures();
  // Pictures no longer drawn are removed, so the folder holds exactly what the guide shows.
  for (const file of await readdir(dir)) {
    if (!pictures.some((p) => p.file === file)) await rm(join(dir, file));
  }
  for (const { file, svg } of pictures) await writeFile(join(dir, file), svg);
  console.log(`wrote ${pictures.length} pictures to ${PICTURE_DIR}`);
}

await main();
