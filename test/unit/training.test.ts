// The training panel's pure helpers, its report mapping, and the worker's live `trainStep` events for Fine-tune….
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { WorkerClient } from '../../src/core/worker/client';
import { CancelledError } from '../../src/protocol/rpc';
import type { TrainingPoint } from '../../src/protocol/training';
import { distillReport, finetuneReport, trainingPointOf } from '../../src/extension/trainingReport';
import type { DistillResult } from '../../src/core/passes/distill/types';
import { addPoint, finalPoints, rowShares, seriesOf, topK } from '../../webview/training/series';
import { repoRoot, tempDir } from './helpers/paths';
import { writeToyDigits } from './helpers/toyDigits';

const pt = (step: number, loss: number, extra: Partial<TrainingPoint> = {}): TrainingPoint => ({ step, totalSteps: 100, loss, ...extra });

describe('training chart helpers', () => {
  test('addPoint merges a repeated step and thins a full series to half, keeping the first and the newest', () => {
    let pts: TrainingPoint[] = [];
    for (let s = 1; s <= 10; s++) pts = addPoint(pts, pt(s, 1 / s), 10);
    assert.equal(pts.length, 10);
    pts = addPoint(pts, pt(11, 0.05), 10);
    assert.deepEqual(pts.map((p) => p.step), [1, 3, 5, 7, 9, 10, 11]);
    pts = addPoint(pts, pt(11, 0.04, { accuracy: 0.9 }), 10);
    assert.equal(pts.length, 7);
    assert.deepEqual(pts.at(-1), { step: 11, totalSteps: 100, loss: 0.04, accuracy: 0.9 });
  });

  test('seriesOf skips points without the value; finalPoints merges the live points with the curve and evaluations', () => {
    const live = [pt(5, 2, { samplesPerSec: 900 }), pt(10, 1.5, { samplesPerSec: 1000 })];
    assert.deepEqual(seriesOf(live, 'accuracy'), []);
    assert.deepEqual(seriesOf(live, 'samplesPerSec'), [{ x: 5, y: 900 }, { x: 10, y: 1000 }]);
    const merged = finalPoints(live, {
      kind: 'finetune', output: 'x.onnx', accuracy: { before: 0.3, after: 0.8 }, sizeBytes: { before: 1, after: 1 }, steps: 12, warnings: [],
      curve: [pt(6, 1.9, { lr: 0.001 }), pt(12, 1.2, { lr: 0.001 })],
      evals: [{ step: 12, accuracy: 0.8 }],
    });
    assert.deepEqual(merged.map((p) => p.step), [0, 5, 6, 10, 12]);
    assert.deepEqual(seriesOf(merged, 'accuracy'), [{ x: 0, y: 0.3 }, { x: 12, y: 0.8 }]);
    assert.deepEqual(seriesOf(merged, 'loss').map((p) => p.y), [2, 1.9, 1.5, 1.2]);
  });

  test('topK orders probabilities (the article\'s [0.53, 0.47]) and rowShares normalises confusion rows', () => {
    assert.deepEqual(topK([0.47, 0.53], 2), [[1, 0.53], [0, 0.47]]);
    assert.deepEqual(topK([0.1, 0.2, 0.7], 1), [[2, 0.7]]);
    assert.deepEqual(rowShares([[3, 1], [0, 0]]), [[0.75, 0.25], [0, 0]]);
  });
});

test('a distillation step becomes a chart point with its loss parts; a fine-tune step passes through', () => {
  const progress = { epoch: 0, step: 7, totalSteps: 40, loss: { total: 1.5, ce: 0.9, kd: 0.6 }, lr: 0.01, alpha: 0.5, temperature: 4, samplesPerSec: 800 };
  assert.deepEqual(trainingPointOf({ type: 'distillStep', progress }), { step: 7, totalSteps: 40, epoch: 0, loss: 1.5, ce: 0.9, kd: 0.6, lr: 0.01, samplesPerSec: 800 });
  const point = pt(3, 0.5, { lr: 0.1 });
  assert.equal(trainingPointOf({ type: 'trainStep', point }), point);
});

