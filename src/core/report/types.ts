/**
 * What a report shows: the before/after summary of a compression run (or of any two models compared), what
 * changed per layer, weight histograms and heatmaps of the most affected layers, warnings, and the candidates
 * a search evaluated. Plain data (JSON-serialisable), so report.json, report.md, report.html and the Report
 * webview all draw the same numbers.
 */
export interface ReportData {
  /** Report format version. */
  version: 1;
  title: string;
  /** The model before (the source) and after (the output). */
  before: string;
  after: string;
  /** Evaluation data spec ('random' when none was given). */
  data: string;
  /** Execution provider the latency was measured on. */
  ep: string;
  /** The passes run, in order, with the parameters they ran with (empty for a plain comparison). */
  passes: Array<{ pass: string; params: Record<string, unknown> }>;
  summary: ReportSummary;
  /** Every layer with a weight, in graph order, matched by layer name across the two models. */
  layers: ReportLayer[];
  /** Weight histograms before and after of the most affected layers (shared bin edges per layer). */
  histograms: ReportHistogram[];
  /** Downsampled grids of the most affected layers: the prune mask (kept fraction) and the quantization error. */
  heatmaps: ReportHeatmap[];
  warnings: string[];
  /** Candidates a search evaluated (prune/quantize --max-drop tries), with the one chosen. */
  pareto?: ReportPareto;
}

export interface ReportSummary {
  sizeBytes: { before: number; after: number };
  params: { before: number; after: number };
  /** Exact zeros over all parameter elements (quantized weights: their dequantized zeros). */
  sparsity: { before: number; after: number };
  latencyMs: { before: number; after: number };
  /** Samples the metrics were measured on. */
  samples: number;
  /** With labelled data. */
  accuracy?: { before: number; after: number; dropPt: number };
  /** Agreement of the after model's top-1 with the before model's. */
  top1Agreement?: number;
  cosine?: number | string | null;
}

export interface ReportLayer {
  layer: string;
  op: { before: string; after?: string };
  /** Weight shape; `after` is absent when the layer is gone. */
  shape: { before: number[]; after?: number[] };
  params: { before: number; after?: number };
  sparsity: { before: number; after?: number };
  /** Stored form, e.g. 'float32', 'int8 per-channel', 'MatMulNBits 4-bit block 32'. */
  format: { before: string; after?: string };
  /** SQNR of the after weight against the before weight (dB; 999 when identical, absent when shapes differ). */
  sqnrDb?: number;
  /** How much changed, for ranking: relative L2 error of the weight, or 1 when its shape changed or it is gone. */
  change: number;
  changed: boolean;
}

export interface ReportHistogram {
  layer: string;
  /** `bins + 1` edges shared by both counts. */
  edges: number[];
  before: number[];
  after: number[];
}

export interface ReportHeatmap {
  layer: string;
  /** 'mask': fraction of weights kept (nonzero) per cell, 0..1; 'error': mean |after - before| per cell. */
  kind: 'mask' | 'error';
  rows: number;
  cols: number;
  /** Row-major cells. */
  values: number[];
  /** Colour scale. */
  min: number;
  max: number;
  /** The weight matrix size before downsampling (output channels x the rest). */
  matrix: [number, number];
}

export interface ReportPareto {
  /** What the x axis shows: file size, sparsity, latency, or how many layers a quantize fallback kept in float. */
  x: 'sizeBytes' | 'sparsity' | 'latencyMs' | 'floatLayers';
  y: 'dropPt';
  /** What the drop measures. */
  metric: 'accuracy' | 'top1Agreement';
  /** The budget, when there was one. */
  maxDropPt?: number;
  points: Array<{ label: string; x: number; y: number; chosen: boolean }>;
}
