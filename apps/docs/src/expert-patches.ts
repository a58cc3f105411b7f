// Draws the moe-router example's images with each patch token tinted by the experts that computed
// it: one vertical stripe per expert (two stripes at k = 2), grey hatching where no expert did.

/** How {@link expertPatchRgba} lays an image out. */
export interface PatchLayout {
  /** Image height and width in pixels. */
  height: number;
  width: number;
  /** Side of a square patch token in pixels; tokens run row by row. */
  patch: number;
  /** Output pixels per image pixel. */
  scale: number;
  /** A colour per expert, `#rrggbb`. */
  colors: readonly string[];
}

function rgb(hex: string): [number, number, number] {
  const value = Number.parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

/** Ink of the garment, over any tint. */
const INK: readonly number[] = [25, 25, 25];
/** A patch no expert computed: light grey, hatched. */
const UNROUTED = [236, 236, 236];
const HATCH = [160, 160, 160];

/**
 * One image as RGBA pixels (`height * scale` rows of `width * scale`), each patch token tinted by
 * the experts that computed it (`experts[token]`, one stripe each, left to right in the order
 * given), dark ink where the image has ink, a white line between patches, and grey hatching on a
 * token no expert computed. `pixels` are the image's grey values, 0 (background) to 255 (ink).
 */
export function expertPatchRgba(
  pixels: ArrayLike<number>,
  experts: readonly (readonly number[])[],
  layout: PatchLayout,
): Uint8ClampedArray<ArrayBuffer> {
  const { height, width, patch, scale } = layout;
  const tints = layout.colors.map((c) => rgb(c).map((v) => Math.round(0.6 * v + 0.4 * 255)));
  const [outW, outH] = [width * scale, height * scale];
  const side = patch * scale;
  const perRow = Math.ceil(width / patch);
  const out = new Uint8ClampedArray(outW * outH * 4);
  for (let Y = 0; Y < outH; Y++) {
    for (let X = 0; X < outW; X++) {
      const [x, y] = [Math.floor(X / scale), Math.floor(Y / scale)];
      const list = experts[Math.floor(y / patch) * perRow + Math.floor(x / patch)] ?? [];
      let base: readonly number[];
      if (list.length === 0) base = (X + Y) % 6 === 0 ? HATCH : UNROUTED;
      else base = tints[list[Math.floor(((X % side) * list.length) / side)]!] ?? UNROUTED;
      const ink = pixels[y * width + x]! / 255;
      const at = (Y * outW + X) * 4;
      const border = X % side === 0 || Y % side === 0;
      for (let c = 0; c < 3; c++) out[at + c] = border ? 255 : base[c]! * (1 - ink) + INK[c]! * ink;
      out[at + 3] = 255;
    }
  }
  return out;
}

/**
 * Every image of a sample drawn by {@link expertPatchRgba} as a PNG data URL, for `<img>` tags.
 * `pixels` holds the images one after another; `expertsOf(i)` gives image `i`'s tokens' experts.
 * Browser only: draws on a canvas.
 */
export function expertPatchUrls(
  pixels: Uint8Array,
  count: number,
  expertsOf: (image: number) => readonly (readonly number[])[],
  layout: PatchLayout,
): string[] {
  const canvas = document.createElement('canvas');
  canvas.width = layout.width * layout.scale;
  canvas.height = layout.height * layout.scale;
  const context = canvas.getContext('2d');
  if (context === null) throw new Error('This browser gives no 2D canvas to draw the images on.');
  const size = layout.width * layout.height;
  const urls: string[] = [];
  for (let i = 0; i < count; i++) {
    const rgba = expertPatchRgba(pixels.subarray(i * size, (i + 1) * size), expertsOf(i), layout);
    context.putImageData(new ImageData(rgba, canvas.width, canvas.height), 0, 0);
    urls.push(canvas.toDataURL('image/png'));
  }
  return urls;
}
