/**
 * `whittle distill`: trains a student (a model, or `derive:RATIO` of the teacher) on a frozen teacher's soft targets
 * and paired features, and writes the run folder: the student with provenance (projections dropped), recipe.whittle.json,
 * report.json (the write-command contract plus the distillation record and diagnostics) and report.md, each
 * atomically; a run folder this call created is removed again if anything fails. Neither source model is changed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../atomicWrite';
import { CancelledError } from '../../../protocol/rpc';
import { InputError } from '../../errors';
import { replaceTensorData } from '../../formats/onnx/edit';
import { OnnxModel } from '../../formats/onnx/model';
import { sha256File, writeOnnx } from '../../formats/onnx/write';
import { evaluate, type Progress } from '../../runtime/evaluate';
import { toolName, version } from '../../version';
import { openDataset } from '../../data';
import { modelInputs } from '../../runtime/session';
import { parseParams } from '../pass';
import { modelBytes, runFolder } from '../runFolder';
import { deriveRatio, deriveStudent, paramCount, reinitialize, type DerivedStudent } from './derive';
import { parsePairs, valueNames } from './features';
import { distillTrain } from './loop';
import { distillParams } from './params';
import type { DistillParams, DistillProgress, DistillResult, FeatureLossKind } from './types';

/** The table's parameters after parsing (defaults filled). */
interface Parsed {
  epochs: number;
  batch: number;
  lr?: number;
  optimizer: 'sgd' | 'adam' | 'adamw';
  momentum?: number;
  weightDecay?: number;
  schedule: 'constant' | 'cosine';
  warmupSteps?: number;
  temperature: number;
  alpha: number;
  alphaSchedule: 'constant' | 'linear';
  alphaEnd?: number;
  features: string[];
  featureLoss: FeatureLossKind;
  featureWeight: number;
  attentionP: number;
  studentInit: 'keep' | 'random';
  evalEvery?: number;
  cacheMaxMb: number;
}

