/**
 * The `*.whittle.json` recipe schema (JSON Schema draft-07), generated from the passes' parameter tables, and a
 * validator that reports every problem with its JSON pointer. The committed schemas/whittle-recipe.schema.json
 * is this function's output (`npm run schema`; a unit test keeps them equal).
 */
import { flagName, parseParams, type ParamSpec } from '../passes/pass';
import { plannedPasses, recipePasses, stepSettings } from './passes';
import type { RecipeIssue } from './types';

type Json = Record<string, unknown>;

/** The recipe's own top-level fields besides model and passes. */
const topLevel: ParamSpec[] = [
  ...stepSettings,
  { name: 'out', type: 'string', placeholder: 'DIR', help: 'output folder, relative to the recipe file (default <model dir>/<model name>.whittle/<recipe name>-<stamp>/)' },
  { name: 'maxDrop', type: 'number', min: 0, max: 100, placeholder: 'PT', help: 'budget of the whole chain: the largest drop of the final model against the source, in accuracy points (top-1 disagreement points without labels), checked after the last pass; also the default maxDrop of prune and quantize' },
  { name: 'tool', type: 'string', help: 'provenance: the tool that wrote this recipe' },
  { name: 'version', type: 'string', help: "provenance: the writing tool's version" },
  { name: 'sourceSha256', type: 'string', help: "provenance: SHA-256 of the model when the recipe was written (a mismatch is a warning)" },
];

/** The JSON Schema of one parameter. */
function paramSchema(p: ParamSpec): Json {
  const description = p.help;
  const dflt = p.default !== undefined ? { default: p.default } : {};
  switch (p.type) {
    case 'number':
      return { type: 'number', ...(p.min !== undefined ? { minimum: p.min } : {}), ...(p.max !== undefined ? { maximum: p.max } : {}), ...dflt, description };
    case 'boolean':
      return { type: 'boolean', ...dflt, description };
    case 'list':
      return { anyOf: [{ type: 'array', items: { type: 'string' } }, { type: 'string', description: 'comma-separated' }], ...dflt, description };
    case 'enum': {
      const choices = (p.choices ?? []).filter((c) => !p.planned?.includes(c));
      // Numeric choices (bits: '8', '4') may be written as JSON numbers too.
      const numeric = choices.filter((c) => /^-?\d+(\.\d+)?$/.test(c)).map(Number);
      return { enum: [...choices, ...numeric], ...dflt, description };
    }
    default:
      return { type: 'string', ...dflt, description };
  }
}

const properties = (table: ParamSpec[]): Json => Object.fromEntries(table.map((p) => [p.name, paramSchema(p)]));

/** Every parameter a step of this pass takes: the run settings, the pass's table and the command's extras. */
function stepTable(name: string): ParamSpec[] {
  const def = recipePasses[name];
  const seen = new Set<string>();
  return [...stepSettings, ...def.params, ...(def.extra ?? [])].filter((p) => (seen.has(p.name) ? false : (seen.add(p.name), true)));
}

/** The recipe JSON Schema (draft-07). */
export function recipeSchema(): object {
  const names = Object.keys(recipePasses);
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'whittle-recipe.schema.json',
    title: 'Whittle recipe',
    description: 'A model and the compression passes to run on it in order (whittle run <recipe.whittle.json>). Paths are relative to the recipe file.',
    type: 'object',
    required: ['model', 'passes'],
    additionalProperties: false,
    properties: {
      $schema: { type: 'string' },
      model: { type: 'string', description: 'the source model (.onnx or a TF.js model.json), relative to the recipe file' },
      ...properties(topLevel),
      shapes: { type: 'object', description: 'fixed sizes of dynamic inputs, e.g. {"input": [1, 3, 224, 224]}', additionalProperties: { type: 'array', items: { type: 'integer', minimum: 1 } } },
      passes: {
        type: 'array',
        minItems: 1,
        description: 'the passes, run in order, each on the previous one\'s output',
        items: {
          type: 'object',
          required: ['pass'],
          properties: { pass: { enum: names, description: names.map((n) => `${n}: ${recipePasses[n].summary}`).join('; ') } },
          allOf: names.map((n) => ({
            if: { properties: { pass: { const: n } } },
            then: { properties: { pass: { const: n }, ...properties(stepTable(n)) }, additionalProperties: false },
          })),
        },
      },
    },
  };
}

const typeOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

/** Problems of one value against its parameter row (strict JSON types, then the table's own range, choice and check). */
function checkValue(spec: ParamSpec, value: unknown): string | undefined {
  const ok =
    spec.type === 'number'
      ? typeof value === 'number'
      : spec.type === 'boolean'
        ? typeof value === 'boolean'
        : spec.type === 'list'
          ? typeof value === 'string' || (Array.isArray(value) && value.every((x) => typeof x === 'string'))
          : spec.type === 'enum'
            ? typeof value === 'string' || typeof value === 'number'
            : typeof value === 'string';
  if (!ok) return `must be ${spec.type === 'list' ? 'a list of strings' : spec.type === 'enum' ? `one of ${(spec.choices ?? []).filter((c) => !spec.planned?.includes(c)).join(', ')}` : `a ${spec.type}`}, not ${typeOf(value)}`;
  try {
    parseParams([spec], { [spec.name]: value });
    return undefined;
  } catch (err) {
    // parseParams names the CLI flag; a recipe names the field.
    return (err as Error).message.replace(`option --${flagName(spec)} `, '').replace(`--${flagName(spec)} `, '');
  }
}

