import type { Accumulator } from '../core/analysis/stats';
import type { ModelSummary } from '../core/inspect';
import type { EvalParams, EvalResult } from '../core/runtime/evaluate';
import type { PruneParams, PruneResult } from '../core/passes/run';
import type { QuantizeParams, QuantizeResult } from '../core/passes/quantize/run';
import type { TfjsQuantizeParams, TfjsQuantizeResult } from '../core/passes/quantize/tfjs';
import type { TfjsPruneParams, TfjsPruneResult } from '../core/passes/prune/tfjs';
import type { EpName } from '../core/runtime/ep';
import type { EpProbe } from '../core/runtime/probe';
import type { AnalyzeParams, AnalyzeResult, LayerDoneEvent, LayerHistogram, QuantErrorSummary, TensorTile, TileMode } from './analysis';
import type { EventMessage } from './rpc';
import type { FinetuneParams, FinetuneResult } from '../core/train/finetune';
import type { RunRecipeParams } from '../core/recipe/run';
import type { RecipeResult } from '../core/recipe/types';
import type { CompareOptions } from '../core/report/compare';
import type { ReportData } from '../core/report/types';
import type { DistillParams, DistillResult, DistillStepEvent } from '../core/passes/distill/types';
import type { TrainStepEvent } from './training';

/** Requests the extension host (or CLI) makes of the compute worker. */
export type WorkerRequests = {
  /** Reads a model and summarises it (the Model Inspector's first page). */
  inspect: { params: { file: string }; result: ModelSummary };
  /** Resolves when every other request has finished (after a cancel), so the worker can be terminated safely. */
  drain: { params: Record<string, never>; result: void };
  /** Resolves an execution-provider setting on this machine (self-check on the sample model). */
  probeEp: { params: { ep: EpName }; result: EpProbe };
  /** Runs a model over a dataset and measures it (`whittle eval`); sends progress events. */
  evaluate: { params: EvalParams; result: EvalResult };
  /** A histogram of one layer's weight (or of `tensor`), with per-channel ranges (models are cached in the worker). */
  layerHistogram: { params: { file: string; layer: string; tensor?: string; bins?: number; range?: [number, number] }; result: LayerHistogram };
  /** A tile of a weight tensor as a 2-D matrix (out-channels x the rest); `stride` > 1 downsamples; `mode` 'mask' gives nonzero fractions. */
  tensorTile: { params: { file: string; tensor: string; row: number; col: number; rows: number; cols: number; stride: number; mode?: TileMode; source?: string }; result: TensorTile };
  /** A quantized layer's weight error against the same layer of `source`: SQNR overall and per channel. */
  quantError: { params: { file: string; source: string; layer: string }; result: QuantErrorSummary };
  /** Per-layer pruning and quantization sweeps (`whittle analyze`); sends `layerDone` and progress events. */
  analyze: { params: AnalyzeParams & { noCache?: boolean }; result: AnalyzeResult };
  /** Partial statistics of tensor element ranges (one big tensor can be shared among workers). */
  weightStats: { params: { tasks: StatsTask[] }; result: Accumulator[] };
  /** Prunes a model, writes the run folder and measures before/after (`whittle prune`); sends progress events. */
  prune: { params: PruneParams; result: PruneResult };
  /** Quantizes a model, writes the run folder, times it against the source and measures before/after (`whittle quantize`). */
  quantize: { params: QuantizeParams; result: QuantizeResult };
  /** Quantizes a TF.js model's weights into uint8/uint16/float16 or a per-layer mix, writes the run folder and measures before/after. */
  quantizeTfjs: { params: TfjsQuantizeParams; result: TfjsQuantizeResult };
  /** Fine-tunes a model (pruned weights stay zero), writes the run folder and measures before/after (`whittle finetune`); sends progress and `trainStep` events. */
  finetune: { params: FinetuneParams; result: FinetuneResult };
  /** Magnitude-prunes a TF.js model, writes the run folder and measures before/after. */
  pruneTfjs: { params: TfjsPruneParams; result: TfjsPruneResult };
  /** Runs a recipe (`whittle run`): a file, or a recipe object with the folder its paths are relative to; sends progress events. */
  runRecipe: { params: RunRecipeParams; result: RecipeResult };
  /** Evaluates two models on the same data and reports what changed (Compare Models); sends progress events. */
  compareModels: { params: CompareOptions & { a: string; b: string }; result: ReportData };
  /** Distils a teacher into a student, writes the run folder and measures both (`whittle distill`); sends progress and `distillStep` events. */
  distill: { params: DistillParams; result: DistillResult };
  /** The intermediate values a model computes (node outputs, in graph order), for Distill…'s feature-pair pick. */
  valueNames: { params: { file: string }; result: Array<{ name: string; op: string }> };
};

/** One range of one tensor whose bytes the worker can reach without a copy. */
export interface StatsTask {
  name: string;
  dtype: number;
  shape: number[];
  source: string;
  start: number;
  end: number;
  storage:
    | { kind: 'shared'; buffer: SharedArrayBuffer; byteOffset: number; byteLength: number }
    | { kind: 'external'; modelFile: string; file: string; offset: number; length: number };
}

/** Requests the worker makes of its host: none yet. */
export type WorkerHostRequests = Record<never, never>;

/** Progress of a long job, at most every ~250 ms. */
export interface ProgressEvent extends EventMessage {
  type: 'progress';
  /** Fraction done in [0, 1], when known. */
  fraction?: number;
  message: string;
}

/** Events the worker sends to its host. */
export type FromWorkerEvent = ProgressEvent | LayerDoneEvent | DistillStepEvent | TrainStepEvent;

/** Events the host sends to the worker: none yet. */
export type ToWorkerEvent = never;
