import type { TrainingPoint, TrainingReport } from '../../src/protocol/training';

/** Pure helpers of the training chart (no DOM), shared by the panel and its unit tests. */

/** The numeric fields of a point that can be plotted. */
export type SeriesKey = 'loss' | 'ce' | 'kd' | 'feature' | 'lr' | 'samplesPerSec' | 'accuracy' | 'trainAccuracy' | 'agreement';

/**
 * Adds a live point, keeping at most `max` points: once full, every other older point is dropped (the first and
 * the newest always stay), so a long run keeps its whole shape at half the resolution.
 */
export function addPoint(points: TrainingPoint[], point: TrainingPoint, max = 500): TrainingPoint[] {
  const out = points.length >= max ? points.filter((_, i) => i % 2 === 0 || i === points.length - 1) : points.slice();
  const last = out.at(-1);
  // A repeated step (the final report of the same step, an evaluation) merges into that point.
  if (last && last.step === point.step) out[out.length - 1] = { ...last, ...point };
  else out.push(point);
  return out;
}

/** The (step, value) pairs of one series, skipping points that lack it. */
export function seriesOf(points: TrainingPoint[], key: SeriesKey): Array<{ x: number; y: number }> {
  const out: Array<{ x: number; y: number }> = [];
  for (const p of points) {
    const v = p[key];
    if (typeof v === 'number' && Number.isFinite(v)) out.push({ x: p.step, y: v });
  }
  return out;
}

/**
 * The points to draw after a run: the live points merged by step with the report's logged curve (interval means
 * of the loss), its evaluations and the accuracy before training (at step 0), sorted by step.
 */
export function finalPoints(live: TrainingPoint[], report: TrainingReport): TrainingPoint[] {
  const byStep = new Map<number, TrainingPoint>();
  const merge = (p: Partial<TrainingPoint> & { step: number }) => {
    const had = byStep.get(p.step);
    byStep.set(p.step, { ...(had ?? { totalSteps: report.steps, loss: NaN }), ...p } as TrainingPoint);
  };
  // The accuracy before training (on the same evaluation data) starts the accuracy series at step 0.
  if (report.accuracy.before !== undefined) merge({ step: 0, accuracy: report.accuracy.before });
  for (const p of live) merge(p);
  for (const p of report.curve) merge(p);
  for (const e of report.evals) merge({ step: e.step, accuracy: e.accuracy });
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** The k largest probabilities of a distribution as [class, probability], largest first. */
export function topK(probs: number[], k: number): Array<[number, number]> {
  return probs
    .map((p, c) => [c, p] as [number, number])
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .slice(0, k);
}

/** Row-normalises a confusion matrix (each teacher class sums to 1; an empty row stays 0). */
export function rowShares(m: number[][]): number[][] {
  return m.map((row) => {
    const sum = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (sum > 0 ? v / sum : 0));
  });
}
