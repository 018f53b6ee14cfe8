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
  // recipe.whittle.json is a Recipe (src/core/recipe/types.ts): the model relative to the recipe and its passes.
  // Recipes written before that had {source: {file}, steps}; they are still read.
  const recipe = json('recipe.whittle.json') as { source?: { file?: string }; steps?: Array<{ pass?: string }>; model?: string; passes?: Array<{ pass?: string }> } | undefined;
  const source = typeof recipe?.model === 'string' ? path.resolve(dir, recipe.model) : recipe?.source?.file;
  if (!report || !recipe || !source || typeof report.output !== 'string' || path.resolve(report.output) !== path.resolve(modelFile) || !fs.existsSync(source)) return undefined;
  const passes = (recipe.passes ?? recipe.steps ?? []).map((s) => s?.pass ?? 'unknown');
  // A chain (whittle run): the report is the whole chain's; the first pass names the kind of change only when alone.
  const pass = passes.length > 1 ? 'recipe' : (passes[0] ?? 'unknown');
  const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : '?');
  const groups = (report.structured as { groups?: Array<{ channels?: number; kept?: number }> } | undefined)?.groups;
  const channels = groups?.reduce((a, g) => a + (g.channels ?? 0), 0) ?? 0;
  const kept = groups?.reduce((a, g) => a + (g.kept ?? 0), 0) ?? 0;
  const summary =
    pass === 'recipe'
      ? `${passes.join(' + ')}${typeof report.sparsity === 'number' ? ` (${pct(report.sparsity)} sparsity)` : ''}`
      : pass === 'quantize'
      ? `quantized (${String(report.mode ?? report.dtype)})`
      : pass === 'prune' && groups
        ? `structured: removed ${channels - kept} of ${channels} channels in ${groups.length} group${groups.length === 1 ? '' : 's'}`
        : pass === 'prune'
          ? `pruned to ${pct(report.sparsity)} sparsity`
          : pass;
  const activations = Array.isArray(report.activations) ? (report.activations as ModelOrigin['activations']) : undefined;
  const ranges = Array.isArray(report.ranges) ? (report.ranges as NonNullable<ModelOrigin['ranges']>).filter((r) => r.histogram) : undefined;
  const removedRows = removedChannels(report);
  return { source, pass, summary, ...(activations ? { activations } : {}), ...(ranges?.length ? { ranges } : {}), ...(Object.keys(removedRows).length ? { removedRows } : {}) };
}

interface ReportLayer {
  layer?: string;
  op?: string;
  weight?: string;
  shapeBefore?: number[];
  removedChannels?: number[];
}

/**
 * Per layer, the output channels a structured prune removed, from report.json: each layer's `removedChannels`
 * or, in reports written before that field, the channel groups' `removed` indices of the member that is the
 * layer's weight along its output axis (`<weight>[axis A @offset]`; only for ops whose output axis the report
 * implies: Conv, ConvTranspose, MatMul).
 */
export function removedChannels(report: Record<string, unknown>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  const layers = Array.isArray(report.layers) ? (report.layers as ReportLayer[]) : [];
  const structured = report.structured as { groups?: Array<{ removed?: number[]; members?: string[] }> } | undefined;
  if (!structured?.groups) return out;
  for (const l of layers) {
    if (!l.layer || !l.shapeBefore) continue;
    if (Array.isArray(l.removedChannels)) {
      if (l.removedChannels.length) out[l.layer] = [...l.removedChannels].sort((a, b) => a - b);
      continue;
    }
    const axis = l.op === 'Conv' ? 0 : l.op === 'ConvTranspose' ? 1 : l.op === 'MatMul' ? l.shapeBefore.length - 1 : -1;
    if (axis < 0 || !l.weight) continue;
    const rows = new Set<number>();
    for (const g of structured.groups) {
      for (const m of g.members ?? []) {
        const hit = /^(.*)\[axis (\d+)(?: @(\d+))?(?: x(\d+))?\]$/.exec(m);
        if (!hit || hit[1] !== l.weight || Number(hit[2]) !== axis || (hit[4] && Number(hit[4]) > 1)) continue;
        for (const u of g.removed ?? []) rows.add(Number(hit[3] ?? 0) + u);
      }
    }
    if (rows.size) out[l.layer] = [...rows].sort((a, b) => a - b);
  }
  return out;
}
