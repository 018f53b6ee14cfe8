import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../atomicWrite';
import { OnnxModel, isParameter } from '../formats/onnx/model';
import { sha256File, writeOnnx } from '../formats/onnx/write';
import { externalFiles, gzipBytes, modelBytes, runFolder } from './runFolder';
import type { EpName } from '../runtime/ep';
import { evaluate, type EvalResult, type Progress } from '../runtime/evaluate';
import { commandRecipe, recipeStep, recipeText } from '../recipe/write';
import { CancelledError } from '../../protocol/rpc';
import { InputError } from '../errors';
import { parseParams, type ModelFigures } from './pass';
import { prunePass, type LayerPruneSummary, type PruneOptions, type PruneReport } from './prune/unstructured';

/** What `whittle prune` takes: the pass's parameters (raw or parsed; they are validated here) and the run's own. */
export interface PruneParams extends Partial<Omit<PruneOptions, 'exclude'>> {
  model: string;
  exclude?: string[] | string;
  /** Evaluation data (--data SPEC); 'random' with a warning when absent. */
  data?: string;
  out?: string;
  ep?: EpName;
  limit?: number;
  seed?: number;
  shapes?: Record<string, number[]>;
}

/** Accuracy and sample count of one model on the data (defined with the write-command contract). */
export type { ModelFigures };

/**
 * The CLI contract object of a command that writes a model (DESIGN.md section 7), for prune. `sizeBytes`
 * adds `gzip` (the pruned file gzipped, level 9), `gzipBefore` (the source gzipped) and `sparse`: the pruned
 * file with each pruned weight re-encoded as CSR, nonzeros * (4 value + 4 int32 column) + (rows + 1) * 4
 * row pointers, rows = the weight's first dimension. `params.before` counts every parameter element of the
 * model; `params.after` the ones still nonzero after this run (weights it zeroed no longer count).
 */
export interface PruneResult {
  output: string;
  sizeBytes: { before: number; after: number; gzip: number; gzipBefore: number; sparse: number };
  params: { before: number; after: number };
  /** Zeros over all elements of the pruned layers' weights. */
  sparsity: number;
  metrics: {
    before: ModelFigures;
    after: ModelFigures;
    top1Agreement?: number;
    cosine?: number | string | null;
    /** When the data has labels: accuracy before and after, and the drop in percentage points. */
    accuracy?: { before: number; after: number; dropPt: number };
  };
  latencyMs: { before: number; after: number };
  ep: string;
  warnings: string[];
  /** The run folder's other files. */
  recipe: string;
  report: string;
  layers: LayerPruneSummary[];
  /** `--scope sensitivity`: the per-layer sparsities chosen from the analysis curves. */
  allocation?: PruneReport['allocation'];
  /** `--structured channels`: the channel groups pruned and skipped. Then `params.after` counts the written file's parameters, `sparse` is the file size (nothing is left to encode sparsely), and `sparsity` is the fraction of the pruned layers' elements removed. */
  structured?: PruneReport['structured'];
  /** `--max-drop`: the budget, every sparsity tried with its evaluated drop, and the one written. */
  budget?: Budget;
  data: string;
  /** The calibration data, when --calib-data differs from --data. */
  calibData?: string;
}

/** A `--max-drop` search: each try is a real pruned model evaluated on the evaluation data. */
export interface Budget {
  maxDropPt: number;
  /** What the drop is measured in: accuracy points with labels, otherwise top-1 disagreement with the original in points. */
  metric: 'accuracy' | 'top1Agreement';
  tries: Array<{ sparsity: number; dropPt: number }>;
  chosen: number;
}

/** Tries of the `--max-drop` bisection, the first (the upper bound) included. */
const budgetTries = 7;
/** The bisection stops once the passing and failing sparsities are this close. */
const budgetResolution = 0.01;

/**
 * Prunes a model and writes the run folder (`<model dir>/<name>.whittle/prune-<stamp>/` or --out): the model
 * with provenance, recipe.whittle.json, report.json (the contract object) and report.md, each atomically.
 * Measures both models on --data (random when absent). If anything fails, a run folder this call created is
 * removed, so no partial output stays behind. The source is only read.
 */