test('a distillation result maps to the panel report: teacher/student columns, logged parts, diagnostics', () => {
  const steps = [1, 2].map((step) => ({ step, epoch: 0, loss: { total: 2 / step, ce: 1 / step, kd: 1 / step, feature: 0.1 }, lr: 0.01, alpha: 0.5, accuracy: 0.5 * step, agreement: 0.4 * step }));
  const r = {
    output: '/m.whittle/distill-1/student.onnx', report: '/m.whittle/distill-1/report.json', recipe: '', data: 'd', ep: 'cpu', warnings: ['w'], sparsity: 0,
    sizeBytes: { before: 1000, after: 400 }, params: { before: 250, after: 100 }, latencyMs: { before: 2, after: 1 },
    metrics: { before: { samples: 10, accuracy: 0.9 }, after: { samples: 10, accuracy: 0.85 }, top1Agreement: 0.88, studentBefore: { samples: 10, accuracy: 0.2 } },
    distill: {
      teacher: '/m.onnx', student: 'derive:0.4', derived: { ratio: 0.4, paramFraction: 0.4, channelsKept: 8 }, temperature: 4, alpha: 0.5, alphaEnd: 0.5, alphaSchedule: 'constant',
      features: [{ teacher: 'relu2', student: 'relu2', loss: 'mse', projection: [8, 16] }], featureWeight: 1, hasLabels: true, epochs: 1, batch: 64, lr: 0.01, optimizer: 'adam',
      steps: 2, samplesPerSec: 500, evals: [{ step: 2, accuracy: 0.85 }], cache: { dir: '/c', hits: 1, misses: 2, bytes: 3 },
    },
    diagnostics: {
      steps,
      confusion: { classes: 2, samples: 10, matrix: [[5, 1], [0, 4]] },
      similarity: { metric: 'cka', teacher: ['a', 'b'], student: ['c'], matrix: [[0.9], [0.3]], samples: 10 },
      softLabels: [{ sample: 0, label: 1, teacher: [0.47, 0.53], student: [0.45, 0.55] }],
    },
  } satisfies DistillResult;
  const rep = distillReport(r);
  assert.equal(rep.kind, 'distill');
  assert.equal(rep.reportFile, '/m.whittle/distill-1/report.md');
  assert.deepEqual(rep.accuracy, { teacher: 0.9, before: 0.2, after: 0.85 });
  assert.deepEqual(rep.curve.map((c) => [c.step, c.loss, c.ce, c.kd, c.feature, c.trainAccuracy, c.agreement]), steps.map((s) => [s.step, s.loss.total, s.loss.ce, s.loss.kd, s.loss.feature, s.accuracy, s.agreement]));
  assert.deepEqual(rep.diagnostics?.confusion, [[5, 1], [0, 4]]);
  assert.deepEqual(rep.diagnostics?.classes, ['0', '1']);
  assert.deepEqual(rep.diagnostics?.layerSimilarity, { metric: 'CKA', teacher: ['a', 'b'], student: ['c'], values: [[0.9], [0.3]] });
  assert.deepEqual(rep.diagnostics?.softLabels, r.diagnostics.softLabels);
  assert.match(rep.settings!.find(([k]) => k === 'feature pairs')![1], /relu2 → relu2 \(mse, projected 8→16\)/);
  assert.match(rep.settings!.find(([k]) => k === 'student')![1], /ratio 0.4, 40.0% of its parameters/);
});

