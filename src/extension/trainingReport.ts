import * as path from 'node:path';
import type { FinetuneResult } from '../core/train/finetune';
import type { TrainingReport } from '../protocol/training';

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
