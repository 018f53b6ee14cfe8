/**
 * Builds a report's data from two models on disk and their evaluations: the summary, a per-layer table of
 * what changed (matched by layer name), histograms and heatmaps of the most affected layers, and the
 * candidates of any search. Weights are compared as the models compute them (quantized weights dequantized).
 */
import * as path from 'node:path';
import { effectiveWeight } from '../analysis/quantError';
import { detectFormat } from '../formats/detect';
import { OnnxModel, isParameter } from '../formats/onnx/model';
import type { Layer } from '../model/layers';
import { modelBytes } from '../passes/runFolder';
import type { EvalResult } from '../runtime/evaluate';
import type { ReportData, ReportHeatmap, ReportHistogram, ReportLayer, ReportPareto } from './types';

/** What buildReport needs. `evalAfter` is the after model evaluated with the before model as reference. */
export interface BuildReportInput {
  title: string;
  before: string;
  after: string;
  evalBefore: EvalResult;
  evalAfter: EvalResult;
  passes?: ReportData['passes'];
  warnings?: string[];
  pareto?: ReportPareto;
  /** File sizes, when the caller measured them (TF.js: model.json plus shards); ONNX files are measured here. */
  sizeBytes?: { before: number; after: number };
  /** How many layers get histograms and heatmaps (default 3). */
  top?: number;
}

/** Bins of the before/after histograms. */
const histogramBins = 32;
/** Largest heatmap grid: rows x columns of cells. */
const gridRows = 24;
const gridCols = 48;

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

interface Weights {
  values: Float32Array;
  shape: number[];
  format: string;
}

function weightsOf(model: OnnxModel, layer: Layer): Weights | undefined {
  try {
    return effectiveWeight(model, layer);
  } catch {
    return undefined;
  }
}

function zeros(v: Float32Array): number {
  let z = 0;
  for (let i = 0; i < v.length; i++) if (v[i] === 0) z++;
  return z;
}

/** The report of `after` against `before`. ONNX models get the per-layer views; TF.js ones the summary only. */
export function buildReport(i: BuildReportInput): ReportData {
  const onnx = detectFormat(i.before) === 'onnx' && detectFormat(i.after) === 'onnx';
  const a = i.evalBefore;
  const b = i.evalAfter;
  let layers: ReportLayer[] = [];
  let histograms: ReportHistogram[] = [];
  let heatmaps: ReportHeatmap[] = [];
  let sizeBytes = i.sizeBytes ?? { before: 0, after: 0 };
  let params = { before: 0, after: 0 };
  let sparsity = { before: 0, after: 0 };
  if (onnx) {
    const mb = OnnxModel.open(i.before);
    const ma = OnnxModel.open(i.after);
    try {
      if (!i.sizeBytes) sizeBytes = { before: modelBytes(mb), after: modelBytes(ma) };
      ({ layers, histograms, heatmaps, params, sparsity } = compareLayers(mb, ma, i.top ?? 3));
    } finally {
      mb.close();
      ma.close();
    }
  }
  return {
    version: 1,
    title: i.title,
    before: path.resolve(i.before),
    after: path.resolve(i.after),
    data: b.data,
    ep: b.ep,
    passes: i.passes ?? [],
    summary: {
      sizeBytes,
      params,
      sparsity,
      latencyMs: { before: a.latencyMs.median, after: b.latencyMs.median },
      samples: b.samples,
      ...(a.accuracy !== undefined && b.accuracy !== undefined ? { accuracy: { before: a.accuracy, after: b.accuracy, dropPt: round((a.accuracy - b.accuracy) * 100, 4) } } : {}),
      ...(b.top1Agreement !== undefined ? { top1Agreement: b.top1Agreement } : {}),
      ...(b.cosine !== undefined ? { cosine: b.cosine } : {}),
    },
    layers,
    histograms,
    heatmaps,
    warnings: [...new Set([...(i.warnings ?? []), ...b.warnings])],
    ...(i.pareto ? { pareto: i.pareto } : {}),
  };
}

/**
 * Per layer (by name, in the before model's order): shape, elements, zeros and stored form before and after,
 * and the SQNR of the after weight against the before one. `params` counts every parameter element before, and after
 * subtracts the layer weight elements that were nonzero and are now removed or exactly zero (as prune does); `sparsity` is zeros over all layer weights.
 */
