import * as fs from 'node:fs';
import * as path from 'node:path';
import { OnnxModel } from '../core/formats/onnx/model';
import { sha256File, writeOnnx } from '../core/formats/onnx/write';
import { outputDir } from '../core/output';
import type { EpName } from '../core/runtime/ep';
import { WorkerClient } from '../core/worker/client';
import { CancelledError, RpcError } from '../protocol/rpc';
import type { WorkerRequests } from '../protocol/worker';
import { InputError, NotImplementedError, oneLine } from '../core/errors';
import { inspectModel, type ModelSummary } from '../core/inspect';
import type { EvalResult } from '../core/runtime/evaluate';
import type { AnalyzeResult } from '../protocol/analysis';
import { writeFileAtomic } from '../core/atomicWrite';
import { buildSampleModel } from '../core/samples/sampleModel';
import { version } from '../core/version';
import { flagSpecs, parseParams } from '../core/passes/pass';
import { prunePass, type PruneOptions } from '../core/passes/prune/unstructured';
import type { PruneResult } from '../core/passes/run';
import type { FinetuneResult } from '../core/train/finetune';
import { finetuneOptions, finetuneParams } from '../core/train/params';
import { loadRecipe } from '../core/recipe/run';
import { resolveSpec } from '../core/recipe/write';
import type { RecipeResult } from '../core/recipe/types';
import { distillParams } from '../core/passes/distill/params';
import type { DistillParams, DistillResult } from '../core/passes/distill/types';
import { normalizeQuantizeOptions, quantizePass } from '../core/passes/quantize/index';
import type { QuantizeOptions } from '../core/passes/quantize/params';
import type { QuantizeResult } from '../core/passes/quantize/run';
import type { TfjsQuantDtype, TfjsQuantizeResult } from '../core/passes/quantize/tfjs';
import type { TfjsPruneResult } from '../core/passes/prune/tfjs';
import type { TfjsEncoding } from '../core/formats/tfjs/write';
import { detectFormat } from '../core/formats/detect';
import { commonFlags, flagHelp, parseArgs, type FlagSpec, type ParsedArgs } from './args';

/** A CLI command: its usage line, summary, its own flags, and what it does. */
interface Command {
  usage: string;
  summary: string;
  flags?: FlagSpec[];
  run?: (args: ParsedArgs) => Promise<unknown> | unknown;
}

