/**
 * `whittle run`: runs a recipe's passes in order, each on the previous one's output, and writes the run
 * folder: the final model (with the chain's provenance), recipe.whittle.json (the recipe normalised, so the
 * folder can be run again), report.json, report.md and report.html, plus each pass's own folder under steps/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../atomicWrite';
import { InputError } from '../errors';
import { detectFormat } from '../formats/detect';
import { OnnxModel } from '../formats/onnx/model';
import { writeOnnx } from '../formats/onnx/write';
import { sha256File } from '../hash';
import { runFolder } from '../passes/runFolder';
import { evaluate, type EvalResult, type Progress } from '../runtime/evaluate';
import { buildReport } from '../report/build';
import { reportHtml, reportMarkdown } from '../report/render';
import type { ReportPareto } from '../report/types';
import { toolName, version } from '../version';
import { CancelledError } from '../../protocol/rpc';
import { recipePasses } from './passes';
import { issuesLine, validateRecipe } from './schema';
import type { Recipe, RecipePass, RecipeResult, RecipeStep } from './types';
import { dataParams, recipeText, relativeSpec, resolveSpec } from './write';

/** A recipe file, or a recipe object with the folder its paths are relative to; `out` overrides the recipe's. */
export type RunRecipeParams = { file: string; out?: string } | { recipe: Recipe; baseDir: string; file?: string; out?: string };

/** The recipe's name: its file name without `.whittle.json` (or `.json`); 'recipe' without a file. */
export function recipeName(file?: string): string {
  return file ? path.basename(file).replace(/(\.whittle)?\.json$/i, '') || 'recipe' : 'recipe';
}

