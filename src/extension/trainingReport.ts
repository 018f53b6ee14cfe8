import * as path from 'node:path';
import type { DistillResult, DistillStepEvent } from '../core/passes/distill/types';
import type { FinetuneResult } from '../core/train/finetune';
import type { TrainingPoint, TrainingReport, TrainStepEvent } from '../protocol/training';
import { english, type Translate } from './runs';

/** The training panel's final report from a fine-tune run (no 'vscode' here, so unit tests can check it). */
export function finetuneReport(r: FinetuneResult): TrainingReport {
  const t = r.training;
  return {
    kind: 'finetune',
    output: r.output,
    reportFile: path.join(path.dirname(r.report), 'report.md'),
    samples: r.metrics.after.samples,
    accuracy: { before: r.metrics.before.accuracy, after: r.metrics.after.accuracy },
    sizeBytes: r.sizeBytes,
    params: r.params,
    ...(r.metrics.top1Agreement !== undefined ? { agreement: r.metrics.top1Agreement } : {}),
    latencyMs: r.latencyMs,
    steps: t.steps,
    samplesPerSec: t.samplesPerSec,
    curve: t.curve.map((c) => ({ step: c.step, totalSteps: t.steps, loss: c.loss, lr: c.lr })),
    evals: t.evals,
    ...(t.best ? { best: t.best } : {}),
    warnings: r.warnings,
  };
}

/** "12.3%" or "n/a". */
export function pct(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(digits)}%`;
}

/** A live chart point from a worker training event (fine-tune's TrainProgress or distillation's DistillProgress). */
export function trainingPointOf(e: TrainStepEvent | DistillStepEvent): TrainingPoint {
  if (e.type === 'trainStep') return e.point;
  const p = e.progress;
  return {
    step: p.step,
    totalSteps: p.totalSteps,
    epoch: p.epoch,
    loss: p.loss.total,
    ...(p.loss.ce !== undefined ? { ce: p.loss.ce } : {}),
    kd: p.loss.kd,
    ...(p.loss.feature !== undefined ? { feature: p.loss.feature } : {}),
    lr: p.lr,
    samplesPerSec: p.samplesPerSec,
  };
}

/**
 * The training panel's final report from a distillation run, with its diagnostics. The settings' keys stay
 * English (the panel translates them); their values go through `t` (vscode.l10n.t from the extension).
 */
export function distillReport(r: DistillResult, t: Translate = english): TrainingReport {
  const d = r.distill;
  const g = r.diagnostics;
  const features = d.features.map((f) => `${f.teacher} → ${f.student} (${f.loss}${f.projection ? t(', projected {0}→{1}', f.projection[0], f.projection[1]) : ''})`);
  return {
    kind: 'distill',
    output: r.output,
    reportFile: path.join(path.dirname(r.report), 'report.md'),
    samples: r.metrics.after.samples,
    accuracy: { teacher: r.metrics.before.accuracy, before: r.metrics.studentBefore?.accuracy, after: r.metrics.after.accuracy },
    sizeBytes: r.sizeBytes,
    params: r.params,
    ...(r.metrics.top1Agreement !== undefined ? { agreement: r.metrics.top1Agreement } : {}),
    latencyMs: r.latencyMs,
    steps: d.steps,
    samplesPerSec: d.samplesPerSec,
    settings: [
      ['student', d.derived ? t('derived from the teacher: ratio {0}, {1} of its parameters', d.derived.ratio, pct(d.derived.paramFraction, 1)) : d.student],
      ['temperature', String(d.temperature)],
      ['alpha', d.alphaSchedule === 'linear' ? `${d.alpha} → ${d.alphaEnd}` : String(d.alpha)],
      ['feature pairs', features.length ? features.join('; ') : t('none')],
      ['training', `${t('{0} epoch(s), batch {1}, {2} at lr {3}', d.epochs, d.batch, d.optimizer, d.lr)}${d.hasLabels ? '' : t(', no labels (pure distillation)')}`],
      ['teacher cache', `${t('{0} hits, {1} misses', d.cache.hits, d.cache.misses)}${d.cache.note ? ` (${d.cache.note})` : ''}`],
    ],
    curve: g.steps.map((s) => ({
      step: s.step,
      totalSteps: d.steps,
      epoch: s.epoch,
      loss: s.loss.total,
      ...(s.loss.ce !== undefined ? { ce: s.loss.ce } : {}),
      kd: s.loss.kd,
      ...(s.loss.feature !== undefined ? { feature: s.loss.feature } : {}),
      lr: s.lr,
      ...(s.accuracy !== undefined ? { trainAccuracy: s.accuracy } : {}),
      agreement: s.agreement,
    })),
    evals: d.evals,
    ...(d.best ? { best: d.best } : {}),
    warnings: r.warnings,
    diagnostics: {
      classes: Array.from({ length: g.confusion.classes }, (_, i) => String(i)),
      confusion: g.confusion.matrix,
      ...(g.similarity ? { layerSimilarity: { metric: g.similarity.metric.toUpperCase(), teacher: g.similarity.teacher, student: g.similarity.student, values: g.similarity.matrix } } : {}),
      softLabels: g.softLabels,
    },
  };
}