const commands: Record<string, Command> = {
  inspect: {
    usage: 'inspect <model> [--json]',
    summary: 'show a model: format, opsets, inputs, outputs, parameters, and per-layer weight statistics',
    run: ({ positionals }) => inspectModel(requireModel(positionals)),
  },
  rewrite: {
    usage: 'rewrite <model> [--out DIR] [--external-data auto|always|never]',
    summary: 'write a model back losslessly (with provenance), moving weights to or from an external data file',
    flags: [{ name: 'external-data', value: 'MODE', choices: ['auto', 'always', 'never'], help: 'auto (default): external past 2 GB or when the source was; always; never' }],
    run: ({ positionals, flags }) => {
      const file = requireModel(positionals);
      const model = OnnxModel.open(file);
      try {
        const out = path.join(outputDir(file, 'rewrite', flags.out as string | undefined), path.basename(file));
        const result = writeOnnx(model, out, {
          externalData: (flags['external-data'] as 'auto' | 'always' | 'never' | undefined) ?? 'auto',
          provenance: { sourceSha256: sha256File(file) },
        });
        const sizeOf = (f: string, data?: string) => fs.statSync(f).size + (data ? fs.statSync(data).size : 0);
        const sourceData = [...new Set([...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : [])))];
        return {
          output: result.file,
          dataFile: result.dataFile ?? null,
          sizeBytes: { before: sourceData.reduce((a, f) => a + fs.statSync(f).size, fs.statSync(file).size), after: sizeOf(result.file, result.dataFile) },
        };
      } finally {
        model.close();
      }
    },
  },
  sample: {
    usage: 'sample <out.onnx>',
    summary: 'write the bundled sample model (a LeNet-style MNIST CNN with seeded weights)',
    run: ({ positionals }) => {
      const out = positionals[0];
      if (!out) throw new InputError(undefined, 'sample needs an output path, e.g. whittle sample lenet.onnx');
      const bytes = buildSampleModel();
      writeFileAtomic(out, bytes);
      return { output: path.resolve(out), sizeBytes: bytes.byteLength };
    },
  },
  eval: {
    usage: 'eval <model> --data D [--reference M] [--batch N]',
    summary: 'accuracy, agreement with a reference (top-1, KL, cosine, SQNR) and warm latency on data',
    flags: [
      { name: 'reference', value: 'MODEL', help: "compare with another model's outputs on the same data" },
      { name: 'batch', value: 'N', help: 'samples per run when the model takes batches (default 32)' },
      { name: 'threads', value: 'N', help: 'onnxruntime intra-op threads (default: cores - 1)' },
      { name: 'output', value: 'NAME', help: 'TF.js: the output to score (default: the last)' },
    ],
    run: ({ positionals, flags }) => {
      const model = requireModel(positionals);
      if (!flags.data) throw new InputError(undefined, 'eval needs --data SPEC (a dataset manifest, an image folder, an idx file, a folder of input_N.pb, or random)');
      return inWorker('evaluate', {
        model,
        data: String(flags.data),
        reference: flags.reference as string | undefined,
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
        batch: intFlag(flags, 'batch'),
        threads: intFlag(flags, 'threads'),
        shapes: shapeFlags(flags),
        output: flags.output as string | undefined,
      });
    },
  },
  analyze: {
    usage: 'analyze <model> --data D --kind prune|quant|both [--sparsities 0,0.5,0.9] [--bits 8,4] [--exclude A,B] [--limit N]',
    summary: 'per-layer sensitivity: prune or quantize each layer alone and measure the change against the unmodified model',
    flags: [
      { name: 'kind', value: 'KIND', choices: ['prune', 'quant', 'both'], help: 'which sweeps to run (default both)' },
      { name: 'sparsities', value: 'LIST', help: 'pruning levels, e.g. 0,0.5,0.9 (default 0,0.1,...,0.9,0.95)' },
      { name: 'bits', value: 'LIST', help: 'quantization bit widths, e.g. 8,4 (default 8,6,4,3,2)' },
      { name: 'exclude', value: 'LAYERS', help: 'comma-separated layer names to leave out' },
      { name: 'no-cache', help: 'recompute even when the same model, data and settings were analysed before' },
    ],
    run: ({ positionals, flags }) => {
      const model = requireModel(positionals);
      if (!flags.data) throw new InputError(undefined, 'analyze needs --data SPEC (a dataset manifest, an image folder, an idx file, a folder of input_N.pb, or random)');
      return inWorker('analyze', {
        model,
        data: String(flags.data),
        kind: (flags.kind as 'prune' | 'quant' | 'both' | undefined) ?? 'both',
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
        shapes: shapeFlags(flags),
        sparsities: listFlag(flags, 'sparsities')?.map((s) => numberOf(s, 'sparsities')),
        bits: listFlag(flags, 'bits')?.map((s) => numberOf(s, 'bits')),
        exclude: listFlag(flags, 'exclude'),
        noCache: flags['no-cache'] === true,
      });
    },
  },
  prune: {
    usage: 'prune <model> --sparsity S [--method magnitude|wanda|sparsegpt] [--scope layer|global|sensitivity] [--structured channels] [--pattern 2:4] [--exclude A,B] [--data D] [--calib-data D] [--max-drop PT]',
    summary: 'magnitude, Wanda or SparseGPT pruning (per layer, global, sensitivity-guided or N:M), or structured channel removal, into a new model, measured before and after on --data (calibrated on --calib-data, e.g. file#:1000 and file#1000:)',
    flags: [
      ...flagSpecs(prunePass.params),
      { name: 'tfjs-dtype', value: 'D', choices: ['float32', 'float16', 'uint8', 'uint16'], help: 'TF.js: stored form of the pruned weights (default float32; zeros gzip well)' },
      { name: 'shard-size', value: 'BYTES', help: 'TF.js: bytes per weight shard (default 4194304)' },
      { name: 'output', value: 'NAME', help: 'TF.js: the output to score (default: the last)' },
    ],
    run: ({ positionals, flags }) => {
      const model = requireModel(positionals);
      if (isTfjsModel(model)) return pruneTfjs(model, flags);
      // Validate here so bad flags fail before a worker starts; the worker validates again (recipes come that way too).
      const options = parseParams<PruneOptions>(prunePass.params, flags);
      return inWorker('prune', {
        ...options,
        model,
        data: flags.data as string | undefined,
        out: flags.out as string | undefined,
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
        shapes: shapeFlags(flags),
      });
    },
  },
  quantize: {
    usage: 'quantize <model> --mode weight-only|static|dynamic|fp16 [--bits 8|4] [--per-channel] [--symmetric] [--calibration minmax|percentile|entropy|mse] [--max-drop P] [--data D]',
    summary: 'post-training quantization into a new model, timed against the original and measured before and after',
    flags: [
      ...flagSpecs(quantizePass.params),
      { name: 'calib-data', value: 'SPEC', help: 'calibration data (default: --data); a SPEC may end in #A:B to take samples A to B-1, e.g. t10k-images-idx3-ubyte.gz#:512' },
      { name: 'calib-limit', value: 'N', help: 'calibration samples cap (default: --limit)' },
      { name: 'max-tries', value: 'N', help: '--max-drop: quantize-and-evaluate tries the fallback may spend (default 8)' },
      { name: 'max-seconds', value: 'S', help: '--max-drop: start no new try after S seconds; the best model found so far is written' },
      { name: 'tfjs-dtype', value: 'D', choices: ['uint8', 'uint16', 'float16', 'mix'], help: 'TF.js: stored form of the weights; mix = uint8, with the layers that cost accuracy in float16 (--max-drop, default 0.2)' },
      { name: 'shard-size', value: 'BYTES', help: 'TF.js: bytes per weight shard (default 4194304)' },
      { name: 'output', value: 'NAME', help: 'TF.js: the output to score (default: the last)' },
    ],
    run: ({ positionals, flags }) => {
      const model = requireModel(positionals);
      if (isTfjsModel(model)) return quantizeTfjs(model, flags);
      const options = normalizeQuantizeOptions(parseParams<QuantizeOptions>(quantizePass.params, flags));
      return inWorker('quantize', {
        ...options,
        model,
        data: flags.data as string | undefined,
        calibData: flags['calib-data'] as string | undefined,
        calibLimit: intFlag(flags, 'calib-limit'),
        maxTries: intFlag(flags, 'max-tries'),
        maxSeconds: intFlag(flags, 'max-seconds'),
        out: flags.out as string | undefined,
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
        shapes: shapeFlags(flags),
      });
    },
  },
  finetune: {
    usage: 'finetune <model> --data D --epochs E [--lr LR] [--batch N] [--optimizer sgd|adam|adamw] [--eval-data D2] [--schedule constant|cosine] [--no-masks] [--qat 8|4 [--qat-activations] [--qat-exclude A,B]] [--prune S [--prune-scope global|layer|lamp] [--prune-end F]] [--logit-scale auto|X]',
    summary: 'train a model further on labelled data (after pruning: pruned weights stay zero), measured before and after on --eval-data',
    flags: flagSpecs(finetuneParams),
    run: ({ positionals, flags }) => {
      const model = requireModel(positionals);
      if (isTfjsModel(model)) throw new InputError(model, 'finetune takes ONNX models in this version');
      if (flags.data === undefined) throw new InputError(undefined, 'finetune needs --data D (labelled training data)');
      return inWorker('finetune', {
        model,
        data: flags.data as string,
        ...finetuneOptions(parseParams<Record<string, unknown>>(finetuneParams, flags)),
        out: flags.out as string | undefined,
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
      });
    },
  },
  run: {
    usage: 'run <recipe.whittle.json> [--out DIR] [--data D] [--ep EP] [--limit N] [--seed N]',
    summary: "run a recipe: its passes in order, each on the previous output, into one run folder with the final model, the normalised recipe and report.json, report.md and report.html; --data, --ep, --limit, --seed and --shape replace the recipe's top-level settings",
    run: ({ positionals, flags }) => {
      const file = positionals[0];
      if (!file) throw new InputError(undefined, 'run needs a recipe file, e.g. whittle run lenet.whittle.json');
      // Validate here so a bad recipe fails with its JSON path before a worker starts.
      const loaded = loadRecipe({ file });
      const out = flags.out as string | undefined;
      const overrides = {
        ...(flags.data !== undefined ? { data: resolveSpec(String(flags.data), process.cwd()) } : {}),
        ...(flags.ep !== undefined ? { ep: flags.ep as EpName } : {}),
        ...(flags.limit !== undefined ? { limit: intFlag(flags, 'limit') } : {}),
        ...(flags.seed !== undefined ? { seed: intFlag(flags, 'seed') } : {}),
        ...(flags.shape !== undefined ? { shapes: shapeFlags(flags) } : {}),
      };
      if (!Object.keys(overrides).length) return inWorker('runRecipe', { file, out });
      const recipe = { ...loaded.recipe, ...overrides };
      loadRecipe({ recipe, baseDir: loaded.baseDir, file: loaded.file });
      return inWorker('runRecipe', { recipe, baseDir: loaded.baseDir, file: loaded.file, out });
    },
  },
  distill: {
    usage: 'distill --teacher T --student S|derive:RATIO --data D [--eval-data D2] [--epochs E] [--temperature 4] [--alpha 0.5] [--features T:S,...] [--feature-loss mse|cosine|attention]',
    summary: "knowledge distillation: train a student (a model, or derive:RATIO, the teacher's width pruned to RATIO of its parameters) on a frozen teacher's soft targets and paired features",
    flags: [
      { name: 'teacher', value: 'MODEL', help: 'the frozen teacher (.onnx)' },
      { name: 'student', value: 'S', help: "the student (.onnx), or derive:RATIO (e.g. derive:0.25: the teacher's channels structured-pruned to about 25% of its parameters)" },
      { name: 'eval-data', value: 'SPEC', help: 'held-out data for the metrics, the best checkpoint and the diagnostics (default: the first 1000 samples of --data, with a warning)' },
      { name: 'eval-limit', value: 'N', help: 'cap on evaluation samples' },
      { name: 'cache-dir', value: 'DIR', help: "teacher-output cache folder (default: distill-cache beside the run folder)" },
      { name: 'threads', value: 'N', help: 'onnxruntime intra-op threads (default: cores - 1)' },
      ...flagSpecs(distillParams),
    ],
    run: ({ flags }) => {
      if (flags.teacher === undefined) throw new InputError(undefined, 'distill needs --teacher MODEL');
      if (flags.student === undefined) throw new InputError(undefined, 'distill needs --student MODEL or --student derive:RATIO');
      if (flags.data === undefined) throw new InputError(undefined, 'distill needs --data D (training data; labels optional)');
      const parsed = parseParams<Record<string, unknown>>(distillParams, flags);
      return inWorker('distill', {
        ...(parsed as Partial<DistillParams>),
        teacher: String(flags.teacher),
        student: String(flags.student),
        data: String(flags.data),
        evalData: flags['eval-data'] as string | undefined,
        evalLimit: intFlag(flags, 'eval-limit'),
        cacheDir: flags['cache-dir'] as string | undefined,
        threads: intFlag(flags, 'threads'),
        out: flags.out as string | undefined,
        ep: (flags.ep as EpName | undefined) ?? 'auto',
        limit: intFlag(flags, 'limit'),
        seed: intFlag(flags, 'seed'),
      });
    },
  },
};