/** Reads and validates a recipe; throws one InputError line naming the file and the JSON path of the first problem. */
export function loadRecipe(p: RunRecipeParams): { recipe: Recipe; baseDir: string; file?: string } {
  let raw: unknown;
  let file: string | undefined;
  let baseDir: string;
  if ('recipe' in p) {
    raw = p.recipe;
    baseDir = path.resolve(p.baseDir);
    file = p.file ? path.resolve(p.file) : undefined;
  } else {
    file = path.resolve(p.file);
    baseDir = path.dirname(file);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new InputError(file, `cannot read the recipe: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new InputError(file, `not valid JSON: ${(err as Error).message}`);
    }
  }
  const issues = validateRecipe(raw, file);
  if (issues.length) throw new InputError(undefined, issuesLine(file, issues));
  return { recipe: raw as Recipe, baseDir, file };
}

/** A step's parameters without the run settings, data SPECs resolved against the recipe's folder. */
function stepParams(step: RecipePass, baseDir: string): Record<string, unknown> {
  const { pass: _pass, data: _data, seed: _seed, ep: _ep, limit: _limit, ...params } = step;
  for (const k of Object.keys(params)) if (dataParams.has(k) && typeof params[k] === 'string') params[k] = resolveSpec(params[k] as string, baseDir);
  return params;
}

/** Calls `progress` at most every 250 ms, and always when the message's step changes. */
function throttled(progress: Progress): Progress {
  let last = 0;
  let lastStep = '';
  return (fraction, message) => {
    const step = message.split(':')[0];
    const now = Date.now();
    if (now - last < 250 && step === lastStep) return;
    last = now;
    lastStep = step;
    progress(fraction, message);
  };
}

/** The drop of `after` against `before` in points: accuracy with labels, else top-1 disagreement. */
function dropOf(before: EvalResult, after: EvalResult): { metric: 'accuracy' | 'top1Agreement'; dropPt: number } {
  if (before.accuracy !== undefined && after.accuracy !== undefined) return { metric: 'accuracy', dropPt: Math.round((before.accuracy - after.accuracy) * 1e6) / 1e4 };
  return { metric: 'top1Agreement', dropPt: Math.round((1 - (after.top1Agreement ?? 0)) * 1e6) / 1e4 };
}

/**
 * The candidates of the last step that searched: prune's --max-drop tries (sparsity against drop) or
 * quantize's fallback tries (layers kept in float against drop), with the one written marked.
 */
function paretoOf(results: Array<Record<string, unknown>>): ReportPareto | undefined {
  for (let i = results.length - 1; i >= 0; i--) {
    const r = results[i];
    const metric = (r.metrics as { accuracy?: unknown } | undefined)?.accuracy ? 'accuracy' : 'top1Agreement';
    const budget = r.budget as { maxDropPt: number; metric: 'accuracy' | 'top1Agreement'; tries: Array<{ sparsity: number; dropPt: number }>; chosen: number } | undefined;
    if (budget) {
      return { x: 'sparsity', y: 'dropPt', metric: budget.metric, maxDropPt: budget.maxDropPt, points: budget.tries.map((t) => ({ label: `${(t.sparsity * 100).toFixed(1)}% sparsity`, x: t.sparsity, y: t.dropPt, chosen: t.sparsity === budget.chosen })) };
    }
    const fb = r.fallback as { maxDropPt: number; tries: Array<{ float: string[]; fullRange?: string[]; dropPt: number }>; float: string[]; fullRange?: Array<{ tensor: string }> } | undefined;
    if (fb) {
      const key = (float: string[], full: string[]) => `${float.join(',')}|${full.join(',')}`;
      const chosenKey = key(fb.float, (fb.fullRange ?? []).map((x) => x.tensor));
      let marked = false;
      const points = fb.tries.map((t) => {
        const chosen = !marked && key(t.float, t.fullRange ?? []) === chosenKey;
        marked ||= chosen;
        return { label: `${t.float.length} layer(s) in float${t.fullRange?.length ? `, ${t.fullRange.length} range(s) widened` : ''}`, x: t.float.length, y: t.dropPt, chosen };
      });
      return { x: 'floatLayers', y: 'dropPt', metric, maxDropPt: fb.maxDropPt, points };
    }
  }
  return undefined;
}

/**
 * Runs a recipe (see Recipe for what its fields mean) and writes its run folder: `out` (the argument, else the
 * recipe's, relative to the recipe file) or `<model dir>/<model name>.whittle/<recipe name>-<stamp>/`. The same
 * recipe and seed give a byte-identical model: its provenance holds the source's SHA-256 and the recipe's
 * settings and passes as written, no time and no absolute path. On failure or cancellation the run folder
 * (and a `.whittle` folder this run created) is removed.
 */
export async function runRecipe(p: RunRecipeParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<RecipeResult> {
  const { recipe, baseDir, file } = loadRecipe(p);
  const report = throttled(progress);
  const source = path.resolve(baseDir, recipe.model);
  if (!fs.existsSync(source)) throw new InputError(file, `/model: ${source} does not exist`);
  const format = detectFormat(source);
  const name = recipeName(file);
  const out = p.out ? path.resolve(p.out) : recipe.out ? path.resolve(baseDir, recipe.out) : undefined;
  const { dir, created } = runFolder(source, name, out);
  const parent = path.dirname(dir);
  const parentCreated = !fs.existsSync(parent);
  const warnings: string[] = [];
  const addWarnings = (ws: unknown, prefix: string) => {
    for (const w of Array.isArray(ws) ? (ws as string[]) : []) if (!warnings.includes(`${prefix}${w}`)) warnings.push(`${prefix}${w}`);
  };
  try {
    fs.mkdirSync(dir, { recursive: true });
    const sourceSha256 = sha256File(source);
    if (recipe.sourceSha256 && recipe.sourceSha256 !== sourceSha256) warnings.push(`the model's SHA-256 is not the one the recipe was written for (${recipe.sourceSha256.slice(0, 12)}...): it changed since`);
    const data = resolveSpec(recipe.data, baseDir);
    const n = recipe.passes.length;
    const steps: RecipeStep[] = [];
    const results: Array<Record<string, unknown>> = [];
    let current = source;
    for (let i = 0; i < n; i++) {
      if (signal?.aborted) throw new CancelledError();
      const step = recipe.passes[i];
      const def = recipePasses[step.pass];
      const params = stepParams(step, baseDir);
      // The chain's budget is the default budget of the passes that take one (not of a fixed N:M pattern).
      if (def.takesMaxDrop && params.maxDrop === undefined && recipe.maxDrop !== undefined && (step.pass !== 'prune' || params.pattern === undefined || params.pattern === 'none')) params.maxDrop = recipe.maxDrop;
      const label = `step ${i + 1}/${n} ${step.pass}`;
      report(i / (n + 1), `${label}: starting`);
      const o = await def.run(
        {
          model: current,
          out: path.join(dir, 'steps', `${i + 1}-${step.pass}`),
          params,
          data: resolveSpec(step.data as string | undefined, baseDir) ?? data,
          seed: (step.seed as number | undefined) ?? recipe.seed,
          ep: (step.ep as Recipe['ep']) ?? recipe.ep,
          limit: (step.limit as number | undefined) ?? recipe.limit,
          shapes: recipe.shapes,
        },
        signal,
        (f, m) => report(f === undefined ? undefined : (i + f) / (n + 1), `${label}: ${m}`),
      );
      steps.push({ pass: step.pass, output: o.output, report: o.report });
      results.push(o.result);
      addWarnings(o.result.warnings, `${label}: `);
      current = o.output;
    }
    if (signal?.aborted) throw new CancelledError();

    // The final model in the run folder, its provenance the whole chain's.
    report(n / (n + 1), 'writing the final model');
    const provenance = JSON.stringify({ data: recipe.data, seed: recipe.seed, ep: recipe.ep, limit: recipe.limit, shapes: recipe.shapes, maxDrop: recipe.maxDrop, passes: recipe.passes });
    let output: string;
    let sizeBytes: { before: number; after: number } | undefined;
    if (format === 'onnx') {
      output = path.join(dir, path.basename(source));
      const m = OnnxModel.open(current);
      try {
        writeOnnx(m, output, { provenance: { sourceSha256, recipe: provenance } });
      } finally {
        m.close();
      }
    } else {
      // TF.js: model.json and its shards side by side, as the last pass wrote them.
      const last = results[n - 1] as { shards?: Array<{ file: string }>; sizeBytes?: { after: number } };
      output = path.join(dir, path.basename(current));
      for (const f of [current, ...(last.shards ?? []).map((s) => s.file)]) fs.copyFileSync(f, path.join(dir, path.basename(f)));
      sizeBytes = { before: (results[0].sizeBytes as { before: number }).before, after: last.sizeBytes?.after ?? 0 };
    }

    const common = { data: data ?? 'random', ep: recipe.ep, limit: recipe.limit, seed: recipe.seed, shapes: recipe.shapes };
    if (!data) warnings.push('no data given: metrics were measured on random inputs, so accuracy is unknown and agreement only indicative');
    report(n / (n + 1), 'evaluating the source');
    const before = await evaluate({ ...common, model: source }, signal, report);
    report(n / (n + 1), 'evaluating the final model');
    const after = await evaluate({ ...common, model: output, reference: source }, signal, report);
    // The chain's own data warnings stand for the steps' (each step said the same of its own input).
    for (const w of after.warnings) if (!warnings.includes(w)) warnings.push(w);
    const chainLevel = new Set(warnings.filter((w) => !/^step \d+\/\d+ /.test(w)));
    for (let k = warnings.length - 1; k >= 0; k--) {
      const bare = warnings[k].replace(/^step \d+\/\d+ \w+: /, '');
      if (bare !== warnings[k] && (chainLevel.has(bare) || (!data && bare.startsWith('no --data given')))) warnings.splice(k, 1);
    }
    const drop = dropOf(before, after);
    if (recipe.maxDrop !== undefined && drop.dropPt > recipe.maxDrop) {
      throw new InputError(file, `/maxDrop: the final model drops ${drop.dropPt} pt (${drop.metric === 'accuracy' ? 'accuracy' : 'top-1 disagreement'}) against the source, over the recipe's budget of ${recipe.maxDrop} pt; nothing was written`);
    }

    const reportData = buildReport({
      title: `Recipe ${name}: ${path.basename(source)}`,
      before: source,
      after: output,
      evalBefore: before,
      evalAfter: after,
      passes: recipe.passes.map(({ pass, ...params }) => ({ pass, params })),
      warnings,
      pareto: paretoOf(results),
      sizeBytes,
    });
    const first = results[0] as { params?: { before: number }; sparsity?: number };
    const last = results[n - 1] as { params?: { after: number }; sparsity?: number };
    const s = reportData.summary;
    const normalised: Recipe = {
      ...(recipe.$schema ? { $schema: recipe.$schema } : {}),
      tool: toolName,
      version,
      model: path.relative(dir, source).split(path.sep).join('/'),
      sourceSha256,
      ...(recipe.data !== undefined ? { data: relativeSpec(data, dir) } : {}),
      ...(recipe.seed !== undefined ? { seed: recipe.seed } : {}),
      ...(recipe.ep !== undefined ? { ep: recipe.ep } : {}),
      ...(recipe.maxDrop !== undefined ? { maxDrop: recipe.maxDrop } : {}),
      ...(recipe.limit !== undefined ? { limit: recipe.limit } : {}),
      ...(recipe.shapes ? { shapes: recipe.shapes } : {}),
      passes: recipe.passes.map((step) => {
        const copy: RecipePass = { ...step };
        for (const k of Object.keys(copy)) if (dataParams.has(k) && typeof copy[k] === 'string') copy[k] = relativeSpec(resolveSpec(copy[k] as string, baseDir), dir);
        return copy;
      }),
    };
    const result: RecipeResult = {
      output,
      sizeBytes: s.sizeBytes,
      params: format === 'onnx' ? s.params : { before: first.params?.before ?? 0, after: last.params?.after ?? 0 },
      sparsity: format === 'onnx' ? s.sparsity.after : (last.sparsity ?? 0),
      metrics: {
        before: { samples: before.samples, ...(before.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
        after: { samples: after.samples, ...(after.accuracy !== undefined ? { accuracy: after.accuracy } : {}) },
        ...(after.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
        ...(after.cosine !== undefined ? { cosine: after.cosine } : {}),
        ...(s.accuracy ? { accuracy: s.accuracy } : {}),
      },
      latencyMs: s.latencyMs,
      ep: after.ep,
      warnings: reportData.warnings,
      ...(file ? { recipe: file } : {}),
      outDir: dir,
      sha256: sha256File(output),
      steps,
      report: path.join(dir, 'report.json'),
      reportMd: path.join(dir, 'report.md'),
      reportHtml: path.join(dir, 'report.html'),
      recipeOut: path.join(dir, 'recipe.whittle.json'),
      ...(recipe.maxDrop !== undefined ? { budget: { maxDropPt: recipe.maxDrop, metric: drop.metric, dropPt: drop.dropPt } } : {}),
      data: after.data,
      reportData,
    };
    writeFileAtomic(result.recipeOut, recipeText(normalised));
    writeFileAtomic(result.reportMd, reportMarkdown(reportData));
    writeFileAtomic(result.reportHtml, reportHtml(reportData));
    writeFileAtomic(result.report, JSON.stringify(result, null, 2) + '\n');
    report(1, 'done');
    return result;
  } catch (err) {
    if (created) fs.rmSync(dir, { recursive: true, force: true });
    if (parentCreated) fs.rmSync(parent, { recursive: true, force: true });
    // Whatever a pass threw when the signal stopped it (an AbortError of a timer or a stream), it was a cancel.
    if (signal?.aborted && !(err instanceof CancelledError)) throw new CancelledError();
    throw err;
  }
}
