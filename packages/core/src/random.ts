/**
 * A small seeded pseudo-random generator (mulberry32 for uniforms, Box-Muller for normals).
 * dynn uses it wherever results must be reproducible across runs and backends: weight
 * initialisers, shuffling, dropout masks. The same seed gives the same numbers everywhere.
 */
export interface Rng {
  /** A uniform float in [0, 1). */
  next(): number;
  /** A standard normal sample. */
  normal(): number;
  /** A uniform integer in [0, n). */
  int(n: number): number;
  /** A new generator whose stream is independent of this one's, derived deterministically. */
  fork(): Rng;
}

/** Creates a seeded generator. Any 32-bit integer is a valid seed. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  let spareNormal: number | undefined;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    normal() {
      if (spareNormal !== undefined) {
        const value = spareNormal;
        spareNormal = undefined;
        return value;
      }
      // Box-Muller; 1 - next() keeps the logarithm's argument in (0, 1].
      const radius = Math.sqrt(-2 * Math.log(1 - next()));
      const angle = 2 * Math.PI * next();
      spareNormal = radius * Math.sin(angle);
      return radius * Math.cos(angle);
    },
    int(n: number) {
      return Math.floor(next() * n);
    },
    fork() {
      return createRng(Math.floor(next() * 4294967296));
    },
  };
}

/**
 * Derives a seed from a base seed and a name (FNV-1a hash of the name), so a node's or a
 * tensor's random stream depends only on the run's seed and its own name.
 */
export function seedFor(seed: number, name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (seed ^ hash) >>> 0;
}

/** The indices 0..size-1 in a random order drawn from `rng` (Fisher-Yates): seeded shuffles and splits. */
export function shuffledIndices(size: number, rng: Rng): Int32Array {
  const order = Int32Array.from({ length: size }, (_, i) => i);
  for (let i = size - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
