import { createRng } from '@dynn/core';
import {
  type BlockPlan,
  initCentroids,
  type Pattern,
  pairKept,
  patternScope,
  planBlocks,
  planRouting,
} from '@dynn/sparse-attention';

/**
 * One picture of the sparse-attention guide: a pattern on a short sequence, drawn from the
 * package's own code (`pairKept` for the pairs, `planBlocks` for the tiles computed).
 */
export interface PatternPicture {
  /** File name under `docs/results/sparse-attention-patterns/`. */
  file: string;
  /** What it shows: the SVG's title, and the alt text the guide gives it. */
  title: string;
  /** The pattern drawn. */
  pattern: Pattern;
  /** Document id of each position (`document` patterns). */
  documents?: readonly number[];
  /** 1 a token, 0 padding, per position. */
  padding?: readonly number[];
}

/** Positions drawn on each axis, and positions per block. */
export const PICTURE_LENGTH = 64;
export const PICTURE_BLOCK = 8;

/** Where the pictures go, from the repository root. */
export const PICTURE_DIR = 'docs/results/sparse-attention-patterns';

/** Document ids of three documents of 20, 28 and 16 positions. */
const THREE_DOCUMENTS = Array.from({ length: PICTURE_LENGTH }, (_, i) => (i < 20 ? 0 : i < 48 ? 1 : 2));

const causal: Pattern = { type: 'causal' };

/** The pictures of the guide, in its order. */
export const PATTERN_PICTURES: readonly PatternPicture[] = [
  { file: 'causal.svg', title: 'causal', pattern: causal },
  {
    file: 'sliding-window.svg',
    title: 'causal sliding window of 16 (each query and the 15 keys before it)',
    pattern: { type: 'and', of: [causal, { type: 'window', before: 15, after: 0 }] },
  },
  {
    file: 'window.svg',
    title: 'bidirectional window, 8 keys on each side',
    pattern: { type: 'window', before: 8, after: 8 },
  },
  {
    file: 'dilated.svg',
    title: 'causal dilated window: every 3rd key of the 24 before each query',
    pattern: { type: 'dilated', before: 24, after: 0, dilation: 3 },
  },
  {
    file: 'global.svg',
    title: 'window of 4 on each side, or global tokens 0 and 32',
    pattern: {
      type: 'or',
      of: [
        { type: 'window', before: 4, after: 4 },
        { type: 'global', tokens: [0, 32] },
      ],
    },
  },
  {
    file: 'attention-sinks.svg',
    title: 'causal: a window of 8, or the first 4 tokens (attention sinks)',
    pattern: {
      type: 'and',
      of: [
        causal,
        {
          type: 'or',
          of: [
            { type: 'window', before: 7, after: 0 },
            { type: 'global', tokens: [0, 1, 2, 3] },
          ],
        },
      ],
    },
  },
  {
    file: 'random.svg',
    title: '2 random key blocks per query block',
    pattern: { type: 'random', blocks: 2, seed: 1 },
  },
  {
    file: 'fixed.svg',
    title: "DeepSpeed's fixed: windows of 2 blocks, the last block of each window global",
    pattern: { type: 'fixed', localBlocks: 2, globalBlocks: 1 },
  },
  {
    file: 'bigbird.svg',
    title: 'BigBird: a window of 3 blocks, block 0 global, 1 random block',
    pattern: { type: 'bigbird', windowBlocks: 3, globalBlocks: 1, randomBlocks: 1, seed: 1 },
  },
  {
    file: 'longformer.svg',
    title: 'Longformer (blocks): a window of 3 blocks, block 0 global',
    pattern: { type: 'longformer', windowBlocks: 3, globalBlocks: [0] },
  },
  {
    file: 'variable.svg',
    title: "DeepSpeed's variable: windows of 1, 2, then 4 blocks, block 0 global",
    pattern: { type: 'variable', localWindows: [1, 2, 4], globalBlocks: [0] },
  },
  {
    file: 'document.svg',
    title: 'causal within documents of 20, 28 and 16 positions',
    pattern: { type: 'and', of: [causal, { type: 'document' }] },
    documents: THREE_DOCUMENTS,
  },
  {
    file: 'prefix-lm.svg',
    title: 'prefix-LM: bidirectional over a prefix of 24, causal after it',
    pattern: { type: 'prefix-lm', prefix: 24 },
  },
  {
    file: 'padding.svg',
    title: 'causal sliding window of 16, the last 10 positions padding',
    pattern: { type: 'and', of: [causal, { type: 'window', before: 15, after: 0 }] },
    padding: Array.from({ length: PICTURE_LENGTH }, (_, i) => (i < PICTURE_LENGTH - 10 ? 1 : 0)),
  },
];