function compareLayers(mb: OnnxModel, ma: OnnxModel, top: number) {
  const afterByName = new Map(ma.layers().map((l) => [l.name, l]));
  const totalParams = (m: OnnxModel) => [...m.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((s, w) => s + w.ref.count, 0);
  const rows: Array<{ row: ReportLayer; b: Weights; a?: Weights }> = [];
  let lost = 0;
  const totals = { elementsBefore: 0, zerosBefore: 0, elementsAfter: 0, zerosAfter: 0 };
  for (const lb of mb.layers()) {
    const b = weightsOf(mb, lb);
    if (!b) continue;
    const la = afterByName.get(lb.name);
    const a = la ? inLayoutOf(weightsOf(ma, la), b) : undefined;
    const zb = zeros(b.values);
    const za = a ? zeros(a.values) : 0;
    totals.elementsBefore += b.values.length;
    totals.zerosBefore += zb;
    if (a) {
      totals.elementsAfter += a.values.length;
      totals.zerosAfter += za;
    }
    lost += b.values.length - zb - (a ? a.values.length - za : 0);
    let sqnrDb: number | undefined;
    let change = 1;
    if (a && a.values.length === b.values.length && a.shape.join() === b.shape.join()) {
      let signal = 0;
      let noise = 0;
      for (let k = 0; k < b.values.length; k++) {
        signal += b.values[k] * b.values[k];
        const d = a.values[k] - b.values[k];
        noise += d * d;
      }
      sqnrDb = noise === 0 ? 999 : signal === 0 ? -999 : round(10 * Math.log10(signal / noise), 2);
      change = noise === 0 ? 0 : signal === 0 ? 1 : Math.sqrt(noise / signal);
    }
    rows.push({
      row: {
        layer: lb.name,
        op: { before: lb.op, ...(la ? { after: la.op } : {}) },
        shape: { before: b.shape, ...(a ? { after: a.shape } : {}) },
        params: { before: b.values.length, ...(a ? { after: a.values.length } : {}) },
        sparsity: { before: round(zb / b.values.length, 6), ...(a ? { after: round(za / a.values.length, 6) } : {}) },
        format: { before: b.format, ...(a ? { after: a.format } : {}) },
        ...(sqnrDb !== undefined ? { sqnrDb } : {}),
        change: round(change, 6),
        changed: change > 0,
      },
      b,
      a,
    });
  }
  const before = totalParams(mb);
  const ranked = rows.filter((r) => r.row.changed && r.a).sort((x, y) => y.row.change - x.row.change || x.row.layer.localeCompare(y.row.layer)).slice(0, top);
  const histograms = ranked.map((r) => histogram(r.row.layer, r.b.values, r.a!.values));
  const heatmaps: ReportHeatmap[] = [];
  for (const r of ranked) {
    if (r.a!.shape.join() !== r.b.shape.join()) continue;
    if (r.row.sparsity.after! > r.row.sparsity.before) heatmaps.push(grid(r.row.layer, 'mask', r.b, r.a!));
    const e = grid(r.row.layer, 'error', r.b, r.a!);
    if (e.max > 0) heatmaps.push(e);
  }
  return {
    layers: rows.map((r) => r.row),
    histograms,
    heatmaps,
    params: { before, after: before - lost },
    sparsity: { before: round(totals.elementsBefore ? totals.zerosBefore / totals.elementsBefore : 0, 6), after: round(totals.elementsAfter ? totals.zerosAfter / totals.elementsAfter : 0, 6) },
  };
}

/**
 * The after weight in the before weight's layout: a MatMulNBits weight reads as [K, N] where the Gemm it
 * replaced stored [N, K] (transB), so a transposed 2-D matrix is transposed back.
 */
function inLayoutOf(a: Weights | undefined, b: Weights): Weights | undefined {
  if (!a || a.shape.length !== 2 || b.shape.length !== 2 || a.shape.join() === b.shape.join() || a.shape[0] !== b.shape[1] || a.shape[1] !== b.shape[0]) return a;
  const [r, c] = a.shape;
  const t = new Float32Array(a.values.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = a.values[i * c + j];
  return { values: t, shape: [c, r], format: a.format };
}

/** Counts of both weights over shared edges. */
function histogram(layer: string, b: Float32Array, a: Float32Array): ReportHistogram {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of [b, a]) {
    for (let k = 0; k < v.length; k++) {
      if (!Number.isFinite(v[k])) continue;
      lo = Math.min(lo, v[k]);
      hi = Math.max(hi, v[k]);
    }
  }
  if (!(hi > lo)) {
    lo = (Number.isFinite(lo) ? lo : 0) - 1;
    hi = lo + 2;
  }
  const width = (hi - lo) / histogramBins;
  const count = (v: Float32Array) => {
    const c = new Array<number>(histogramBins).fill(0);
    for (let k = 0; k < v.length; k++) if (Number.isFinite(v[k])) c[Math.min(histogramBins - 1, Math.floor((v[k] - lo) / width))]++;
    return c;
  };
  return { layer, edges: Array.from({ length: histogramBins + 1 }, (_, k) => lo + k * width), before: count(b), after: count(a) };
}

/**
 * A downsampled grid of a weight as a matrix (first dimension x the rest): per cell, the fraction of weights
 * kept (nonzero after), or the mean |after - before| over the weights kept (what quantization or training
 * moved, not what pruning removed).
 */
function grid(layer: string, kind: 'mask' | 'error', b: Weights, a: Weights): ReportHeatmap {
  const rows = b.shape[0] ?? 1;
  const cols = Math.max(1, b.values.length / rows);
  const gr = Math.min(rows, gridRows);
  const gc = Math.min(cols, gridCols);
  const sum = new Float64Array(gr * gc);
  const n = new Float64Array(gr * gc);
  for (let r = 0; r < rows; r++) {
    const cr = Math.floor((r * gr) / rows);
    for (let c = 0; c < cols; c++) {
      const k = r * cols + c;
      const cell = cr * gc + Math.floor((c * gc) / cols);
      if (kind === 'mask') {
        sum[cell] += a.values[k] !== 0 ? 1 : 0;
        n[cell]++;
      } else if (a.values[k] !== 0) {
        sum[cell] += Math.abs(a.values[k] - b.values[k]);
        n[cell]++;
      }
    }
  }
  const values = Array.from(sum, (s, k) => (n[k] ? round(s / n[k], 6) : 0));
  const max = kind === 'mask' ? 1 : Math.max(0, ...values);
  return { layer, kind, rows: gr, cols: gc, values, min: 0, max, matrix: [rows, cols] };
}
