/**
 * `whittle finetune`: trains a model's weights on labelled data (pruned weights stay zero) and writes the run folder:
 * the model with provenance, recipe.whittle.json, report.json (the write-command contract plus the loss curve) and
 * report.md, each atomically; a run folder this call created is removed again if anything fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../atomicWrite';
import { replaceTensorData } from '../formats/onnx/edit';
import { OnnxModel, isParameter } from '../formats/onnx/model';
import { sha256File, writeOnnx } from '../formats/onnx/write';
import { modelBytes, runFolder } from '../passes/runFolder';
import type { EpName } from '../runtime/ep';
import { evaluate, type Progress } from '../runtime/evaluate';
import { commandRecipe, recipeStep, recipeText } from '../recipe/write';
import { finetuneParams } from './params';
import { InputError } from '../errors';
import type { WriteCommandResult } from '../passes/pass';
import { train, type TrainProgress, type TrainResult } from './loop';
import { calibrateActivations, insertWeightFakeQuant } from './qat';
import { runQuantize } from '../passes/quantize/run';
import type { ScaleZero } from '../passes/quantize/math';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';

/** What `whittle finetune` takes. */
export interface FinetuneParams {
  model: string;
  data: string;
  /** Evaluation data for before/after metrics and the best checkpoint (default: none; then --data's first 1000 samples give the metrics). */
  evalData?: string;
  epochs?: number;
  lr?: number;
  batch?: number;
  optimizer?: 'sgd' | 'adam' | 'adamw';
  momentum?: number;
  weightDecay?: number;
  schedule?: 'constant' | 'cosine';
  warmupSteps?: number;
  evalEvery?: number;
  /** Keep pruned (exactly zero) weights at zero (default true). */
  keepMasks?: boolean;
  limit?: number;
  evalLimit?: number;
  seed?: number;
  out?: string;
  /** Evaluation provider; training itself runs on the CPU EP in this version. */
  ep?: EpName;
  threads?: number;
  /**
   * Quantization-aware training at 8 or 4 weight bits: trains with per-channel weight fake-quant, then exports. 8: the
   * static U8S8 QDQ pass on the trained weights (calibrated on the first 512 samples of --data); 4: the trained
   * weights with their 4-bit fake-quant (weights on the 4-bit grid, stored as float). Both are evaluated on --eval-data.
   */
  qat?: 8 | 4;
  /**
   * Gradual magnitude pruning during the run (Zhu & Gupta's cubic schedule) to this final sparsity of the kernels and
   * matrices, reached at `pruneEnd` of the run (default 0.5), the rest fine-tuning at it; zeros in the input stay.
   */
  prune?: number;
  /** 'global' (one magnitude threshold, default), 'layer' (each kernel or matrix at the sparsity) or 'lamp' (one threshold on LAMP scores). */
  pruneScope?: 'global' | 'layer' | 'lamp';
  /** Fraction of the run at which pruning starts (default 0). */
  pruneStart?: number;
  /** Fraction of the run at which the final sparsity is reached (default 0.5). */
  pruneEnd?: number;
  /** With --qat: layers left in float (node or weight names, or op types), in training and in the export. */
  qatExclude?: string[];
  /**
   * With --qat: fake-quantize activations too (uint8 asymmetric, on the data input of each fake-quantized layer), with
   * ranges calibrated as the static quantize pass does (minmax over the first 512 samples of --data), held constant.
   */
  qatActivations?: boolean;
  /** Cross-entropy trains on logits times this (default 'auto': 5/RMS of the first batch's logits when that RMS exceeds 20, else 1). */
  logitScale?: number | 'auto';
}

/** The exported quantized model of a QAT run. */
export interface QatExport {
  bits: 8 | 4;
  output: string;
  accuracy: number;
  samples: number;
  sizeBytes: number;
}

