/**
 * The Compress wizard's goal presets, as data: each is a list of recipe passes whose parameters are named as
 * the CLI flags in camelCase (the passes' ParamSpec tables), so a preset is exactly what a user could have
 * written in a *.whittle.json by hand. test/unit/presets.test.ts checks every preset against the parameter
 * tables and the recipe schema.
 */

/** One pass of a preset (the shape of a recipe's RecipePass). */
export interface PresetPass {
  pass: 'prune' | 'quantize' | 'finetune' | 'distill';
  [param: string]: unknown;
}

/** A goal preset. */
export interface Preset {
  id: string;
  /** What the wizard shows. */
  label: string;
  /** One line: what it does and what it costs. */
  detail: string;
  /** Recipe-level accuracy budget in points (top-1 agreement without labels), when the goal has one. */
  maxDrop?: number;
  /** True when the preset needs real data to mean anything (calibration or an accuracy budget). */
  wantsData: boolean;
  passes: PresetPass[];
}

/** The presets, in the order the wizard lists them. */
export const presets: readonly Preset[] = [
  {
    id: 'smallest-1pct',
    label: 'Smallest file within 1% accuracy',
    detail: 'prune globally as far as the metric allows (0.5 pt), then static int8 with float fallback for the worst layers (0.5 pt)',
    maxDrop: 1,
    wantsData: true,
    passes: [
      { pass: 'prune', sparsity: 0.9, scope: 'global', maxDrop: 0.5 },
      { pass: 'quantize', mode: 'static', calibration: 'percentile', maxDrop: 0.5 },
    ],
  },
  {
    id: 'fastest',
    label: 'Fastest on this machine',
    detail: 'remove 30% of the channels (a smaller graph, really faster), then static int8 (QDQ), the fastest onnxruntime CPU kernels',
    wantsData: true,
    passes: [
      { pass: 'prune', structured: 'channels', sparsity: 0.3 },
      { pass: 'quantize', mode: 'static', calibration: 'minmax' },
    ],
  },
  {
    id: 'int8-cpu',
    label: 'int8 for CPU',
    detail: 'static int8 weights and activations (QDQ), calibrated on the data: about 4x smaller',
    wantsData: true,
    passes: [{ pass: 'quantize', mode: 'static', calibration: 'minmax' }],
  },
  {
    id: 'int4-weights',
    label: 'int4 weights',
    detail: 'weight-only int4 in blocks of 32 (MatMulNBits for MatMul/Gemm): about 7x smaller MatMul weights, activations stay float',
    wantsData: false,
    passes: [{ pass: 'quantize', mode: 'weight-only', bits: '4', block: 32 }],
  },
  {
    id: 'sparse-50',
    label: '50% sparse',
    detail: 'zero the smallest 50% of the weights in every layer (magnitude): compresses well, same dense file size',
    wantsData: false,
    passes: [{ pass: 'prune', sparsity: 0.5, scope: 'layer', method: 'magnitude' }],
  },
];

/** A preset by id, or undefined. */
export function presetById(id: string): Preset | undefined {
  return presets.find((p) => p.id === id);
}

/**
 * The recipe a preset makes for a model (a relative path from where the recipe is saved), with data and seed.
 * No `$schema`: the extension validates *.whittle.json by file name, and a URL would send the editor fetching.
 */
export function presetRecipe(preset: Preset, model: string, data: string, extra: { seed?: number; limit?: number } = {}): {
  model: string;
  data: string;
  seed: number;
  limit?: number;
  maxDrop?: number;
  passes: PresetPass[];
} {
  return {
    model,
    data,
    seed: extra.seed ?? 0,
    ...(extra.limit !== undefined ? { limit: extra.limit } : {}),
    ...(preset.maxDrop !== undefined ? { maxDrop: preset.maxDrop } : {}),
    passes: preset.passes.map((p) => ({ ...p })),
  };
}
