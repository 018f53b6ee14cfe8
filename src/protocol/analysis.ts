import type { EventMessage } from './rpc';

/**
 * Shared shapes of the Identification feature (issue 5): histograms, tensor tiles and sensitivity sweeps. The
 * engine (src/core/analysis) produces them, the worker carries them, the webviews draw them.
 */

/** A histogram of one weight tensor, with per-output-channel ranges and norms. */
export interface LayerHistogram {
  layer: string;
  tensor: string;
  shape: number[];
  dtype: string;
  /** Bin edges: `bins + 1` numbers from min to max. */
  edges: number[];
  /** Count per bin. */
  counts: number[];
  min: number;
  max: number;
  mean: number;
  std: number;
  absMean: number;
  sparsity: number;
  /** Percentiles of the values: p1, p5, p25, p50, p75, p95, p99 (estimated from a fine histogram). */
  percentiles: Record<'p1' | 'p5' | 'p25' | 'p50' | 'p75' | 'p95' | 'p99', number>;
  /** Per output channel (along the layer's output axis): min, max, L1 and L2 norms. */
  channels: { axis: number; min: number[]; max: number[]; l1: number[]; l2: number[] };
  /** Set when the weight is stored quantized (e.g. 'int8 per-channel'): the figures are of its dequantized real values. */
  storedAs?: string;
}

/**
 * A tile of a weight tensor seen as a 2-D matrix: rows are output channels, columns everything else
 * flattened. `values` holds rows x cols float32 (row-major) as an ArrayBuffer, so it is transferred, not copied.
 * When `stride` > 1 the tile is a downsampled overview: each value is the mean over a stride x stride block.
 */
export interface TensorTile {
  tensor: string;
  /** The whole matrix's size. */
  matrixRows: number;
  matrixCols: number;
  /** First row and column of the tile, in matrix coordinates. */
  row: number;
  col: number;
  rows: number;
  cols: number;
  stride: number;
  values: ArrayBuffer;
  /** Range over the whole tensor, so every tile shares one colour scale ([0, 1] for a mask). */
  min: number;
  max: number;
  /** 'mask' when each value is the fraction of nonzero weights in its block (absent: values). */
  mode?: TileMode;
}

/**
 * What a tile's cells hold: weight values (block means), the fraction of nonzero (kept) weights per block, or
 * the quantization error (dequantized minus the source model's weight, block means).
 */
export type TileMode = 'values' | 'mask' | 'error';

/** A quantized layer's weight error against the source model's (the Inspector's quantization-error view). */
export interface QuantErrorSummary {
  layer: string;
  /** How the weight is stored, e.g. 'int8 per-channel'. */
  format: string;
  /** SQNR of the whole weight and per output channel, dB (999 when exact). */
  sqnrDb: number;
  channelSqnrDb: number[];
  maxAbs: number;
}

/** One calibrated activation as the Inspector draws it (a subset of the quantize report's `ranges`). */
export interface CalibrationRange {
  tensor: string;
  range: [number, number];
  observed: [number, number];
  clipped: number;
  sqnrDb: number;
  calibrators?: Record<string, [number, number]>;
  histogram?: { lo: number; hi: number; counts: number[] };
}

/** Where a model written by Whittle came from: its run folder's recipe and report. */
export interface ModelOrigin {
  /** The source model's path. */
  source: string;
  /** The pass that wrote it (prune, quantize). */
  pass: string;
  /** A short description of the run (mode, sparsity). */
  summary: string;
  /** Static quantization: activation SQNR against the float model, worst first. */
  activations?: Array<{ tensor: string; sqnrDb: number }>;
  /** Static quantization: each calibrated activation's histogram, the range used and every calibrator's range. */
  ranges?: CalibrationRange[];
  /** Structured pruning: per layer, the output channels removed (rows of the source weight). */
  removedRows?: Record<string, number[]>;
}

/** What to sweep. */
export interface AnalyzeParams {
  model: string;
  /** A --data SPEC, or 'random'. */
  data: string;
  kind: 'prune' | 'quant' | 'both';
  limit?: number;
  seed?: number;
  ep?: string;
  /** Sparsity levels for the pruning sweep (default 0, 0.1, ..., 0.9, 0.95). */
  sparsities?: number[];
  /** Bit widths for the quantization sweep (default 8, 6, 4, 3, 2). */
  bits?: number[];
  /** Layer names to leave out. */
  exclude?: string[];
  shapes?: Record<string, number[]>;
}

/** The metric of one variant, measured against the unmodified model's outputs on the same data. */
export interface SweepPoint {
  /** The figure ranked on: accuracy drop when labels exist, else 1 - top-1 agreement (classifiers), else 1 - cosine. */
  metric: number;
  top1Agreement?: number;
  kl?: number;
  cosine: number;
  accuracy?: number;
}

/** Sweeps of one layer. */
export interface LayerSensitivity {
  name: string;
  op: string;
  params: number;
  prune?: Array<{ sparsity: number } & SweepPoint>;
  quant?: Array<{ bits: number } & SweepPoint>;
  /** Area under the curves (mean metric over the levels): the ranking key, highest = most sensitive. */
  score: number;
}

/** What `whittle analyze` returns (DESIGN.md section 7: {baseline, layers, ranking}), plus facts about the run. */
export interface AnalyzeResult {
  baseline: { samples: number; accuracy?: number; metricName: string };
  layers: LayerSensitivity[];
  /** Layer names, most sensitive first. */
  ranking: string[];
  ep: string;
  data: string;
  warnings: string[];
  /** True when the result came from the cache (same model bytes, data and settings). */
  cached?: boolean;
}

/** A layer's sweeps finished: streamed while `analyze` runs, so panels update live. */
export interface LayerDoneEvent extends EventMessage {
  type: 'layerDone';
  layer: LayerSensitivity;
  done: number;
  total: number;
}
