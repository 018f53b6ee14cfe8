import type { Preset, PresetPass } from '../core/recipe/presets';
import type { RecipeIssue } from '../core/recipe/types';
import type { EventMessage } from './rpc';
import type { ReadyEvent } from './inspector';

export type { Preset, PresetPass } from '../core/recipe/presets';
export type { RecipeIssue } from '../core/recipe/types';

/** A pass parameter as the wizard draws it: a ParamSpec row without its check function (plain data). */
export interface ParamField {
  name: string;
  /** The CLI flag, e.g. `--min-sparsity`. */
  flag: string;
  type: 'number' | 'string' | 'enum' | 'list' | 'boolean';
  default?: number | string | boolean | string[];
  min?: number;
  max?: number;
  /** Enum values this version implements. */
  choices?: string[];
  help: string;
}

/** A pass the wizard can add to a custom recipe, with its parameter form. */
export interface PassForm {
  pass: PresetPass['pass'];
  summary: string;
  params: ParamField[];
}

/** Step 1: the model card. */
export interface ModelCard {
  file: string;
  name: string;
  format: string;
  fileBytes: number;
  params: number;
  layers: number;
  /** The most frequent ops, e.g. ['Conv ×2', 'Gemm ×2']. */
  ops: string[];
  inputs: Array<{ name: string; shape: Array<number | string | null> | null }>;
  /** The cached Layer Sensitivity analysis (the sidecar), most sensitive first, when there is one. */
  sensitivity?: { data: string; metric: string; stale: boolean; ranking: Array<{ layer: string; cost: number | null; choice?: string }> };
}

/** The wizard's opening state. */
export interface InitEvent extends EventMessage {
  type: 'init';
  model: ModelCard;
  presets: Preset[];
  passes: PassForm[];
  /** Where the recipe will be saved (beside the model), and its path relative to the workspace. */
  recipeFile: string;
  recipeRelative: string;
  /** The recipe's `model` field: the model's path relative to the recipe file. */
  modelRef: string;
  /** Default sample limit (whittle.calibration.maxSamples). */
  limit: number;
  /** A recipe already saved beside the model (to start from), if any. */
  existing?: unknown;
}

/** Progress of the running recipe. */
export interface RunProgressEvent extends EventMessage {
  type: 'runProgress';
  fraction?: number;
  message: string;
}

/** The run ended: a result, a cancel or an error. */
export interface RunFinishedEvent extends EventMessage {
  type: 'runFinished';
  result?: { output: string; outDir: string; sha256: string; sizeBytes: { before: number; after: number }; reportHtml: string; warnings: string[]; summary: string };
  cancelled?: boolean;
  /** After a cancel: whether a (marked) incomplete folder was left behind. */
  leftover?: string;
  error?: string;
}

/** Events to the Compress wizard. */
export type ToCompressEvent = InitEvent | RunProgressEvent | RunFinishedEvent;

/** The user pressed Run on a reviewed recipe. */
export interface RunEvent extends EventMessage {
  type: 'run';
  recipe: unknown;
}

/** The user pressed Cancel. */
export interface CancelEvent extends EventMessage {
  type: 'cancel';
}

/** Open the report of the last run. */
export interface OpenReportEvent extends EventMessage {
  type: 'openReport';
}

/** Events from the Compress wizard. */
export type FromCompressEvent = ReadyEvent | RunEvent | CancelEvent | OpenReportEvent;

/** A preview of the first samples of a data spec. */
export interface DataPreview {
  /** What the data is, in words ("idx images 60000 × 28 × 28", "image folder, 10 classes"). */
  description: string;
  /** Up to 8 samples as images: gray pixels (0..255) of a width × height grid, or a data: URL. */
  samples: Array<{ width: number; height: number; gray?: number[]; url?: string; label?: string }>;
  warning?: string;
}

/** Requests the Compress wizard makes of the host. */
export type CompressHostRequests = {
  /** An open dialog for data (file or folder); the path, or null when dismissed. */
  pickData: { params: Record<string, never>; result: string | null };
  /** The first samples of the data, as images when they are images. */
  previewData: { params: { data: string }; result: DataPreview };
  /** Schema problems of a recipe (validateRecipe). */
  validate: { params: { recipe: unknown }; result: RecipeIssue[] };
};

/** Requests the host makes of the wizard: none. */
export type CompressRequests = Record<never, never>;
