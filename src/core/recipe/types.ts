import type { EpName } from '../runtime/ep';
import type { ModelFigures, WriteCommandResult } from '../passes/pass';
import type { ReportData } from '../report/types';

/** The passes a recipe can chain. */
export type PassName = 'prune' | 'quantize' | 'finetune' | 'distill';

/**
 * One step of a recipe: the pass and its parameters, named as the CLI flags in camelCase
 * (`--min-sparsity 0.2` is `"minSparsity": 0.2`). Per-pass `data`, `seed`, `ep`, `limit` override the recipe's.
 */
export type RecipePass = { pass: PassName; [param: string]: unknown };

/**
 * A `*.whittle.json` recipe (DESIGN.md section 7, `whittle run`): a model and the passes to run on it in order,
 * each on the previous one's output. Paths are relative to the recipe file.
 *
 * Top-level `data`, `seed`, `ep` and `limit` are the defaults of every pass. Top-level `maxDrop` is the budget of
 * the whole chain: the final model's drop (accuracy points with labelled data, top-1 disagreement points
 * otherwise) against the source is checked after the last pass, and the run fails with nothing written when it
 * is exceeded; it is also the default `maxDrop` of the passes that take one (prune, quantize) unless they set
 * their own.
 *
 * `tool`, `version` and `sourceSha256` are provenance the single-pass commands write; `whittle run` ignores
 * them except that a `sourceSha256` that no longer matches the model gives a warning.
 */
export interface Recipe {
  $schema?: string;
  model: string;
  data?: string;
  seed?: number;
  ep?: EpName;
  out?: string;
  maxDrop?: number;
  limit?: number;
  /** Fixed sizes of dynamic inputs (the CLI's --shape NAME=1x3x224x224). */
  shapes?: Record<string, number[]>;
  passes: RecipePass[];
  tool?: string;
  version?: string;
  sourceSha256?: string;
}

/** One problem in a recipe, located by a JSON pointer (e.g. `/passes/0/sparsity`). */
export interface RecipeIssue {
  path: string;
  message: string;
}

/** Figures of one model on the evaluation data. */
export type RecipeFigures = ModelFigures;

/** One pass of a run: what it wrote and its own report.json. */
export interface RecipeStep {
  pass: PassName;
  output: string;
  report: string;
}

/**
 * What `whittle run` returns: the write-command contract object (DESIGN.md section 7) for the whole chain,
 * source against final model, plus where everything went.
 */
export interface RecipeResult extends WriteCommandResult {
  /** Exact zeros over all elements of the final model's layer weights (quantized weights as they compute: dequantized). */
  sparsity: number;
  metrics: WriteCommandResult['metrics'] & { accuracy?: { before: number; after: number; dropPt: number } };
  /** The recipe file run (absent when the recipe came as an object without a file). */
  recipe?: string;
  /** The run folder. */
  outDir: string;
  /** SHA-256 of the output model file. */
  sha256: string;
  steps: RecipeStep[];
  /** report.json, report.md and report.html in the run folder. */
  report: string;
  reportMd: string;
  reportHtml: string;
  /** The normalised recipe written to the run folder (re-runnable). */
  recipeOut: string;
  /** The chain budget (top-level maxDrop) and the drop measured on the final model. */
  budget?: { maxDropPt: number; metric: 'accuracy' | 'top1Agreement'; dropPt: number };
  data: string;
  /** What report.html and report.md show (also in report.json). */
  reportData: ReportData;
}
