/**
 * The recipe every model-writing command leaves in its run folder (recipe.whittle.json): the Recipe format of
 * `whittle run`, so a run can be repeated as it is, with the model and data paths relative to that folder.
 */
import * as path from 'node:path';
import type { ParamSpec } from '../passes/pass';
import { toolName, version } from '../version';
import type { PassName, Recipe, RecipePass } from './types';

/** Parameters whose values are data SPECs: resolved relative to the recipe file. */
export const dataParams = new Set(['data', 'calibData', 'evalData']);

/** A data SPEC's file part (before a `#A:B` range) relative to `dir`; 'random' and absent stay as they are. */
export function relativeSpec(spec: string | undefined, dir: string): string | undefined {
  if (spec === undefined || spec === 'random') return spec;
  const { base, range } = splitRange(spec);
  const rel = path.relative(dir, path.resolve(base)).split(path.sep).join('/');
  return `${rel || '.'}${range}`;
}

/** A data SPEC of a recipe resolved against the recipe's folder; 'random' stays. */
export function resolveSpec(spec: string | undefined, baseDir: string): string | undefined {
  if (spec === undefined || spec === 'random') return spec;
  const { base, range } = splitRange(spec);
  return `${path.resolve(baseDir, base)}${range}`;
}

/** `file#A:B` as its file and its `#A:B` suffix (a `#` followed by anything but a range is part of the name). */
function splitRange(spec: string): { base: string; range: string } {
  const m = /#(\d*:\d*)$/.exec(spec);
  return m ? { base: spec.slice(0, m.index), range: spec.slice(m.index) } : { base: spec, range: '' };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * One pass as a recipe step: the parameters of `table` it ran with (undefined ones and those equal to the
 * table's default left out; values the pass derived that are no parameter of it are not recipe fields), data
 * SPECs made relative to `dir`.
 */
export function recipeStep(pass: PassName, params: Record<string, unknown>, dir: string, table: ParamSpec[]): RecipePass {
  const defaults = new Map(table.map((p) => [p.name, p.default]));
  const step: RecipePass = { pass };
  for (const [k, v] of Object.entries(params)) {
    if (!defaults.has(k) || v === undefined || v === null || same(defaults.get(k), v)) continue;
    step[k] = dataParams.has(k) && typeof v === 'string' ? relativeSpec(v, dir) : v;
  }
  return step;
}

/** What a single-pass command records about its run. */
export interface CommandRecipe {
  /** The run folder the recipe is written to. */
  dir: string;
  source: string;
  sourceSha256?: string;
  data?: string;
  seed?: number;
  ep?: string;
  limit?: number;
  shapes?: Record<string, number[]>;
  passes: RecipePass[];
}

/** The recipe of a command's run, with provenance (tool, version, the source's SHA-256). */
export function commandRecipe(c: CommandRecipe): Recipe {
  return {
    tool: toolName,
    version,
    model: path.relative(c.dir, path.resolve(c.source)).split(path.sep).join('/'),
    ...(c.sourceSha256 ? { sourceSha256: c.sourceSha256 } : {}),
    ...(c.data !== undefined ? { data: relativeSpec(c.data, c.dir) } : {}),
    ...(c.seed !== undefined ? { seed: c.seed } : {}),
    ...(c.ep !== undefined && c.ep !== 'auto' ? { ep: c.ep as Recipe['ep'] } : {}),
    ...(c.limit !== undefined ? { limit: c.limit } : {}),
    ...(c.shapes && Object.keys(c.shapes).length ? { shapes: c.shapes } : {}),
    passes: c.passes,
  };
}

/** A recipe as its file's text. */
export function recipeText(r: Recipe): string {
  return JSON.stringify(r, null, 2) + '\n';
}