describe('Fine-tune… through the worker', () => {
  const dir = tempDir('whittle-training-');
  const model = path.join(dir, 'sample.onnx');
  fs.writeFileSync(model, buildSampleModel());
  const images = writeToyDigits(path.join(dir, 'toy'), 1200);
  // Pixels scaled to [0, 1] (raw 0-255 saturates the sample model's softmax, and the loss reads 0).
  const data = path.join(dir, 'toy.dataset.json');
  fs.writeFileSync(data, JSON.stringify({ inputs: { input: { idx: images, scale: 1 / 255 } }, labels: { idx: images.replace('images-idx3', 'labels-idx1') } }));
  const workerFile = path.join(repoRoot, 'dist', 'worker.js');

  test('streams trainStep events with numbers and the result maps to the panel report', async () => {
    const steps: TrainingPoint[] = [];
    const client = new WorkerClient(workerFile, (e) => {
      if (e.type === 'trainStep') steps.push(e.point);
    });
    try {
      const r = await client.request('finetune', { model, data, epochs: 1, batch: 16, limit: 512, evalLimit: 200, threads: 1, ep: 'cpu', seed: 1 });
      assert.ok(steps.length >= 1, 'no trainStep event');
      for (const p of steps) {
        assert.equal(p.totalSteps, 32);
        assert.ok(p.step >= 1 && p.step <= 32 && Number.isFinite(p.loss) && p.loss >= 0 && p.lr! > 0 && p.samplesPerSec! > 0, JSON.stringify(p));
      }
      const rep = finetuneReport(r);
      assert.equal(rep.kind, 'finetune');
      assert.equal(rep.output, r.output);
      assert.ok(fs.existsSync(rep.output) && fs.existsSync(rep.reportFile!));
      assert.equal(rep.steps, 32);
      assert.deepEqual(rep.accuracy, { before: r.metrics.before.accuracy, after: r.metrics.after.accuracy });
      assert.equal(rep.curve.length, r.training.curve.length);
      assert.ok(rep.curve.length >= 2 && rep.curve.every((c) => c.loss === r.training.curve.find((x) => x.step === c.step)!.loss));
      // The toy classes are separable: fine-tuning should beat the seeded sample weights.
      assert.ok(r.metrics.after.accuracy! > r.metrics.before.accuracy!, `accuracy ${r.metrics.before.accuracy} -> ${r.metrics.after.accuracy}`);
    } finally {
      client.dispose();
    }
  });

  test('Distill… (a derived student) streams distillStep events, and its result maps to a report with diagnostics', async () => {
    const teacher = path.join(dir, 'teacher', 'sample.onnx');
    fs.mkdirSync(path.dirname(teacher), { recursive: true });
    fs.copyFileSync(model, teacher);
    const points: TrainingPoint[] = [];
    const client = new WorkerClient(workerFile, (e) => {
      if (e.type === 'distillStep') points.push(trainingPointOf(e));
    });
    try {
      const r = await client.request('distill', { teacher, student: 'derive:0.5', data, evalData: data + '#:200', epochs: 1, batch: 16, limit: 256, evalLimit: 200, features: ['relu2:relu2'], threads: 1, ep: 'cpu', seed: 1 });
      assert.ok(points.length >= 1, 'no distillStep event');
      for (const p of points) assert.ok(p.totalSteps === 16 && Number.isFinite(p.loss) && p.kd! >= 0 && p.feature !== undefined && p.ce !== undefined, JSON.stringify(p));
      const rep = distillReport(r);
      assert.ok(fs.existsSync(rep.output) && fs.existsSync(rep.reportFile!));
      assert.ok(rep.params!.after < rep.params!.before, `student ${rep.params!.after} vs teacher ${rep.params!.before} parameters`);
      assert.equal(rep.diagnostics!.confusion!.length, 10);
      assert.equal(rep.diagnostics!.confusion!.flat().reduce((a, b) => a + b, 0), r.diagnostics.confusion.samples);
      // Probabilities come rounded to 4 decimals: 10 of them sum to 1 within 5e-4.
      assert.ok(rep.diagnostics!.softLabels!.length > 0 && rep.diagnostics!.softLabels!.every((s) => s.teacher.length === 10 && Math.abs(s.student.reduce((a, b) => a + b, 0) - 1) < 1e-3));
      assert.ok(rep.curve.length >= 2 && rep.curve.every((c) => c.kd !== undefined && c.agreement !== undefined));
      if (rep.diagnostics!.layerSimilarity) assert.ok(rep.diagnostics!.layerSimilarity.values.flat().every((v) => v >= -1e-6 && v <= 1 + 1e-6));
    } finally {
      client.dispose();
    }
  });

  test('cancelling after the first step rejects at once and leaves no run folder', async () => {
    const copy = path.join(dir, 'cancel', 'sample.onnx');
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    fs.copyFileSync(model, copy);
    const controller = new AbortController();
    let cancelledAt = 0;
    const client = new WorkerClient(workerFile, (e) => {
      if (e.type === 'trainStep' && !controller.signal.aborted) {
        cancelledAt = Date.now();
        controller.abort();
      }
    });
    try {
      await assert.rejects(client.request('finetune', { model: copy, data, epochs: 50, batch: 16, threads: 1, ep: 'cpu' }, controller.signal), CancelledError);
      assert.ok(cancelledAt > 0 && Date.now() - cancelledAt < 1000, `rejected ${Date.now() - cancelledAt} ms after the cancel`);
    } finally {
      client.dispose();
    }
    // The worker drains (removing its run folder) before it is terminated.
    const runs = path.join(path.dirname(copy), 'sample.whittle');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && fs.existsSync(runs) && fs.readdirSync(runs).length) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(fs.existsSync(runs) ? fs.readdirSync(runs) : [], []);
  });

  test('cancelling Distill… after its first step rejects at once and leaves no run folder', async () => {
    const teacher = path.join(dir, 'cancel-distill', 'sample.onnx');
    fs.mkdirSync(path.dirname(teacher), { recursive: true });
    fs.copyFileSync(model, teacher);
    const controller = new AbortController();
    let cancelledAt = 0;
    const client = new WorkerClient(workerFile, (e) => {
      if (e.type === 'distillStep' && !controller.signal.aborted) {
        cancelledAt = Date.now();
        controller.abort();
      }
    });
    try {
      await assert.rejects(client.request('distill', { teacher, student: 'derive:0.5', data, evalData: data + '#:100', epochs: 50, batch: 16, threads: 1, ep: 'cpu' }, controller.signal), CancelledError);
      assert.ok(cancelledAt > 0 && Date.now() - cancelledAt < 1000, `rejected ${Date.now() - cancelledAt} ms after the cancel`);
    } finally {
      client.dispose();
    }
    // The teacher-output cache (distill-cache) stays by design; run folders are distill-<stamp>.
    const runs = path.join(path.dirname(teacher), 'sample.whittle');
    const deadline = Date.now() + 10_000;
    const left = () => (fs.existsSync(runs) ? fs.readdirSync(runs).filter((d) => /^distill-\d/.test(d)) : []);
    while (Date.now() < deadline && left().length) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(left(), []);
  });
});
