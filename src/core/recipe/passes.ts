/**
 * The passes a recipe can run: each one's parameter table (the schema, the validation and the CLI flags come
 * from it) and how to run it as one step of a chain. Adding a pass is one entry here.
 */
import { detectFormat } from '../formats/detect';
import { InputError } from '../errors';
import type { ParamSpec } from '../passes/pass';
import { parseParams } from '../passes/pass';
import { prunePass } from '../passes/prune/unstructured';
import { quantizePass } from '../passes/quantize/index';
import { runPrune } from '../passes/run';
import { runQuantize } from '../passes/quantize/run';
import { runPruneTfjs } from '../passes/prune/tfjs';
import { runQuantizeTfjs, type TfjsQuantDtype } from '../passes/quantize/tfjs';
import type { TfjsEncoding } from '../formats/tfjs/write';
import { runFinetune } from '../train/finetune';
import { finetuneOptions, finetuneParams } from '../train/params';
import type { EpName } from '../runtime/ep';
import { pruneExtra, quantizeExtra } from './params';
export { stepSettings } from './params';
import type { Progress } from '../runtime/evaluate';

/** What a step gets: its input model, its folder, its own parameters (data paths resolved) and the run settings. */
export interface StepInput {
  model: string;
  out: string;
  params: Record<string, unknown>;
  data?: string;
  seed?: number;
  ep?: EpName;
  limit?: number;
  shapes?: Record<string, number[]>;
}

/** What a step wrote: its model, its report.json and the command's result object. */
export interface StepOutcome {
  output: string;
  report: string;
  result: Record<string, unknown>;
}

/** A pass a recipe can name. */
export interface RecipePassDef {
  summary: string;
  /** The pass's parameter table (shared with its CLI command). */
  params: ParamSpec[];
  /** The command's own parameters that are not the pass's (calibration limits, TF.js storage). */
  extra?: ParamSpec[];
  /** Whether the recipe's top-level maxDrop is this pass's default maxDrop. */
  takesMaxDrop?: boolean;
  /** A problem with a step's parameters taken together (after each is valid on its own), as [param, message]. */
  check?: (params: Record<string, unknown>, settings: { data?: string; maxDrop?: number }) => [string, string] | undefined;
  run(step: StepInput, signal?: AbortSignal, progress?: Progress): Promise<StepOutcome>;
}

function isTfjs(file: string): boolean {
  try {
    return detectFormat(file) === 'tfjs';
  } catch {
    return false;
  }
}

const num = (v: unknown) => (v === undefined ? undefined : Number(v));
const list = (v: unknown) => (v === undefined ? undefined : Array.isArray(v) ? v.map(String) : String(v).split(',').map((s) => s.trim()).filter(Boolean));
const outcome = (r: { output: string; report: string }): StepOutcome => ({ output: r.output, report: r.report, result: r as unknown as Record<string, unknown> });

/** The passes, by the name a recipe's `pass` gives. */
export const recipePasses: Record<string, RecipePassDef> = {
  prune: {
    summary: prunePass.summary,
    params: prunePass.params,
    extra: pruneExtra,
    takesMaxDrop: true,
    check: (p) => (p.sparsity === undefined && p.pattern === undefined && p.maxDrop === undefined ? ['sparsity', 'prune needs sparsity (0 to 1), a pattern, or maxDrop'] : undefined),
    run: async (s, signal, progress) => {
      const p = s.params;
      if (isTfjs(s.model)) {
        return outcome(
          await runPruneTfjs(
            { model: s.model, sparsity: Number(p.sparsity), scope: p.scope as 'layer' | 'global' | undefined, exclude: list(p.exclude), dtype: p.tfjsDtype as TfjsEncoding | undefined, data: s.data, output: p.output as string | undefined, shardBytes: num(p.shardSize), out: s.out, limit: s.limit, seed: s.seed, shapes: s.shapes },
            signal,
            progress,
          ),
        );
      }
      return outcome(await runPrune({ ...(p as object), model: s.model, data: s.data, out: s.out, ep: s.ep, limit: s.limit, seed: s.seed, shapes: s.shapes }, signal, progress));
    },
  },
  quantize: {
    summary: quantizePass.summary,
    params: quantizePass.params,
    extra: quantizeExtra,
    takesMaxDrop: true,
    check: (p, s) => (p.maxDrop !== undefined && !s.data && p.tfjsDtype === undefined ? ['maxDrop', 'maxDrop needs data: the drop is measured on it'] : undefined),
    run: async (s, signal, progress) => {
      const p = s.params;
      if (isTfjs(s.model)) {
        const mode = p.mode as string | undefined;
        const dtype = (p.tfjsDtype as TfjsQuantDtype | undefined) ?? (mode === 'fp16' ? 'float16' : mode === 'weight-only' ? 'uint8' : undefined);
        if (!dtype) throw new InputError(undefined, 'quantizing a TF.js model needs tfjsDtype uint8|uint16|float16|mix or mode weight-only|fp16');
        return outcome(
          await runQuantizeTfjs(
            { model: s.model, dtype, data: s.data, calibData: p.calibData as string | undefined, calibLimit: num(p.calibLimit), maxDrop: num(p.maxDrop), exclude: list(p.exclude), output: p.output as string | undefined, shardBytes: num(p.shardSize), out: s.out, limit: s.limit, seed: s.seed, shapes: s.shapes },
            signal,
            progress,
          ),
        );
      }
      return outcome(
        await runQuantize(
          { ...(p as object), model: s.model, data: s.data, calibData: p.calibData as string | undefined, calibLimit: num(p.calibLimit), maxTries: num(p.maxTries), maxSeconds: num(p.maxSeconds), out: s.out, ep: s.ep, limit: s.limit, seed: s.seed, shapes: s.shapes },
          signal,
          progress,
        ),
      );
    },
  },
  finetune: {
    summary: 'train a model further on labelled data (after pruning: pruned weights stay zero)',
    params: finetuneParams,
    check: (_p, s) => (!s.data ? ['data', 'finetune needs data (labelled training data)'] : undefined),
    run: async (s, signal, progress) => {
      if (isTfjs(s.model)) throw new InputError(s.model, 'finetune takes ONNX models in this version');
      if (!s.data) throw new InputError(undefined, 'finetune needs data (labelled training data)');
      const options = finetuneOptions(parseParams<Record<string, unknown>>(finetuneParams, s.params));
      return outcome(await runFinetune({ ...options, model: s.model, data: s.data, out: s.out, ep: s.ep, limit: s.limit, seed: s.seed }, signal, progress));
    },
  },
};

/** Passes a recipe may name that this version does not run yet. */
export const plannedPasses = ['distill'];