export async function runPrune(p: PruneParams, signal?: AbortSignal, progress: Progress = () => {}): Promise<PruneResult> {
  const options = parseParams<PruneOptions>(prunePass.params, p as unknown as Record<string, unknown>);
  const source = path.resolve(p.model);
  const warnings: string[] = [];
  let model = OnnxModel.open(source);
  const { dir, created } = runFolder(source, 'prune', p.out);
  try {
    const sourceSha256 = sha256File(source);
    const beforeBytes = modelBytes(model);
    const paramCount = [...model.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
    const sourceFiles = [source, ...externalFiles(model)];

    progress(undefined, 'pruning');
    // Calibration (sensitivity curves, Wanda norms, SparseGPT Hessians) reads --calib-data when given, else the
    // evaluation --data; --limit applies to both.
    const calibration = { data: options.calibData ?? p.data ?? 'random', limit: p.limit, seed: p.seed, shapes: p.shapes, ep: p.ep };
    let report: PruneReport;
    let budget: Budget | undefined;
    if (options.maxDrop !== undefined) {
      const found = await searchBudget(source, options, calibration, dir, { ...p, data: p.data ?? 'random' }, warnings, signal, progress);
      model.close();
      ({ model, report, budget } = found);
    } else report = await prunePass.apply(model, options, { signal, progress, warnings, calibration });
    const steps = [{ pass: prunePass.name, params: report.params }];
    const recipe = commandRecipe({ dir, source, sourceSha256, data: p.data, seed: p.seed, ep: p.ep, limit: p.limit, shapes: p.shapes, passes: [recipeStep('prune', report.params, dir, prunePass.params)] });
    const out = path.join(dir, path.basename(source).replace(/\.onnx$/i, '') + '.onnx');
    const written = writeOnnx(model, out, { provenance: { sourceSha256, recipe: JSON.stringify(steps) } });
    const outFiles = [written.file, ...(written.dataFile ? [written.dataFile] : [])];
    const afterBytes = outFiles.reduce((a, f) => a + fs.statSync(f).size, 0);
    const dense = report.layers.reduce((a, l) => a + l.params * 4, 0);
    const csr = report.layers.reduce((a, l) => a + (l.params - l.zeros) * 8 + ((l.shape[0] ?? 1) + 1) * 4, 0);

    const data = p.data ?? 'random';
    if (!p.data) warnings.push('no --data given: metrics were measured on random inputs, so accuracy is unknown and agreement only indicative');
    const common = { data, ep: p.ep, limit: p.limit, seed: p.seed, shapes: p.shapes };
    progress(undefined, 'evaluating the original');
    const before: EvalResult = await evaluate({ ...common, model: source }, signal, progress);
    progress(undefined, 'evaluating the pruned model');
    const after: EvalResult = await evaluate({ ...common, model: out, reference: source }, signal, progress);
    for (const w of after.warnings) if (!warnings.includes(w)) warnings.push(w);

    // Structured pruning removes elements instead of zeroing them: count what the written file holds.
    const paramsAfter = report.structured ? countParams(written.file) : undefined;
    const zerosAdded = report.layers.reduce((a, l) => a + l.zeros - l.zerosBefore, 0);
    const pruned = report.layers.reduce((a, l) => a + l.params, 0);
    const result: PruneResult = {
      output: out,
      sizeBytes: { before: beforeBytes, after: afterBytes, gzip: gzipBytes(outFiles), gzipBefore: gzipBytes(sourceFiles), sparse: report.structured ? afterBytes : afterBytes - dense + csr },
      params: { before: paramCount, after: paramsAfter ?? paramCount - zerosAdded },
      sparsity: report.layers.reduce((a, l) => a + l.zeros, 0) / pruned,
      metrics: {
        before: { samples: before.samples, ...(before.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
        after: { samples: after.samples, ...(after.accuracy !== undefined ? { accuracy: after.accuracy } : {}) },
        ...(after.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
        ...(after.cosine !== undefined ? { cosine: after.cosine } : {}),
        ...(before.accuracy !== undefined && after.accuracy !== undefined
          ? { accuracy: { before: before.accuracy, after: after.accuracy, dropPt: round((before.accuracy - after.accuracy) * 100, 4) } }
          : {}),
      },
      latencyMs: { before: before.latencyMs.median, after: after.latencyMs.median },
      ep: after.ep,
      warnings,
      recipe: path.join(dir, 'recipe.whittle.json'),
      report: path.join(dir, 'report.json'),
      layers: report.layers,
      ...(report.allocation ? { allocation: report.allocation } : {}),
      ...(report.structured ? { structured: report.structured } : {}),
      ...(budget ? { budget } : {}),
      data: after.data,
      ...(options.calibData && options.calibData !== p.data ? { calibData: options.calibData } : {}),
    };
    writeFileAtomic(result.recipe, recipeText(recipe));
    writeFileAtomic(path.join(dir, 'report.md'), reportMarkdown(result));
    writeFileAtomic(result.report, JSON.stringify(result, null, 2) + '\n');
    return result;
  } catch (err) {
    if (created) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    model.close();
  }
}

/** Parameter elements of a model file (numeric, non-index tensors). */
function countParams(file: string): number {
  const m = OnnxModel.open(file);
  try {
    return [...m.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
  } finally {
    m.close();
  }
}

/** The drop in points of `after` against `before`: accuracy when both have it, else top-1 disagreement. */
function dropOf(before: EvalResult, after: EvalResult): { metric: Budget['metric']; dropPt: number } {
  if (before.accuracy !== undefined && after.accuracy !== undefined) return { metric: 'accuracy', dropPt: round((before.accuracy - after.accuracy) * 100, 4) };
  return { metric: 'top1Agreement', dropPt: round((1 - (after.top1Agreement ?? 0)) * 100, 4) };
}

/**
 * `--max-drop P`: the largest overall sparsity (up to --sparsity, or --max-sparsity capped at 0.95) whose
 * pruned model, evaluated on the evaluation data, drops at most P points. Each try prunes a fresh copy of the
 * source with the pass's own scope (with --scope sensitivity, the curves propose the per-layer split for that
 * overall sparsity), writes it and evaluates it; the search starts at the upper bound and bisects between the
 * best passing and the lowest failing sparsity. The best passing model is returned, still open. When no try
 * passes, this is an error rather than a model that breaks the budget the user set.
 */
async function searchBudget(
  source: string,
  options: PruneOptions,
  calibration: NonNullable<Parameters<typeof prunePass.apply>[2]['calibration']>,
  dir: string,
  p: PruneParams & { data: string },
  warnings: string[],
  signal: AbortSignal | undefined,
  progress: Progress,
): Promise<{ model: OnnxModel; report: PruneReport; budget: Budget }> {
  const maxDrop = options.maxDrop!;
  if (options.pattern !== 'none') throw new InputError(undefined, `--max-drop searches the sparsity, and --pattern ${options.pattern} fixes it; use one or the other`);
  const upper = options.sparsity ?? Math.min(options.maxSparsity, 0.95);
  const common = { data: p.data, ep: p.ep, limit: p.limit, seed: p.seed, shapes: p.shapes };
  progress(undefined, 'evaluating the original');
  const before = await evaluate({ ...common, model: source }, signal, progress);
  const tries: Budget['tries'] = [];
  let best: { model: OnnxModel; report: PruneReport; sparsity: number; warnings: string[] } | undefined;
  let metric: Budget['metric'] = 'accuracy';
  let lo = 0;
  let hi = upper;
  let s = upper;
  const scratch = path.join(dir, '.budget');
  try {
    for (let k = 0; k < budgetTries; k++) {
      if (signal?.aborted) throw new CancelledError();
      progress(undefined, `--max-drop: trying ${(s * 100).toFixed(1)}% overall`);
      const model = OnnxModel.open(source);
      let kept = false;
      try {
        const tryWarnings: string[] = [];
        const report = await prunePass.apply(model, { ...options, sparsity: s }, { signal, progress, warnings: tryWarnings, calibration });
        const file = path.join(scratch, `try-${k}.onnx`);
        writeOnnx(model, file);
        const after = await evaluate({ ...common, model: file, reference: source }, signal, progress);
        const drop = dropOf(before, after);
        metric = drop.metric;
        tries.push({ sparsity: s, dropPt: drop.dropPt });
        if (drop.dropPt <= maxDrop) {
          lo = s;
          if (!best || s > best.sparsity) {
            best?.model.close();
            // Only the chosen try's warnings (skipped layers, scope shortfalls) describe the model written.
            best = { model, report, sparsity: s, warnings: tryWarnings };
            kept = true;
          }
        } else hi = s;
      } finally {
        if (!kept) model.close();
      }
      if (lo === upper || hi - lo <= budgetResolution) break;
      s = round((lo + hi) / 2, 4);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const list = tries.map((t) => `${(t.sparsity * 100).toFixed(1)}%: ${t.dropPt} pt`).join(', ');
  if (!best) throw new InputError(undefined, `--max-drop ${maxDrop}: no sparsity tried kept the ${metric === 'accuracy' ? 'accuracy' : 'top-1 agreement'} drop within ${maxDrop} pt (${list}); nothing was written`);
  warnings.push(...best.warnings);
  if (best.sparsity < upper) warnings.push(`--max-drop ${maxDrop}: ${(best.sparsity * 100).toFixed(1)}% overall is the largest sparsity tried within the budget (${list})`);
  return { model: best.model, report: best.report, budget: { maxDropPt: maxDrop, metric, tries, chosen: best.sparsity } };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** report.md's structured section: each pruned channel group, then the skipped ones with their reasons. */
function structuredMarkdown(s: NonNullable<PruneResult['structured']>): string[] {
  const list = (m: string[]) => (m.length > 6 ? [...m.slice(0, 6), `... (${m.length} members)`] : m).join(', ');
  return [
    '',
    `Structured channel pruning (importance ${s.importance}): ${s.groups.length} dependency group(s) pruned, ${s.skipped.length} skipped. The layer table shows the new shapes; "zeros" there counts removed elements.`,
    '',
    '| group | channels | kept | removed | members |',
    '|---:|---:|---:|---|---|',
    ...s.groups.map((g, i) => `| ${i + 1} | ${g.channels} | ${g.kept} | ${g.removed.length > 12 ? `${g.removed.slice(0, 12).join(', ')}, ...` : g.removed.join(', ')} | ${list(g.members)} |`),
    ...(s.skipped.length
      ? ['', '| skipped group | reason |', '|---|---|', ...s.skipped.map((k) => `| ${list(k.members)} | ${k.reason.replace(/\|/g, '\\|')} |`)]
      : []),
  ];
}

/** report.md: the run in a readable table. */
export function reportMarkdown(r: PruneResult): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const kb = (x: number) => `${(x / 1024).toFixed(1)} KiB`;
  const m = r.metrics;
  return [
    `# Prune: ${path.basename(r.output)}`,
    '',
    `Data: ${r.data}${r.calibData ? ` (calibration: ${r.calibData})` : ''}; execution provider: ${r.ep}.`,
    '',
    '| | before | after |',
    '|---|---:|---:|',
    `| file size (dense) | ${kb(r.sizeBytes.before)} | ${kb(r.sizeBytes.after)} |`,
    `| gzip -9 | ${kb(r.sizeBytes.gzipBefore)} | ${kb(r.sizeBytes.gzip)} |`,
    `| sparse encoding (CSR estimate) | | ${kb(r.sizeBytes.sparse)} |`,
    `| parameters (zeroed excluded) | ${r.params.before.toLocaleString('en-US')} | ${r.params.after.toLocaleString('en-US')} |`,
    ...(m.accuracy ? [`| accuracy | ${pct(m.accuracy.before)} | ${pct(m.accuracy.after)} |`] : []),
    `| latency median (batch 1) | ${r.latencyMs.before.toFixed(3)} ms | ${r.latencyMs.after.toFixed(3)} ms |`,
    '',
    `Overall sparsity of the pruned layers: ${pct(r.sparsity)}.${m.top1Agreement !== undefined ? ` Top-1 agreement with the original: ${pct(m.top1Agreement)}.` : ''}${m.cosine !== undefined ? ` Cosine of the first output: ${m.cosine}.` : ''}`,
    '',
    'Zeros in a dense file do not make it smaller or faster: the gzip and sparse rows show what a compressed or sparse encoding would take, and latency is measured, not assumed (unstructured sparsity is not expected to speed up dense kernels).',
    '',
    '| layer | op | weight | shape | params | zeros | sparsity |',
    '|---|---|---|---|---:|---:|---:|',
    ...r.layers.map((l) => `| ${l.layer} | ${l.op} | ${l.weight} | ${l.shape.join('x')} | ${l.params} | ${l.zeros} | ${pct(l.sparsity)} |`),
    ...(r.structured ? structuredMarkdown(r.structured) : []),
    ...(r.budget
      ? [
          '',
          `Metric budget: at most ${r.budget.maxDropPt} pt (${r.budget.metric === 'accuracy' ? 'accuracy' : 'top-1 disagreement'}) on the evaluation data; each try below is a pruned model that was evaluated. Written: ${pct(r.budget.chosen)} overall.`,
          '',
          '| overall sparsity tried | drop (pt) | within budget |',
          '|---:|---:|---|',
          ...r.budget.tries.map((t) => `| ${pct(t.sparsity)} | ${t.dropPt} | ${t.dropPt <= r.budget!.maxDropPt ? 'yes' : 'no'} |`),
        ]
      : []),
    ...(r.allocation
      ? [
          '',
          `Sensitivity-guided allocation from per-layer curves (${r.allocation.metricName}, ${r.allocation.samples} samples of ${r.allocation.data}); the predicted cost is each layer's measured metric at its sparsity, pruned alone.`,
          '',
          '| layer | params | sparsity | predicted cost |',
          '|---|---:|---:|---:|',
          ...r.allocation.layers.map((l) => `| ${l.layer} | ${l.params} | ${pct(l.sparsity)} | ${l.predictedCost.toFixed(4)} |`),
        ]
      : []),
    ...(r.warnings.length ? ['', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}
