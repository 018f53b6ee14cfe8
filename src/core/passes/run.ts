import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { writeFileAtomic } from '../atomicWrite';
import { OnnxModel, isParameter } from '../formats/onnx/model';
import { sha256File, writeOnnx } from '../formats/onnx/write';
import { outputDir } from '../output';
import type { EpName } from '../runtime/ep';
import { evaluate, type EvalResult, type Progress } from '../runtime/evaluate';
import { toolName, version } from '../version';
import { parseParams } from './pass';
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

/** Accuracy and sample count of one model on the data. */
export interface ModelFigures {
  samples: number;
  accuracy?: number;
}

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
  data: string;
}

/** Bytes of a model file plus its external data files. */
function modelBytes(model: OnnxModel): number {
  const data = new Set([...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : [])));
  return [...data].reduce((a, f) => a + fs.statSync(f).size, fs.statSync(model.file).size);
}

function gzipBytes(files: string[]): number {
  return files.reduce((a, f) => a + gzipSync(fs.readFileSync(f), { level: 9 }).byteLength, 0);
}

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
  const model = OnnxModel.open(source);
  const base = outputDir(source, 'prune', p.out);
  let dir = base;
  // Run names stamp the second; a second run within it gets its own folder rather than overwriting the first's.
  for (let i = 2; !p.out && fs.existsSync(dir); i++) dir = `${base}-${i}`;
  const created = !fs.existsSync(dir);
  try {
    const sourceSha256 = sha256File(source);
    const beforeBytes = modelBytes(model);
    const paramCount = [...model.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
    const sourceFiles = [source, ...new Set([...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : [])))];

    progress(undefined, 'pruning');
    // Calibration (sensitivity curves, Wanda norms) reads the same --data and --limit as the evaluation below.
    const calibration = { data: p.data ?? 'random', limit: p.limit, seed: p.seed, shapes: p.shapes, ep: p.ep };
    const report = await prunePass.apply(model, options, { signal, progress, warnings, calibration });
    const recipe = { tool: toolName, version, source: { file: source, sha256: sourceSha256 }, steps: [{ pass: prunePass.name, params: report.params }] };
    const recipeText = JSON.stringify(recipe, null, 2) + '\n';
    const out = path.join(dir, path.basename(source).replace(/\.onnx$/i, '') + '.onnx');
    const written = writeOnnx(model, out, { provenance: { sourceSha256, recipe: JSON.stringify(recipe.steps) } });
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
      data: after.data,
    };
    writeFileAtomic(result.recipe, recipeText);
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
    `Data: ${r.data}; execution provider: ${r.ep}.`,
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