/** The write-command contract object (DESIGN.md section 7) plus the training record. */
export interface FinetuneResult extends WriteCommandResult {
  /** Exact zeros over the elements of the matrix-like trained weights (kernels and matrices). */
  sparsity: number;
  metrics: WriteCommandResult['metrics'] & { accuracy?: { before: number; after: number; gainPt: number } };
  recipe: string;
  report: string;
  data: string;
  training: Omit<TrainResult, 'weights' | 'warnings'> & { epochs: number; batch: number; lr: number; optimizer: string; trainedWeights: string[] };
  /** With --qat: the quantized export (`output` stays the trained float model). */
  qat?: QatExport;
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

/** Fine-tunes a model and writes its run folder. */
export async function runFinetune(p: FinetuneParams, signal?: AbortSignal, progress: Progress = () => {}, onStep: (t: TrainProgress) => void = () => {}): Promise<FinetuneResult> {
  const source = path.resolve(p.model);
  const epochs = p.epochs ?? 1;
  const batch = p.batch ?? 64;
  const optimizer = p.optimizer ?? 'adam';
  const lr = p.lr ?? (optimizer === 'sgd' ? 0.01 : 0.001);
  for (const [name, v, min] of [['--epochs', epochs, 1], ['--batch', batch, 1]] as const) if (!Number.isSafeInteger(v) || v < min) throw new InputError(undefined, `${name} must be a whole number of at least ${min}, not ${v}`);
  if (p.qat !== undefined && p.qat !== 8 && p.qat !== 4) throw new InputError(undefined, `--qat must be 8 or 4, not ${String(p.qat)}`);
  if (!(lr > 0)) throw new InputError(undefined, `--lr must be a positive number, not ${p.lr}`);
  if (p.prune !== undefined && !(p.prune > 0 && p.prune < 1)) throw new InputError(undefined, `--prune must be a sparsity strictly between 0 and 1, not ${p.prune}`);
  if (p.prune !== undefined && p.keepMasks === false) throw new InputError(undefined, '--prune needs masks: drop --no-masks');
  if (p.pruneScope !== undefined && !['global', 'layer', 'lamp'].includes(p.pruneScope)) throw new InputError(undefined, `--prune-scope must be global, layer or lamp, not ${String(p.pruneScope)}`);
  for (const [name, v] of [['--prune-start', p.pruneStart], ['--prune-end', p.pruneEnd]] as const) if (v !== undefined && !(v >= 0 && v <= 1)) throw new InputError(undefined, `${name} must be a fraction of the run between 0 and 1, not ${v}`);
  if ((p.qatExclude?.length || p.qatActivations) && !p.qat) throw new InputError(undefined, `${p.qatActivations ? '--qat-activations' : '--qat-exclude'} needs --qat 8|4`);
  const model = OnnxModel.open(source);
  const unknown = (p.qatExclude ?? []).filter((x) => !model.graph.node.some((n) => n.name === x || n.opType === x) && !model.graph.initializer.some((t) => t.name === x));
  if (unknown.length) {
    model.close();
    throw new InputError(source, `--qat-exclude: no node, op type or weight named ${unknown.map((x) => `'${x}'`).join(', ')}`);
  }
  const { dir, created } = runFolder(source, 'finetune', p.out);
  try {
    const sourceSha256 = sha256File(source);
    const beforeBytes = modelBytes(model);
    const paramCount = [...model.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
    // Without --eval-data, the first 1000 samples of --data (fewer when it has fewer).
    const evalData = p.evalData ?? p.data;
    const evalLimit = p.evalLimit ?? (p.evalData ? undefined : 1000);
    const warnings: string[] = [];
    if (!p.evalData) warnings.push('no --eval-data given: before/after metrics use the first 1000 training samples, which the model trained on');

    progress(undefined, 'evaluating the original');
    const common = { data: evalData, ep: p.ep, limit: evalLimit, seed: p.seed, threads: p.threads };
    const before = await evaluate({ ...common, model: source }, signal, progress);

    let activations: Record<string, ScaleZero> | undefined;
    if (p.qat && p.qatActivations) {
      progress(undefined, 'calibrating activation ranges for QAT');
      activations = await calibrateActivations(model, { bits: p.qat, exclude: p.qatExclude }, p.data, { signal, warnings, seed: p.seed, limit: 512 });
    }

    progress(0, 'training');
    const result = await train(
      model,
      {
        data: p.data,
        evalData: p.evalData,
        epochs,
        batch,
        lr,
        optimizer: { kind: optimizer, momentum: p.momentum, weightDecay: p.weightDecay },
        schedule: { kind: p.schedule ?? 'constant', warmupSteps: p.warmupSteps },
        seed: p.seed,
        limit: p.limit,
        evalLimit: p.evalLimit,
        evalEvery: p.evalEvery,
        keepMasks: p.keepMasks,
        threads: p.threads,
        ...(p.qat ? { qat: { bits: p.qat, exclude: p.qatExclude, activations } } : {}),
        ...(p.prune !== undefined ? { prune: { sparsity: p.prune, scope: p.pruneScope, start: p.pruneStart, end: p.pruneEnd } } : {}),
        logitScale: p.logitScale,
      },
      signal,
      (t) => {
        progress(t.step / t.totalSteps, `epoch ${t.epoch + 1}/${epochs}, step ${t.step}/${t.totalSteps}, loss ${t.loss.toFixed(4)}, ${Math.round(t.samplesPerSec)} samples/s`);
        onStep(t);
      },
    );
    warnings.push(...result.warnings);
    for (const [name, w] of result.weights) replaceTensorData(model.graph, name, w);

    const steps = { pass: 'finetune', params: { epochs, batch, lr, optimizer, momentum: p.momentum, weightDecay: p.weightDecay, schedule: p.schedule ?? 'constant', warmupSteps: p.warmupSteps, keepMasks: p.keepMasks ?? true, seed: p.seed ?? 0, data: p.data, evalData: p.evalData, ...(p.qat ? { qat: p.qat, qatExclude: p.qatExclude ?? [], qatActivations: !!p.qatActivations } : {}), ...(p.prune !== undefined ? { prune: p.prune, pruneScope: p.pruneScope ?? 'global', pruneStart: p.pruneStart ?? 0, pruneEnd: p.pruneEnd ?? 0.5 } : {}), logitScale: p.logitScale ?? 'auto' } };
    const given = { epochs: p.epochs, lr: p.lr, batch: p.batch, optimizer: p.optimizer, momentum: p.momentum, weightDecay: p.weightDecay, schedule: p.schedule, warmup: p.warmupSteps, evalData: p.evalData, evalEvery: p.evalEvery, evalLimit: p.evalLimit, noMasks: p.keepMasks === false ? true : undefined, qat: p.qat !== undefined ? String(p.qat) : undefined, qatExclude: p.qatExclude, qatActivations: p.qatActivations, prune: p.prune, pruneScope: p.pruneScope, pruneStart: p.pruneStart, pruneEnd: p.pruneEnd, logitScale: p.logitScale !== undefined ? String(p.logitScale) : undefined };
    const recipe = commandRecipe({ dir, source, sourceSha256, data: p.data, seed: p.seed, ep: p.ep, limit: p.limit, passes: [recipeStep('finetune', given, dir, finetuneParams)] });
    const out = path.join(dir, path.basename(source).replace(/\.onnx$/i, '') + '.onnx');
    const written = writeOnnx(model, out, { provenance: { sourceSha256, recipe: JSON.stringify([steps]) } });
    const afterBytes = fs.statSync(written.file).size + (written.dataFile ? fs.statSync(written.dataFile).size : 0);

    progress(undefined, 'evaluating the fine-tuned model');
    const after = await evaluate({ ...common, model: out, reference: source }, signal, progress);
    for (const w of after.warnings) if (!warnings.includes(w)) warnings.push(w);

    let qat: QatExport | undefined;
    if (p.qat === 8) {
      progress(undefined, 'exporting the QAT model to static U8S8');
      const q = await runQuantize({ model: out, mode: 'static', data: evalData, calibData: p.data, calibLimit: 512, out: path.join(dir, 'int8'), ep: p.ep, limit: evalLimit, seed: p.seed, exclude: p.qatExclude ?? [] }, signal, progress);
      for (const w of q.warnings) if (!warnings.includes(w)) warnings.push(w);
      qat = { bits: 8, output: q.output, accuracy: q.metrics.after.accuracy ?? NaN, samples: q.metrics.after.samples, sizeBytes: q.sizeBytes.after };
    } else if (p.qat === 4) {
      progress(undefined, 'writing the 4-bit weight model');
      const file = out.replace(/\.onnx$/, '.w4.onnx');
      writeFileAtomic(file, toBinary(ModelProtoSchema, insertWeightFakeQuant(model.proto, { bits: 4, exclude: p.qatExclude, activations }).proto));
      const e = await evaluate({ ...common, model: file }, signal, progress);
      qat = { bits: 4, output: file, accuracy: e.accuracy ?? NaN, samples: e.samples, sizeBytes: fs.statSync(file).size };
    }

    let zeros = 0;
    let elements = 0;
    for (const [name, w] of result.weights) {
      const shape = model.weights().get(name)!.ref.shape;
      if (shape.filter((d) => d > 1).length < 2) continue;
      elements += w.length;
      for (let i = 0; i < w.length; i++) if (w[i] === 0) zeros++;
    }
    const nonzeroParams = paramCount - [...result.weights.values()].reduce((a, w) => a + w.reduce((z, x) => z + (x === 0 ? 1 : 0), 0), 0);
    const { weights: _w, warnings: _warn, ...record } = result;
    const res: FinetuneResult = {
      output: out,
      sizeBytes: { before: beforeBytes, after: afterBytes },
      params: { before: paramCount, after: nonzeroParams },
      sparsity: elements ? zeros / elements : 0,
      metrics: {
        before: { samples: before.samples, ...(before.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
        after: { samples: after.samples, ...(after.accuracy !== undefined ? { accuracy: after.accuracy } : {}) },
        ...(after.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
        ...(after.cosine !== undefined ? { cosine: after.cosine } : {}),
        ...(before.accuracy !== undefined && after.accuracy !== undefined ? { accuracy: { before: before.accuracy, after: after.accuracy, gainPt: round((after.accuracy - before.accuracy) * 100, 4) } } : {}),
      },
      latencyMs: { before: before.latencyMs.median, after: after.latencyMs.median },
      ep: after.ep,
      warnings,
      recipe: path.join(dir, 'recipe.whittle.json'),
      report: path.join(dir, 'report.json'),
      data: after.data,
      training: { ...record, epochs, batch, lr, optimizer, trainedWeights: [...result.weights.keys()] },
      ...(qat ? { qat } : {}),
    };
    writeFileAtomic(res.recipe, recipeText(recipe));
    writeFileAtomic(path.join(dir, 'report.md'), reportMarkdown(res));
    writeFileAtomic(res.report, JSON.stringify(res, null, 2) + '\n');
    return res;
  } catch (err) {
    if (created) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    model.close();
  }
}

/** report.md: the run in a few lines and the loss curve as a table. */
function reportMarkdown(r: FinetuneResult): string {
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(2)}%`);
  const t = r.training;
  return [
    `# Fine-tune: ${path.basename(r.output)}`,
    '',
    `${t.epochs} epoch(s), batch ${t.batch}, ${t.optimizer} at lr ${t.lr}, ${t.steps} steps, ${t.samplesPerSec} samples/s (training on the CPU EP)${t.logitScale !== 1 ? `; cross-entropy on the logits times ${t.logitScale.toPrecision(3)}` : ''}.`,
    '',
    `| | before | after |`,
    `|---|---:|---:|`,
    `| accuracy | ${pct(r.metrics.before.accuracy)} | ${pct(r.metrics.after.accuracy)} |`,
    `| latency (ms, median) | ${r.latencyMs.before} | ${r.latencyMs.after} |`,
    `| size (bytes) | ${r.sizeBytes.before} | ${r.sizeBytes.after} |`,
    '',
    `Sparsity of the trained kernels and matrices: ${pct(r.sparsity)}${t.masks.length ? ` (pruned zeros held at zero in ${t.masks.map((m) => m.name).join(', ')})` : ''}.`,
    ...(t.pruneRounds?.length ? ['', `Gradual pruning: ${t.pruneRounds.length} rounds from step ${t.pruneRounds[0].step} to ${t.pruneRounds.at(-1)!.step}, reaching ${pct(t.pruneRounds.at(-1)!.sparsity)}.`] : []),
    ...(t.best ? ['', `Kept the weights of step ${t.best.step} (evaluation accuracy ${pct(t.best.accuracy)}).`] : []),
    '',
    '| step | loss | lr |',
    '|---:|---:|---:|',
    ...t.curve.map((c) => `| ${c.step} | ${c.loss.toFixed(4)} | ${c.lr.toPrecision(3)} |`),
    ...(r.qat ? ['', `QAT export (${r.qat.bits === 8 ? 'static U8S8 QDQ' : '4-bit weights'}): ${path.basename(r.qat.output)}, accuracy ${pct(r.qat.accuracy)} on ${r.qat.samples} samples.`] : []),
    ...(r.warnings.length ? ['', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}