/** True for a readable TF.js model.json; anything else goes the ONNX way, whose checks name the problem. */
function isTfjsModel(file: string): boolean {
  try {
    return detectFormat(file) === 'tfjs';
  } catch {
    return false;
  }
}

/** `whittle prune` on a TF.js model: magnitude pruning, per layer or global. */
function pruneTfjs(model: string, flags: ParsedArgs['flags']) {
  const supported = new Set(['sparsity', 'method', 'scope', 'exclude', 'tfjs-dtype', 'shard-size', 'output', 'data', 'out', 'limit', 'seed', 'shape', 'json', 'ep']);
  const other = Object.keys(flags).filter((f) => !supported.has(f));
  if (other.length) throw new InputError(undefined, `--${other[0]} is not available for TF.js models yet; TF.js pruning takes --sparsity, --scope layer|global, --exclude, --tfjs-dtype`);
  if (flags.method !== undefined && flags.method !== 'magnitude') throw new InputError(undefined, `--method ${String(flags.method)} is not available for TF.js models yet; use magnitude`);
  if (flags.scope !== undefined && flags.scope !== 'layer' && flags.scope !== 'global') throw new InputError(undefined, `--scope ${String(flags.scope)} is not available for TF.js models yet; use layer or global`);
  if (flags.sparsity === undefined) throw new InputError(undefined, 'prune needs --sparsity S (0 to 1)');
  return inWorker('pruneTfjs', {
    model,
    sparsity: numberOf(String(flags.sparsity), 'sparsity'),
    scope: flags.scope as 'layer' | 'global' | undefined,
    exclude: listFlag(flags, 'exclude'),
    dtype: flags['tfjs-dtype'] as TfjsEncoding | undefined,
    data: flags.data as string | undefined,
    output: flags.output as string | undefined,
    shardBytes: intFlag(flags, 'shard-size'),
    out: flags.out as string | undefined,
    limit: intFlag(flags, 'limit'),
    seed: intFlag(flags, 'seed'),
    shapes: shapeFlags(flags),
  });
}