/**
 * Every problem of a recipe, each with the JSON pointer of the value at fault: not an object, missing or
 * mistyped model or passes, unknown fields and passes, wrong types, values out of range or not among the
 * choices, and parameters that do not go together (e.g. finetune without data).
 */
export function validateRecipe(value: unknown, file?: string): RecipeIssue[] {
  void file;
  const issues: RecipeIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    add('', `a recipe must be a JSON object, not ${typeOf(value)}`);
    return issues;
  }
  const r = value as Json;
  const top = new Map(topLevel.map((p) => [p.name, p]));
  for (const [k, v] of Object.entries(r)) {
    if (k === '$schema' || k === 'model' || k === 'passes') continue;
    if (k === 'shapes') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) add('/shapes', `must be an object of input name to shape, not ${typeOf(v)}`);
      else for (const [name, dims] of Object.entries(v)) if (!Array.isArray(dims) || !dims.every((d) => Number.isSafeInteger(d) && (d as number) >= 1)) add(`/shapes/${pointer(name)}`, 'must be a list of whole numbers of at least 1');
      continue;
    }
    const spec = top.get(k);
    if (!spec) {
      add(`/${pointer(k)}`, `unknown field '${k}' (a recipe has model, data, seed, ep, out, maxDrop, limit, shapes and passes)`);
      continue;
    }
    const problem = checkValue(spec, v);
    if (problem) add(`/${pointer(k)}`, problem);
  }
  if ('$schema' in r && typeof r.$schema !== 'string') add('/$schema', `must be a string, not ${typeOf(r.$schema)}`);
  if (!('model' in r)) add('/model', 'missing: the model to compress (a path relative to the recipe file)');
  else if (typeof r.model !== 'string' || !r.model) add('/model', `must be a path (a non-empty string), not ${typeOf(r.model)}`);
  if (!('passes' in r)) add('/passes', 'missing: the list of passes to run');
  else if (!Array.isArray(r.passes)) add('/passes', `must be a list of passes, not ${typeOf(r.passes)}`);
  else if (r.passes.length === 0) add('/passes', 'must name at least one pass');
  else {
    r.passes.forEach((step: unknown, i: number) => {
      const at = `/passes/${i}`;
      if (typeof step !== 'object' || step === null || Array.isArray(step)) return add(at, `a pass must be an object like {"pass": "prune", ...}, not ${typeOf(step)}`);
      const s = step as Json;
      if (!('pass' in s)) return add(`${at}/pass`, `missing: which pass (${Object.keys(recipePasses).join(', ')})`);
      const name = s.pass;
      if (typeof name !== 'string' || !(name in recipePasses)) {
        const planned = typeof name === 'string' && plannedPasses.includes(name);
        return add(`${at}/pass`, planned ? `pass '${name}' is not available in recipes yet in this version of Whittle` : `unknown pass ${JSON.stringify(name)} (one of ${Object.keys(recipePasses).join(', ')})`);
      }
      const table = new Map(stepTable(name).map((p) => [p.name, p]));
      const before = issues.length;
      for (const [k, v] of Object.entries(s)) {
        if (k === 'pass') continue;
        const spec = table.get(k);
        if (!spec) {
          add(`${at}/${pointer(k)}`, `unknown parameter '${k}' of pass ${name} (one of ${[...table.keys()].join(', ')})`);
          continue;
        }
        const problem = checkValue(spec, v);
        if (problem) add(`${at}/${pointer(k)}`, problem);
      }
      if (issues.length > before) return;
      const def = recipePasses[name];
      const data = (s.data as string | undefined) ?? (r.data as string | undefined);
      const maxDrop = (s.maxDrop as number | undefined) ?? (def.takesMaxDrop ? (r.maxDrop as number | undefined) : undefined);
      const together = def.check?.({ ...s, ...(maxDrop !== undefined ? { maxDrop } : {}) }, { data, maxDrop });
      if (together) add(`${at}/${pointer(together[0])}`, together[1]);
    });
  }
  if (typeof r.maxDrop === 'number' && !r.data && Array.isArray(r.passes) && !r.passes.some((s) => (s as Json | null)?.data)) add('/maxDrop', 'maxDrop needs data: the drop is measured on it');
  return issues;
}

/** A key as a JSON pointer token (RFC 6901). */
function pointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** One line for a recipe's first problem (and how many more), naming the file and the JSON path. */
export function issuesLine(file: string | undefined, issues: RecipeIssue[]): string {
  const first = issues[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''}: ${issues.slice(1, 4).map((i) => i.path || '/').join(', ')})` : '';
  return `${file ? `${file}: ` : ''}${first.path || '/'}: ${first.message}${more}`;
}