/** Pixels per position, and the margin that holds the axis labels. */
const CELL = 4;
const MARGIN = 16;
const SIZE = PICTURE_LENGTH * CELL;
const KEPT = '#3451b2';
const COMPUTED = '#c9d4f5';
const GRID = '#e2e2e3';
/** Colours of the routing picture's clusters. */
const CLUSTER_COLORS = ['#3451b2', '#d1701a', '#2e8b57', '#b8336a'];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Runs of `true` in a row: `[start, length]` pairs, so a row of kept pairs is a few rectangles. */
function runs(row: readonly boolean[]): [number, number][] {
  const out: [number, number][] = [];
  let start = -1;
  row.forEach((on, j) => {
    if (on && start < 0) start = j;
    if (!on && start >= 0) {
      out.push([start, j - start]);
      start = -1;
    }
  });
  if (start >= 0) out.push([start, row.length - start]);
  return out;
}

/** An SVG frame: white background, block grid, axis labels; `body` draws inside it. */
function frame(title: string, body: string[]): string {
  const grid: string[] = [];
  for (let p = 0; p <= PICTURE_LENGTH; p += PICTURE_BLOCK) {
    const at = MARGIN + p * CELL;
    grid.push(`M${at} ${MARGIN}V${MARGIN + SIZE}M${MARGIN} ${at}H${MARGIN + SIZE}`);
  }
  const full = SIZE + MARGIN + 2;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${full}" height="${full}" viewBox="0 0 ${full} ${full}" font-family="sans-serif" font-size="10">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${full}" height="${full}" fill="#fff"/>`,
    `<text x="${MARGIN}" y="11" fill="#555">keys →</text>`,
    // Read bottom to top, so its arrow points down the query axis.
    `<text x="11" y="${MARGIN}" fill="#555" text-anchor="end" transform="rotate(-90 11 ${MARGIN})">← queries</text>`,
    ...body,
    `<path d="${grid.join('')}" stroke="${GRID}" stroke-width="0.5" fill="none"/>`,
    '</svg>',
    '',
  ].join('\n');
}

/** The tiles a plan computes: `[queryBlock, keyBlock]` of every kept slot of its one row. */
function computedTiles(plan: BlockPlan): [number, number][] {
  const tiles: [number, number][] = [];
  for (let q = 0; q < plan.queryBlocks; q++) {
    for (let s = 0; s < plan.kept; s++) {
      const block = plan.slots[q * plan.kept + s]!;
      if (block < plan.keyBlocks) tiles.push([q, block]);
    }
  }
  return tiles;
}

/** Which pairs a picture's pattern keeps, padding applied, and the tiles its plan computes. */
export function pictureCells(picture: PatternPicture): { kept: boolean[][]; tiles: [number, number][] } {
  const n = PICTURE_LENGTH;
  const documents = picture.documents ? Int32Array.from(picture.documents) : undefined;
  const scope = patternScope({
    blockSize: PICTURE_BLOCK,
    length: n,
    start: 0,
    ...(documents ? { documents } : {}),
  });
  const token = (p: number) => picture.padding === undefined || picture.padding[p] !== 0;
  const kept = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => token(i) && token(j) && pairKept(picture.pattern, scope, i, j)),
  );
  const plan = planBlocks({
    pattern: picture.pattern,
    blockSize: PICTURE_BLOCK,
    queries: n,
    keys: n,
    ...(documents ? { documents } : {}),
    ...(picture.padding ? { padding: picture.padding } : {}),
  });
  return { kept, tiles: computedTiles(plan) };
}

/**
 * The SVG of a pattern picture: one square per (query, key) pair of a 64-position sequence, dark
 * where the pattern keeps the pair, light where the plan computes the pair's tile but masks the
 * pair, white where nothing is computed; grid lines at block boundaries (8 positions).
 */
export function patternSvg(picture: PatternPicture): string {
  const { kept, tiles } = pictureCells(picture);
  const tile = PICTURE_BLOCK * CELL;
  const body = [
    ...tiles.map(
      ([q, k]) =>
        `<rect x="${MARGIN + k * tile}" y="${MARGIN + q * tile}" width="${tile}" height="${tile}" fill="${COMPUTED}"/>`,
    ),
    ...kept.flatMap((row, i) =>
      runs(row).map(
        ([j, length]) =>
          `<rect x="${MARGIN + j * CELL}" y="${MARGIN + i * CELL}" width="${length * CELL}" height="${CELL}" fill="${KEPT}"/>`,
      ),
    ),
  ];
  return frame(picture.title, body);
}

/** The routing picture: clusters, tokens per window, and the seed of its random vectors. */
export const ROUTING_PICTURE = {
  file: 'routing.svg',
  title: 'causal routing: 4 clusters, windows of 8 tokens, for random vectors',
  clusters: 4,
  window: 8,
  dim: 8,
  seed: 3,
} as const;

/**
 * The pairs causal routing heads attend to on 64 positions of random unit vectors (seeded), as
 * `planRouting` plans them: for each query, the key tokens of its windows, each coloured by the
 * key's cluster (index into the 4 colours), -1 where the pair is not computed.
 */
export function routingCells(): number[][] {
  const n = PICTURE_LENGTH;
  const { clusters, window, dim, seed } = ROUTING_PICTURE;
  const rng = createRng(seed);
  // Unit vectors, as the routing heads' shared query-key vectors are.
  const vectors = new Float32Array(n * dim);
  for (let t = 0; t < n; t++) {
    const v = Array.from({ length: dim }, () => rng.normal());
    const norm = Math.hypot(...v);
    v.forEach((x, j) => {
      vectors[t * dim + j] = x / norm;
    });
  }
  const shape = { batch: 1, heads: 1, time: n, dim };
  const plan = planRouting(vectors, initCentroids(vectors, shape, clusters, seed), shape, {
    heads: 1,
    clusters,
    window,
    causal: true,
    decay: 0.99,
    commitment: 0,
  });
  const cells = Array.from({ length: n }, () => new Array<number>(n).fill(-1));
  for (let w = 0; w < plan.windows; w++) {
    for (let q = 0; q < plan.queriesPerWindow; q++) {
      const query = plan.slotToken[w * plan.queriesPerWindow + q]!;
      if (query < 0) continue;
      for (let k = 0; k < plan.keysPerWindow; k++) {
        const masked =
          plan.mask !== undefined &&
          plan.mask[(w * plan.queriesPerWindow + q) * plan.keysPerWindow + k] !== 0;
        if (masked) continue;
        const key = plan.keyIndex[w * plan.keysPerWindow + k]!;
        cells[query]![key] = plan.assignment[key]!;
      }
    }
  }
  return cells;
}

/** The SVG of {@link ROUTING_PICTURE}: each attended pair coloured by its key's cluster. */
export function routingSvg(): string {
  const cells = routingCells();
  const body = cells.flatMap((row, i) =>
    CLUSTER_COLORS.flatMap((color, c) =>
      runs(row.map((v) => v === c)).map(
        ([j, length]) =>
          `<rect x="${MARGIN + j * CELL}" y="${MARGIN + i * CELL}" width="${length * CELL}" height="${CELL}" fill="${color}"/>`,
      ),
    ),
  );
  return frame(ROUTING_PICTURE.title, body);
}

/** Every picture's file name and SVG text. */
export function allPictures(): { file: string; svg: string }[] {
  return [
    ...PATTERN_PICTURES.map((picture) => ({ file: picture.file, svg: patternSvg(picture) })),
    { file: ROUTING_PICTURE.file, svg: routingSvg() },
  ];
}