/** What every model-writing command's result has for the before/after table (DESIGN.md section 7). */
interface WritingResult {
  sizeBytes: { before: number; after: number; gzip: number; gzipBefore: number };
  params?: { before: number; after: number };
  metrics: { accuracy?: { before: number; after: number }; top1Agreement?: number; cosine?: number | string | null };
  latencyMs: { before: number; after: number };
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const tableRow = (label: string, a: string, b: string) => `  ${label.padEnd(26)}${a.padStart(14)}${b.padStart(14)}`;

/**
 * The before/after rows shared by prune and quantize, ONNX and TF.js: file and gzip bytes, parameters
 * (`paramsLabel`, when given), accuracy, latency and agreement with the original.
 */
function beforeAfter(r: WritingResult, labels: { bytes: string; gzip: string; params?: string }, afterGzip: string[] = []): string[] {
  const m = r.metrics;
  return [
    tableRow('', 'before', 'after'),
    tableRow(labels.bytes, formatCount(r.sizeBytes.before), formatCount(r.sizeBytes.after)),
    tableRow(labels.gzip, formatCount(r.sizeBytes.gzipBefore), formatCount(r.sizeBytes.gzip)),
    ...afterGzip,
    ...(labels.params && r.params ? [tableRow(labels.params, formatCount(r.params.before), formatCount(r.params.after))] : []),
    ...(m.accuracy ? [tableRow('accuracy', pct(m.accuracy.before), pct(m.accuracy.after))] : []),
    tableRow('latency median (ms)', r.latencyMs.before.toFixed(3), r.latencyMs.after.toFixed(3)),
    m.top1Agreement !== undefined ? `  top-1 agreement with the original ${pct(m.top1Agreement)}, cosine ${m.cosine}` : '',
  ];
}

/** A before/after table of a TF.js prune run, then the per-layer sparsities. */
function formatPruneTfjs(r: TfjsPruneResult): string {
  const width = Math.max(5, ...r.layers.map((l) => l.layer.length));
  return [
    `${r.output}`,
    `  overall sparsity ${pct(r.sparsity)} of the pruned layers; ${r.shards.length} shard(s); data ${r.data ?? 'none'}; ${r.ep}`,
    ...beforeAfter(r, { bytes: 'bytes (json + shards)', gzip: 'gzip -9 bytes (shards)', params: 'params (zeros excluded)' }),
    '  layers:',
    ...r.layers.map((l) => `    ${l.layer.padEnd(width)}  ${l.op.padEnd(8)} ${pct(l.sparsity).padStart(8)}  (${formatCount(l.zeros)} of ${formatCount(l.params)})`),
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].filter(Boolean).join('\n');
}

/** `whittle quantize` on a TF.js model: --tfjs-dtype, or --mode weight-only (uint8; --bits 8) or fp16 (float16). */
function quantizeTfjs(model: string, flags: ParsedArgs['flags']) {
  const mode = flags.mode as string | undefined;
  let dtype = flags['tfjs-dtype'] as TfjsQuantDtype | undefined;
  if (mode && mode !== 'weight-only' && mode !== 'fp16') throw new InputError(undefined, `--mode ${mode} does not apply to TF.js models, which compute in float32 and store weights as uint8, uint16 or float16; use --mode weight-only, --mode fp16 or --tfjs-dtype`);
  if (flags.bits !== undefined && String(flags.bits) !== '8') throw new InputError(undefined, `TF.js stores weights in 8 or 16 bits (--tfjs-dtype uint16), not ${String(flags.bits)}`);
  if (!dtype) dtype = mode === 'fp16' ? 'float16' : mode === 'weight-only' ? 'uint8' : undefined;
  if (!dtype) throw new InputError(undefined, 'quantizing a TF.js model needs --tfjs-dtype uint8|uint16|float16|mix or --mode weight-only|fp16');
  const maxDrop = flags['max-drop'] !== undefined ? numberOf(String(flags['max-drop']), 'max-drop') : undefined;
  return inWorker('quantizeTfjs', {
    model,
    dtype,
    data: flags.data as string | undefined,
    calibData: flags['calib-data'] as string | undefined,
    calibLimit: intFlag(flags, 'calib-limit'),
    maxDrop,
    exclude: listFlag(flags, 'exclude'),
    output: flags.output as string | undefined,
    shardBytes: intFlag(flags, 'shard-size'),
    out: flags.out as string | undefined,
    limit: intFlag(flags, 'limit'),
    seed: intFlag(flags, 'seed'),
    shapes: shapeFlags(flags),
  });
}

/** A short before/after table of a TF.js quantize run, then the per-layer forms and their errors. */
function formatQuantizeTfjs(r: TfjsQuantizeResult): string {
  const width = Math.max(5, ...r.layers.map((l) => l.layer.length));
  return [
    `${r.output}`,
    `  tfjs ${r.dtype}; ${r.shards.length} shard(s): ${r.shards.map((s) => `${path.basename(s.file)} ${formatCount(s.bytes)} B`).join(', ')}; data ${r.data ?? 'none'}; ${r.ep}; scored output ${r.scoredOutput}`,
    ...beforeAfter(r, { bytes: 'bytes (json + shards)', gzip: 'gzip -9 bytes (shards)' }),
    r.mix ? `  mix (max drop ${r.mix.maxDropPt} pt on ${r.mix.chosenOn}): ${r.mix.reached ? 'reached' : 'NOT reached'}; ${r.mix.tries.map((t) => `${t.float16.length} float16 -> ${t.dropPt} pt`).join(', ')}` : '',
    '  layers:                          stored    bytes   SQNR dB  (uint8 / float16 SQNR; uint8 alone: drop)',
    ...r.layers.map((l) => `    ${l.layer.padEnd(width)}  ${l.op.padEnd(8)} ${l.encoding.padEnd(8)} ${String(l.bytes).padStart(8)} ${String(l.sqnrDb).padStart(8)}  (${l.candidates.uint8} / ${l.candidates.float16}${l.uint8DropPt !== undefined ? `; ${l.uint8DropPt} pt` : ''})${l.reason ? `  ${l.reason}` : ''}`),
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].filter(Boolean).join('\n');
}

/** A non-negative integer flag, or undefined when absent. */
function intFlag(flags: ParsedArgs['flags'], name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InputError(undefined, `option --${name} must be a whole number, not '${v}'`);
  return n;
}

/** A comma-separated flag as a list, or undefined when absent. */
function listFlag(flags: ParsedArgs['flags'], name: string): string[] | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  return String(v).split(',').map((x) => x.trim()).filter(Boolean);
}