/** Root mean square of the first input over the first 256 samples of the data. */
async function inputRms(spec: string, model: OnnxModel): Promise<number> {
  const dataset = await openDataset(spec, modelInputs(model), { limit: 256 });
  let sum = 0;
  let count = 0;
  for await (const batch of dataset.batches(256)) {
    const data = Object.values(batch.inputs)[0].data;
    if (!(data instanceof Float32Array)) return 1;
    for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
    count += data.length;
  }
  return count ? Math.sqrt(sum / count) : 1;
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

/** Distils `p.teacher` into `p.student` and writes the run folder. */
export async function runDistill(p: DistillParams, signal?: AbortSignal, progress: Progress = () => {}, onStep: (s: DistillProgress) => void = () => {}): Promise<DistillResult> {
  if (!p.teacher) throw new InputError(undefined, 'option --teacher is required (the model to distil from)');
  if (!p.student) throw new InputError(undefined, 'option --student is required (a model file, or derive:RATIO to prune the teacher)');
  if (!p.data) throw new InputError(undefined, 'option --data is required (the training data; labels are optional)');
  const q = parseParams<Parsed>(distillParams, p as unknown as Record<string, unknown>);
  for (const [name, v] of [['--epochs', q.epochs], ['--batch', q.batch]] as const) if (!Number.isSafeInteger(v)) throw new InputError(undefined, `${name} must be a whole number, not ${v}`);
  const lr = q.lr ?? (q.optimizer === 'sgd' ? 0.01 : 0.001);
  if (!(lr > 0)) throw new InputError(undefined, `--lr must be a positive number, not ${q.lr}`);
  const seed = p.seed ?? 0;
  const teacherFile = path.resolve(p.teacher);
  const ratio = deriveRatio(p.student);
  const studentFile = ratio === undefined ? path.resolve(p.student) : undefined;
  const teacher = OnnxModel.open(teacherFile);
  let student: OnnxModel | undefined;
  let derived: DerivedStudent | undefined;
  try {
    if (ratio !== undefined) {
      progress(undefined, `deriving a student with at most ${Math.round(ratio * 100)}% of the teacher's parameters`);
      derived = deriveStudent(teacher, ratio);
      student = derived.model;
    } else {
      student = OnnxModel.open(studentFile!);
    }
    const studentName = studentFile ?? `${teacherFile} (derive:${ratio})`;
    if (q.studentInit === 'random') reinitialize(student, seed, await inputRms(p.data, student));
    const tNames = valueNames(teacher.graph);
    const sNames = valueNames(student.graph);
    const pairs = parsePairs(q.features, { teacher: (n) => tNames.has(n), student: (n) => sNames.has(n) });
    const { dir, created } = runFolder(studentFile ?? teacherFile, 'distill', p.out);
    try {
      const teacherSha256 = sha256File(teacherFile);
      const evalData = p.evalData ?? p.data;
      const evalLimit = p.evalLimit ?? (p.evalData ? undefined : 1000);
      const warnings: string[] = [];
      if (!p.evalData) warnings.push('no --eval-data given: metrics use the first 1000 training samples, which the student trained on');
      const common = { data: evalData, ep: p.ep, limit: evalLimit, seed: p.seed, threads: p.threads };
      progress(undefined, 'evaluating the teacher');
      const before = await evaluate({ ...common, model: teacherFile }, signal, progress);

      progress(0, 'distilling');
      const t = await distillTrain(
        {
          teacher,
          student,
          teacherSha256,
          files: { teacher: teacherFile, student: studentName },
          pairs,
          featureLoss: q.featureLoss,
          featureWeight: q.featureWeight,
          attentionP: q.attentionP,
          data: p.data,
          evalData,
          epochs: q.epochs,
          batch: q.batch,
          lr,
          optimizer: { kind: q.optimizer, momentum: q.momentum, weightDecay: q.weightDecay },
          schedule: { kind: q.schedule, warmupSteps: q.warmupSteps },
          temperature: q.temperature,
          alpha: q.alpha,
          alphaEnd: q.alphaEnd ?? q.alpha,
          alphaSchedule: q.alphaSchedule,
          seed,
          limit: p.limit,
          evalLimit,
          evalEvery: q.evalEvery,
          threads: p.threads,
          ep: p.ep,
          cacheDir: p.cacheDir ?? path.join(path.dirname(dir), 'distill-cache'),
          cacheMaxBytes: q.cacheMaxMb * 2 ** 20,
        },
        signal,
        (s) => {
          progress(s.step / s.totalSteps, `epoch ${s.epoch + 1}/${q.epochs}, step ${s.step}/${s.totalSteps}, loss ${s.loss.total.toFixed(4)} (KD ${s.loss.kd.toFixed(4)}), ${Math.round(s.samplesPerSec)} samples/s`);
          onStep(s);
        },
      );
      warnings.push(...t.warnings);
      for (const [name, w] of t.weights) replaceTensorData(student.graph, name, w);
      student.invalidate();

      const record = {
        teacher: teacherFile,
        student: studentFile ?? `derive:${ratio}`,
        temperature: q.temperature,
        alpha: t.hasLabels ? q.alpha : 0,
        alphaEnd: t.hasLabels ? (q.alphaEnd ?? q.alpha) : 0,
        alphaSchedule: q.alphaSchedule,
        features: t.heads.map((h) => ({ ...h.pair, loss: h.kind, ...(h.projection ? { projection: h.projection.channels } : {}) })),
        featureWeight: q.featureWeight,
        hasLabels: t.hasLabels,
        epochs: q.epochs,
        batch: q.batch,
        lr,
        optimizer: q.optimizer,
        steps: t.steps,
        samplesPerSec: t.samplesPerSec,
        ...(t.best ? { best: t.best } : {}),
        evals: t.evals,
        cache: t.cache,
        ...(derived ? { derived: { ratio: ratio!, paramFraction: round(derived.paramFraction, 4), channelsKept: derived.channelsKept } } : {}),
      };
      const stepParams = { ...q, lr, seed, teacher: teacherFile, student: p.student, data: p.data, evalData: p.evalData };
      const recipe = { tool: toolName, version, source: { file: teacherFile, sha256: teacherSha256 }, steps: [{ pass: 'distill', params: stepParams }] };
      const base = studentFile ? path.basename(studentFile).replace(/\.onnx$/i, '') : `${path.basename(teacherFile).replace(/\.onnx$/i, '')}.student`;
      const out = path.join(dir, `${base}.onnx`);
      const written = writeOnnx(student, out, { provenance: { sourceSha256: teacherSha256, recipe: JSON.stringify(recipe.steps) } });
      const afterBytes = fs.statSync(written.file).size + (written.dataFile ? fs.statSync(written.dataFile).size : 0);

      progress(undefined, 'evaluating the student against the teacher');
      const after = await evaluate({ ...common, model: out, reference: teacherFile }, signal, progress);
      for (const w of after.warnings) if (!warnings.includes(w)) warnings.push(w);
      const paramsBefore = paramCount(teacher);
      const paramsAfter = paramCount(student);
      const res: DistillResult = {
        output: out,
        sizeBytes: { before: modelBytes(teacher), after: afterBytes },
        params: { before: paramsBefore, after: paramsAfter },
        sparsity: derived ? round(1 - paramsAfter / paramsBefore, 4) : 0,
        metrics: {
          before: { samples: before.samples, ...(before.accuracy !== undefined ? { accuracy: before.accuracy } : {}) },
          after: { samples: after.samples, ...(after.accuracy !== undefined ? { accuracy: after.accuracy } : {}) },
          ...(after.top1Agreement !== undefined ? { top1Agreement: after.top1Agreement } : {}),
          ...(after.cosine !== undefined ? { cosine: after.cosine } : {}),
          ...(before.accuracy !== undefined && after.accuracy !== undefined ? { accuracy: { before: before.accuracy, after: after.accuracy, gainPt: round((after.accuracy - before.accuracy) * 100, 4) } } : {}),
          ...(t.studentBefore ? { studentBefore: t.studentBefore } : {}),
        },
        latencyMs: { before: before.latencyMs.median, after: after.latencyMs.median },
        ep: after.ep,
        warnings,
        recipe: path.join(dir, 'recipe.whittle.json'),
        report: path.join(dir, 'report.json'),
        data: after.data,
        distill: record,
        diagnostics: t.diagnostics,
      };
      writeFileAtomic(res.recipe, JSON.stringify(recipe, null, 2) + '\n');
      writeFileAtomic(path.join(dir, 'report.md'), reportMarkdown(res));
      writeFileAtomic(res.report, JSON.stringify(res, null, 2) + '\n');
      return res;
    } catch (err) {
      if (created) fs.rmSync(dir, { recursive: true, force: true });
      // The data layer stops with the signal's AbortError; callers expect the protocol's CancelledError.
      if (signal?.aborted && !(err instanceof CancelledError)) throw new CancelledError();
      throw err;
    }
  } finally {
    student?.close();
    teacher.close();
  }
}

/** report.md: the run in a few lines, the loss parts per logged step and the teacher-student confusion. */
function reportMarkdown(r: DistillResult): string {
  const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(x * 100).toFixed(2)}%`);
  const d = r.distill;
  const f = (x: number | undefined) => (x === undefined ? '' : x.toFixed(4));
  return [
    `# Distill: ${path.basename(r.output)}`,
    '',
    `Teacher ${path.basename(d.teacher)} (${r.params.before} parameters), student ${d.student} (${r.params.after} parameters). T = ${d.temperature}, alpha = ${d.alpha}${d.alphaSchedule === 'linear' ? ` -> ${d.alphaEnd}` : ''}${d.hasLabels ? '' : ' (no labels: soft targets only)'}; ${d.epochs} epoch(s), batch ${d.batch}, ${d.optimizer} at lr ${d.lr}, ${d.steps} steps, ${d.samplesPerSec} samples/s.`,
    ...(d.features.length ? ['', `Feature pairs: ${d.features.map((x) => `${x.teacher} -> ${x.student} (${x.loss}${x.projection ? `, projection ${x.projection[0]}->${x.projection[1]}` : ''})`).join('; ')}.`] : []),
    `Teacher cache: ${d.cache.hits} hits, ${d.cache.misses} misses${d.cache.note ? ` (${d.cache.note})` : ''}.`,
    '',
    '| | teacher | student before | student after |',
    '|---|---:|---:|---:|',
    `| accuracy | ${pct(r.metrics.before.accuracy)} | ${pct(r.metrics.studentBefore?.accuracy)} | ${pct(r.metrics.after.accuracy)} |`,
    `| latency (ms, median) | ${r.latencyMs.before} | | ${r.latencyMs.after} |`,
    `| size (bytes) | ${r.sizeBytes.before} | | ${r.sizeBytes.after} |`,
    '',
    `Top-1 agreement with the teacher: ${pct(r.metrics.top1Agreement)}.`,
    '',
    '| step | total | CE | KD | feature | accuracy | agreement | lr |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.diagnostics.steps.map((s) => `| ${s.step} | ${f(s.loss.total)} | ${f(s.loss.ce)} | ${f(s.loss.kd)} | ${f(s.loss.feature)} | ${pct(s.accuracy)} | ${pct(s.agreement)} | ${s.lr.toPrecision(3)} |`),
    '',
    `Confusion (rows: teacher's class, columns: student's), ${r.diagnostics.confusion.samples} samples:`,
    '',
    `| | ${r.diagnostics.confusion.matrix.map((_, c) => c).join(' | ')} |`,
    `|---|${r.diagnostics.confusion.matrix.map(() => '---:').join('|')}|`,
    ...r.diagnostics.confusion.matrix.map((row, c) => `| ${c} | ${row.join(' | ')} |`),
    ...(r.warnings.length ? ['', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}
