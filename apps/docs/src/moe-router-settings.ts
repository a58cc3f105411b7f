// The moe-router example's fixed choices, kept apart from moe-router-example.ts (which imports
// tfjs) so the page's controls and the training script share them without pulling tfjs in.

/** Experts in the example model's MoE layer. */
export const MOE_EXPERTS = 8;

/** Side of a patch token in pixels: a 28x28 image is 4x4 tokens of 7x7. */
export const MOE_PATCH = 7;

/** Experts per token the page offers (the model trained with 2; 8 is every expert on every token). */
export const MOE_KS: readonly number[] = [1, 2, 4, 8];

/** Inference capacity factors the page offers; 0 is dropless (no limit). */
export const MOE_CAPACITY_FACTORS: readonly number[] = [0, 2, 1.25, 1, 0.5];

/** Images per batch the settings table was measured with: the page's default. */
export const MOE_MEASURE_BATCH = 64;

/**
 * One colour per expert (Tableau 10), for the patches an expert computed and its load bar. Each
 * stays readable under dark ink and apart from the others.
 */
export const EXPERT_COLORS: readonly string[] = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#b07aa1',
  '#edc948',
  '#76b7b2',
  '#9c755f',
];

/** A capacity factor as the page names it: `dropless` for 0. */
export function capacityLabel(capacityFactor: number): string {
  return capacityFactor === 0 ? 'dropless' : `${capacityFactor}`;
}