/** A number in a list flag. */
function numberOf(s: string, name: string): number {
  const n = Number(s);
  if (!Number.isFinite(n)) throw new InputError(undefined, `option --${name} takes numbers, not '${s}'`);
  return n;
}

/** `--shape NAME=1x3x224x224` flags as a map. */
function shapeFlags(flags: ParsedArgs['flags']): Record<string, number[]> | undefined {
  const list = flags.shape as string[] | undefined;
  if (!list) return undefined;
  return Object.fromEntries(
    list.map((s) => {
      const m = /^([^=]+)=(\d+(?:x\d+)*)$/.exec(s);
      if (!m) throw new InputError(undefined, `--shape must look like NAME=1x3x224x224, not '${s}'`);
      return [m[1], m[2].split('x').map(Number)];
    }),
  );
}

/**
 * Runs a job in the compute worker (onnxruntime's run() blocks its thread), with progress on stderr when it
 * is a terminal, and Ctrl+C cancelling it: the worker is terminated at once.
 */
async function inWorker<K extends keyof WorkerRequests & string>(method: K, params: WorkerRequests[K]['params']): Promise<WorkerRequests[K]['result']> {
  const tty = process.stderr.isTTY;
  const client = new WorkerClient(path.join(__dirname, 'worker.js'), (event) => {
    if (event.type === 'progress' && tty) process.stderr.write(`\r\x1b[K${event.message}`);
  });
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    return await client.request(method, params, controller.signal);
  } catch (err) {
    if (err instanceof RpcError && err.input) throw new InputError(undefined, err.message);
    throw err;
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
    process.off('SIGINT', onSigint);
    client.dispose();
  }
}

