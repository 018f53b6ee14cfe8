import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ModelOrigin } from '../protocol/analysis';

/**
 * Where a model written by Whittle came from, read from its run folder: `report.json` (whose `output` must be
 * this model) and `recipe.whittle.json` (the source and the pass). Undefined for any other model, or when the
 * source is gone, so the Inspector simply shows no comparison.
 */
export function readOrigin(modelFile: string): ModelOrigin | undefined {
  const dir = path.dirname(path.resolve(modelFile));
  const json = (name: string): Record<string, unknown> | undefined => {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  const report = json('report.json');
  const recipe = json('recipe.whittle.json') as { source?: { file?: string }; steps?: Array<{ pass?: string }> } | undefined;
  const source = recipe?.source?.file;
  if (!report || !source || typeof report.output !== 'string' || path.resolve(report.output) !== path.resolve(modelFile) || !fs.existsSync(source)) return undefined;
  const pass = recipe.steps?.[0]?.pass ?? 'unknown';
  const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : '?');
  const summary = pass === 'quantize' ? `quantized (${String(report.mode)})` : pass === 'prune' ? `pruned to ${pct(report.sparsity)} sparsity` : pass;
  const activations = Array.isArray(report.activations) ? (report.activations as ModelOrigin['activations']) : undefined;
  const structured = report.structured as { groups?: Array<{ removedRows?: Record<string, number[]> }> } | undefined;
  const removedRows = structured?.groups ? Object.assign({}, ...structured.groups.map((g) => g.removedRows ?? {})) : undefined;
  return { source, pass, summary, ...(activations ? { activations } : {}), ...(removedRows && Object.keys(removedRows).length ? { removedRows } : {}) };
}
