// Kept apart from fashion-sample.ts (which imports tfjs) so the pages' controls can import it
// without pulling tfjs into every page of the site.

/** How many of the sample's images an example classifies: the visitor picks one. */
export const IMAGE_COUNTS: readonly number[] = [32, 64, 128, 256];

/**
 * The default of {@link IMAGE_COUNTS}: small enough that both examples finish in seconds even on
 * a software WebGPU (no GPU), where a batch of 256 takes tens of seconds.
 */
export const DEFAULT_IMAGE_COUNT = 64;