function requireModel(positionals: string[]): string {
  const file = positionals[0];
  if (!file) throw new InputError(undefined, 'missing <model> argument (see --help)');
  return file;
}

/** A command's usage and summary: side by side when the usage is short, else the summary on its own line below. */
function usageLine(c: Command): string {
  return c.usage.length < 58 ? `  ${c.usage.padEnd(58)}${c.summary}` : `  ${c.usage}\n  ${' '.repeat(58)}${c.summary}`;
}

function helpText(): string {
  const ready = Object.entries(commands).filter(([, c]) => c.run);
  const planned = Object.entries(commands).filter(([, c]) => !c.run);
  return [
    `whittle ${version}: make neural networks smaller and faster, without Python`,
    '',
    'Usage: whittle <command> [options]',
    '',
    'Commands:',
    ...ready.map(([, c]) => usageLine(c)),
    '',
    ...(planned.length ? ['Planned, not available yet in this version:', ...planned.map(([, c]) => usageLine(c)), ''] : []),
    'Options:',
    flagHelp(commonFlags),
    '  --version                     print the version',
    '',
    'Exit codes: 0 success, 1 bad input (one line on stderr names the file and the problem), 2 internal error.',
  ].join('\n');
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

function formatSummary(s: ModelSummary): string {
  const shape = (dims: Array<number | string | null> | null) => (dims ? `[${dims.map((d) => d ?? '?').join(', ')}]` : '?');
  const lines = [
    `${s.file}`,
    s.tfjs
      ? `  format tfjs ${s.tfjs.kind} model, ${s.tfjs.shards.length} shard(s)${s.producer ? `, producer ${s.producer}` : ''}`
      : `  format ${s.format}, IR ${s.irVersion}, opsets ${Object.entries(s.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}${s.producer ? `, producer ${s.producer}` : ''}`,
    `  ${formatCount(s.params)} parameters, ${formatCount(s.bytes)} bytes of weights, ${formatCount(s.nodes)} nodes, file ${formatCount(s.fileBytes)} bytes`,
    '  inputs:',
    ...s.inputs.map((i) => `    ${i.name}  ${i.dtype} ${shape(i.shape)}`),
    '  outputs:',
    ...s.outputs.map((o) => `    ${o.name}  ${o.dtype} ${shape(o.shape)}`),
    '  ops:',
    `    ${Object.entries(s.opCounts).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`).join(', ')}`,
    '  layers:',
    ...s.layers.map((l) => `    ${l.op.padEnd(14)} ${l.name}  ${l.weights.map((w) => `${w.name}${shape(w.shape)}${w.stored ? ` (${w.stored})` : ''}`).join(' ')}`),
    ...s.warnings.map((w) => `  warning: ${w}`),
  ];
  return lines.join('\n');
}

function formatEval(r: EvalResult): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  return [
    `${r.samples} samples (${r.data}), batch ${r.batchSize}, ep ${r.ep}${r.output ? `, output ${r.output}` : ''}`,
    r.accuracy !== undefined ? `  accuracy ${pct(r.accuracy)}${r.top5 !== undefined ? `, top-5 ${pct(r.top5)}` : ''}` : '',
    r.top1Agreement !== undefined ? `  top-1 agreement with the reference ${pct(r.top1Agreement)}, KL ${r.kl?.toExponential(3)}` : '',
    ...Object.entries(r.outputs ?? {}).map(([name, o]) => `  ${name}: cosine ${o.cosine}, SQNR ${o.sqnrDb} dB, max |err| ${o.maxAbs}`),
    `  latency median ${r.latencyMs.median.toFixed(3)} ms, p90 ${r.latencyMs.p90.toFixed(3)} ms (${r.latencyMs.runs} warm runs, batch 1)`,
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].filter(Boolean).join('\n');
}

/** A ranked table: most sensitive layer first, one column per level. */
function formatAnalyze(r: AnalyzeResult): string {
  const byName = new Map(r.layers.map((l) => [l.name, l]));
  const first = r.layers[0];
  const heads = [...(first?.prune ?? []).map((p) => `p${Math.round(p.sparsity * 100)}%`), ...(first?.quant ?? []).map((q) => `${q.bits}b`)];
  const width = Math.max(5, ...r.layers.map((l) => l.name.length));
  const cell = (x: number) => x.toFixed(4).padStart(8);
  return [
    `${r.baseline.samples} samples (${r.data}), ep ${r.ep}; metric: ${r.baseline.metricName}${r.baseline.accuracy !== undefined ? ` (baseline accuracy ${(r.baseline.accuracy * 100).toFixed(2)}%)` : ''}`,
    `${'rank'.padEnd(5)}${'layer'.padEnd(width + 2)}${'op'.padEnd(8)}${'score'.padStart(8)}${heads.map((h) => h.padStart(8)).join('')}`,
    ...r.ranking.map((name, i) => {
      const l = byName.get(name)!;
      const points = [...(l.prune ?? []), ...(l.quant ?? [])].map((p) => cell(p.metric)).join('');
      return `${String(i + 1).padEnd(5)}${name.padEnd(width + 2)}${l.op.padEnd(8)}${cell(l.score)}${points}`;
    }),
    ...r.warnings.map((w) => `warning: ${w}`),
  ].join('\n');
}

/** A short before/after table of a prune run, then the per-layer sparsities. */
function formatPrune(r: PruneResult): string {
  const width = Math.max(5, ...r.layers.map((l) => l.layer.length));
  return [
    `${r.output}`,
    `  overall sparsity ${pct(r.sparsity)} of the pruned layers; data ${r.data}; ep ${r.ep}`,
    ...beforeAfter(r, { bytes: 'file bytes (dense)', gzip: 'gzip -9 bytes', params: 'params (zeroed excluded)' }, [tableRow('sparse (CSR) estimate', '', formatCount(r.sizeBytes.sparse))]),
    ...(r.structured ? [`  structured: ${r.structured.groups.length} channel groups pruned, ${r.structured.skipped.length} skipped (see report.md); importance ${r.structured.importance}`] : []),
    r.calibData ? `  calibrated on ${r.calibData}` : '',
    r.budget ? `  --max-drop ${r.budget.maxDropPt} pt: chose ${pct(r.budget.chosen)} after ${r.budget.tries.map((t) => `${pct(t.sparsity)} -> ${t.dropPt} pt`).join(', ')}` : '',
    '  layers:',
    ...r.layers.map((l) => `    ${l.layer.padEnd(width)}  ${l.op.padEnd(7)} ${pct(l.sparsity).padStart(8)}  (${formatCount(l.zeros)} of ${formatCount(l.params)}${l.shapeBefore ? ` removed; ${l.shapeBefore.join('x')} -> ${l.shape.join('x')}` : ''})`),
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].filter(Boolean).join('\n');
}

/** A short before/after table of a quantize run, then the per-layer formats. */
function formatQuantize(r: QuantizeResult): string {
  const m = r.metrics;
  const width = Math.max(5, ...r.layers.map((l) => l.layer.length));
  return [
    `${r.output}`,
    `  mode ${r.mode}${r.weightBits ? `, ${r.weightBits.bits}-bit weights (${r.weightBits.reason})` : ''}; data ${r.data}; calibration ${r.calibData}; ep ${r.ep}`,
    ...beforeAfter(r, { bytes: 'file bytes', gzip: 'gzip -9 bytes' }),
    m.top1Agreement === undefined && m.cosine !== undefined ? `  cosine ${m.cosine}, SQNR ${m.sqnrDb} dB` : '',
    `  preflight: ${r.preflight.ratio.toFixed(2)}x the original's latency at batch 1 (interleaved, ${r.preflight.runs} runs each)`,
    ...(r.fallback ? [`  fallback (max drop ${r.fallback.maxDropPt} pt): ${r.fallback.reached ? 'reached' : 'NOT reached'} with ${r.fallback.float.length} layer(s) in float${r.fallback.float.length ? `: ${r.fallback.float.join(', ')}` : ''}`] : []),
    '  layers:',
    ...r.layers.map((l) => `    ${l.layer.padEnd(width)}  ${l.op.padEnd(7)} ${l.format.padEnd(11)} ${l.bits ? `${l.bits}-bit` : ''} ${l.granularity ?? ''}${l.sqnrDb !== undefined ? `  ${Number.isFinite(l.sqnrDb) ? l.sqnrDb.toFixed(1) : 'exact'} dB` : ''}${l.reason ? `  (${l.reason})` : ''}`),
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].filter(Boolean).join('\n');
}

/** A short before/after table of a fine-tune run. */
function formatFinetune(r: FinetuneResult): string {
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(2)}%`);
  const row = (label: string, a: string, b: string) => `  ${label.padEnd(26)}${a.padStart(14)}${b.padStart(14)}`;
  const t = r.training;
  return [
    r.output,
    `  ${t.epochs} epoch(s), ${t.steps} steps of ${t.batch}, ${t.optimizer} lr ${t.lr}, ${t.samplesPerSec} samples/s; data ${r.data}; ep ${r.ep}`,
    row('', 'before', 'after'),
    row('accuracy', pct(r.metrics.before.accuracy), pct(r.metrics.after.accuracy)),
    row('latency median (ms)', r.latencyMs.before.toFixed(3), r.latencyMs.after.toFixed(3)),
    `  sparsity of the trained kernels and matrices ${pct(r.sparsity)}${t.masks.length ? ` (pruned zeros kept in ${t.masks.length} weight(s))` : ''}`,
    `  loss ${t.curve[0]?.loss.toFixed(4) ?? '?'} -> ${t.curve.at(-1)?.loss.toFixed(4) ?? '?'}${t.best ? `; kept step ${t.best.step} (${pct(t.best.accuracy)})` : ''}`,
    ...(r.qat ? [`  QAT export (${r.qat.bits === 8 ? 'static U8S8 QDQ' : '4-bit weights'}) ${r.qat.output}: accuracy ${pct(r.qat.accuracy)}`] : []),
    ...(t.pruneRounds?.length ? [`  gradual pruning: ${t.pruneRounds.length} rounds, steps ${t.pruneRounds[0].step}-${t.pruneRounds.at(-1)!.step}, to ${pct(t.pruneRounds.at(-1)!.sparsity)}`] : []),
    ...(t.logitScale !== undefined && t.logitScale !== 1 ? [`  cross-entropy on the logits times ${t.logitScale.toPrecision(3)} (--logit-scale)`] : []),
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].join('\n');
}

/** A short before/after table of a recipe run, its steps and where the reports are. */
function formatRun(r: RecipeResult): string {
  return [
    r.output,
    `  ${r.steps.map((s) => s.pass).join(' -> ')}; data ${r.data}; ep ${r.ep}; sha256 ${r.sha256}`,
    tableRow('', 'before', 'after'),
    tableRow('file bytes', formatCount(r.sizeBytes.before), formatCount(r.sizeBytes.after)),
    tableRow('params (zeroed excluded)', formatCount(r.params.before), formatCount(r.params.after)),
    ...(r.metrics.accuracy ? [tableRow('accuracy', pct(r.metrics.accuracy.before), pct(r.metrics.accuracy.after))] : []),
    tableRow('latency median (ms)', r.latencyMs.before.toFixed(3), r.latencyMs.after.toFixed(3)),
    ...(r.metrics.top1Agreement !== undefined ? [`  top-1 agreement with the source ${pct(r.metrics.top1Agreement)}, cosine ${r.metrics.cosine}`] : []),
    `  sparsity of the layer weights ${pct(r.sparsity)}${r.budget ? `; chain budget ${r.budget.maxDropPt} pt, measured ${r.budget.dropPt} pt` : ''}`,
    `  report ${r.reportHtml}`,
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].join('\n');
}

/** The distillation result in a few lines. */
function formatDistill(r: DistillResult): string {
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(2)}%`);
  const d = r.distill;
  return [
    `${r.output}`,
    `  teacher ${r.params.before} params, accuracy ${pct(r.metrics.before.accuracy)}; student ${r.params.after} params, accuracy ${pct(r.metrics.studentBefore?.accuracy)} -> ${pct(r.metrics.after.accuracy)}, top-1 agreement ${pct(r.metrics.top1Agreement)}`,
    `  T ${d.temperature}, alpha ${d.alpha}, ${d.features.length} feature pair(s); ${d.steps} steps, ${d.samplesPerSec} samples/s; teacher cache ${d.cache.hits} hits / ${d.cache.misses} misses`,
    `  latency ${r.latencyMs.before} -> ${r.latencyMs.after} ms; report ${r.report}`,
    ...r.warnings.map((w) => `  warning: ${w}`),
  ].join('\n');
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(helpText() + '\n');
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const json = rest.includes('--json');
  try {
    const command = commands[name];
    if (!command) throw new InputError(undefined, `unknown command '${name}' (see whittle --help)`);
    if (!command.run) throw new NotImplementedError(`The '${name}' command`);
    const flags = [...(command.flags ?? []), ...commonFlags];
    const args = parseArgs(rest, flags);
    if (args.flags.help) {
      process.stdout.write(`Usage: whittle ${command.usage}\n\n${command.summary}\n\nOptions:\n${flagHelp(flags)}\n`);
      return 0;
    }
    const result = await command.run(args);
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else if (name === 'inspect') process.stdout.write(formatSummary(result as ModelSummary) + '\n');
    else if (name === 'eval') process.stdout.write(formatEval(result as EvalResult) + '\n');
    else if (name === 'analyze') process.stdout.write(formatAnalyze(result as AnalyzeResult) + '\n');
    else if (name === 'prune' && (result as TfjsPruneResult).format === 'tfjs') process.stdout.write(formatPruneTfjs(result as TfjsPruneResult) + '\n');
    else if (name === 'prune') process.stdout.write(formatPrune(result as PruneResult) + '\n');
    else if (name === 'quantize' && (result as TfjsQuantizeResult).format === 'tfjs') process.stdout.write(formatQuantizeTfjs(result as TfjsQuantizeResult) + '\n');
    else if (name === 'quantize') process.stdout.write(formatQuantize(result as QuantizeResult) + '\n');
    else if (name === 'finetune') process.stdout.write(formatFinetune(result as FinetuneResult) + '\n');
    else if (name === 'run') process.stdout.write(formatRun(result as RecipeResult) + '\n');
    else if (name === 'distill') process.stdout.write(formatDistill(result as DistillResult) + '\n');
    else process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return 0;
  } catch (err) {
    if (err instanceof CancelledError) {
      process.stderr.write('whittle: cancelled\n');
      return 130;
    }
    const input = err instanceof InputError;
    process.stderr.write(`whittle: ${oneLine(err)}\n`);
    if (!input && !(err instanceof NotImplementedError) && process.env.WHITTLE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return input ? 1 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`whittle: internal error: ${oneLine(err)}\n`);
      process.exitCode = 2;
    },
  );
}
