// `whittle distill` (src/core/passes/distill): feature-pair and signature errors, derive:RATIO, the teacher cache,
// CKA, and whole runs on the generated sample CNN (random data, no labels) and on mnist-8 with MNIST (shared data).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { sha256File } from '../../src/core/formats/onnx/write';
import { InputError } from '../../src/core/errors';
import { CancelledError } from '../../src/protocol/rpc';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { buildMlp } from '../../src/core/samples/mlp';
import { TeacherCache } from '../../src/core/passes/distill/cache';
import { deriveStudent, paramCount } from '../../src/core/passes/distill/derive';
import { checkSignatures, parsePairs, planFeatures } from '../../src/core/passes/distill/features';
import { centeredGram, cka } from '../../src/core/passes/distill/loop';
import { runDistill } from '../../src/core/passes/distill/run';
import type { DistillProgress } from '../../src/core/passes/distill/types';
import { idxBytes, write } from './helpers/fixtures';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';
import { WorkerClient } from '../../src/core/worker/client';
import type { FromWorkerEvent } from '../../src/protocol/worker';

const dir = tempDir('whittle-distill-');
const teacherFile = path.join(dir, 'teacher.onnx');
fs.writeFileSync(teacherFile, buildSampleModel(1));
const studentFile = path.join(dir, 'student.onnx');
fs.writeFileSync(studentFile, buildSampleModel(2));
const files = { teacher: teacherFile, student: studentFile };
const teacher = OnnxModel.open(teacherFile);
const student = OnnxModel.open(studentFile);

/** The InputError message of `f`, which must throw one. */
function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof InputError, `expected an InputError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected an error');
}

describe('feature pairs and signatures', () => {
  test('a missing tensor is named, on the side it is missing from, with near names', () => {
    const m1 = messageOf(() => planFeatures(teacher.proto, student.proto, parsePairs(['relu9:relu1']), 'mse', { files }));
    assert.match(m1, /teacher has no tensor named 'relu9'/);
    assert.ok(m1.includes(teacherFile), m1);
    const m2 = messageOf(() => planFeatures(teacher.proto, student.proto, parsePairs(['relu1:/layer2/Relu_output']), 'mse', { files }));
    assert.match(m2, /student has no tensor named '\/layer2\/Relu_output'/);
    assert.ok(m2.includes(studentFile), m2);
    assert.match(messageOf(() => parsePairs(['relu1'])), /not a teacher:student pair/);
  });

  test('incompatible shapes name both tensors and both shapes', () => {
    const spatial = messageOf(() => planFeatures(teacher.proto, student.proto, parsePairs(['relu1:relu2']), 'mse', { files }));
    assert.match(spatial, /'relu1' is \[N, 8, 28, 28\] and the student's 'relu2' is \[N, 16, 10, 10\]; their spatial sizes do not differ by a whole factor/);
    const rank = messageOf(() => planFeatures(teacher.proto, student.proto, parsePairs(['relu3:relu1']), 'cosine', { files }));
    assert.match(rank, /'relu3' is \[N, 64\] and the student's 'relu1' is \[N, 8, 28, 28\]; their ranks differ/);
    const attention = messageOf(() => planFeatures(teacher.proto, student.proto, parsePairs(['relu3:relu3']), 'attention', { files }));
    assert.match(attention, /attention maps need \[N, C, H, W\]/);
  });

  test('compatible pairs get pooling, projections and attention maps with the right shapes', () => {
    const derived = deriveStudent(teacher, 0.25).model;
    const plan = planFeatures(teacher.proto, derived.proto, parsePairs(['relu1:pool1', 'relu2:relu2', 'relu3:relu3']), 'mse', { files });
    const [pooled, same, dense] = plan.heads;
    // The sample CNN's derived student keeps conv2's 16 channels (its group feeds a flattening Gemm) and prunes conv1 and fc1.
    assert.deepEqual(pooled.shape, [8, 14, 14], 'the teacher map is pooled 28 -> 14 and the student channels projected to 8');
    assert.ok(pooled.projection && pooled.projection.channels[1] === 8 && pooled.projection.channels[0] < 8, JSON.stringify(pooled.projection));
    assert.equal(same.projection, undefined);
    assert.deepEqual(same.shape, [16, 10, 10]);
    assert.ok(dense.projection && dense.projection.channels[1] === 64 && dense.projection.channels[0] < 64, JSON.stringify(dense.projection));
    assert.equal(plan.projections.length, 2);
    const at = planFeatures(teacher.proto, derived.proto, parsePairs(['relu2:relu2']), 'attention', { files });
    assert.deepEqual(at.heads[0].shape, [100]);
    assert.equal(at.projections.length, 0, 'attention maps need no projection');
    derived.close();
  });

  test('signatures: different class counts and inputs are clear errors', () => {
    assert.deepEqual(checkSignatures(teacher.proto, student.proto, files), []);
    const mlpFile = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(mlpFile, buildMlp({ sizes: [784, 16, 10] }));
    const mlp = OnnxModel.open(mlpFile);
    assert.match(messageOf(() => checkSignatures(teacher.proto, mlp.proto, { teacher: teacherFile, student: mlpFile })), /the teacher's input 'input' is not an input of the student/);
    const five = OnnxModel.fromBytes(buildMlp({ sizes: [784, 16, 5] }), mlpFile);
    assert.match(messageOf(() => checkSignatures(mlp.proto, five.proto, { teacher: mlpFile, student: mlpFile })), /the student's output 'y' is \[\?, 5\] and the teacher's 'y' is \[\?, 10\]; both must give the same number of classes/);
    mlp.close();
    five.close();
  });
});

describe('derive and the cache', () => {
  test('derive:0.25 keeps at most a quarter of the parameters and leaves the teacher unchanged', () => {
    const before = paramCount(teacher);
    const d = deriveStudent(teacher, 0.25);
    assert.ok(d.paramFraction <= 0.25 && d.paramFraction > 0.1, `fraction ${d.paramFraction}`);
    assert.equal(paramCount(d.model), Math.round(d.paramFraction * before));
    assert.equal(paramCount(teacher), before);
    d.model.close();
  });

  test('derive:RATIO outside (0, 1) is a clear error', async () => {
    await assert.rejects(runDistill({ teacher: teacherFile, student: 'derive:1.5', data: 'random' }), /derive:RATIO needs a ratio between 0 and 1/);
  });

  test('the cache returns what was put, persists across opens, and respects its bound', () => {
    const cdir = path.join(dir, 'cache');
    const key = { teacherSha256: 'abc', data: 'd', tensors: ['y'], sizes: [3] };
    const c = new TeacherCache(cdir, key, 3, 10, 1 << 20);
    assert.equal(c.get([0, 1]), undefined);
    c.put([1, 4], Float32Array.from([1, 2, 3, 4, 5, 6]));
    assert.deepEqual([...c.get([4, 1])!], [4, 5, 6, 1, 2, 3]);
    assert.equal(c.get([1, 2]), undefined, 'all or nothing');
    c.close();
    const again = new TeacherCache(cdir, key, 3, 10, 1 << 20);
    assert.deepEqual([...again.get([1])!], [1, 2, 3]);
    again.close();
    const other = new TeacherCache(cdir, { ...key, teacherSha256: 'def' }, 3, 10, 1 << 20);
    assert.equal(other.get([1]), undefined, 'another teacher is another entry');
    other.close();
    const small = new TeacherCache(path.join(dir, 'cache-small'), key, 3, 10, 24);
    small.put([0, 1, 2], Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert.ok(small.get([0, 1]));
    assert.equal(small.get([2]), undefined, 'past the bound');
    assert.match(small.stats.note!, /holds 2 of 10 samples/);
    small.close();
  });

  test('linear CKA is 1 for the same features, invariant to scale and rotation, low for unrelated ones', () => {
    const rows = Array.from({ length: 20 }, (_, i) => Float32Array.from([Math.sin(i), Math.cos(3 * i), i / 20]));
    const rotated = rows.map((r) => Float32Array.from([5 * (r[0] * 0.6 - r[1] * 0.8), 5 * (r[0] * 0.8 + r[1] * 0.6), 5 * r[2]]));
    const noise = Array.from({ length: 20 }, (_, i) => Float32Array.from([Math.sin(i * 7.3 + 1), Math.cos(i * 5.1)]));
    const k = centeredGram(rows);
    assert.ok(Math.abs(cka(k, k) - 1) < 1e-9);
    assert.ok(Math.abs(cka(k, centeredGram(rotated)) - 1) < 1e-6);
    assert.ok(cka(k, centeredGram(noise)) < 0.5);
  });
});

describe('runDistill', () => {
  test('unlabelled data: pure distillation, run folder, diagnostics, cache hits in epoch 2, teacher untouched', async () => {
    const sha = sha256File(teacherFile);
    const steps: DistillProgress[] = [];
    const out = path.join(dir, 'run-unlabelled');
    // 48 images and no labels file beside them.
    const unlabelled = write(path.join(dir, 'data', 'tiny-images-idx3-ubyte'), idxBytes([48, 28, 28], Uint8Array.from({ length: 48 * 784 }, (_, i) => (i * 37) % 251)));
    const r = await runDistill(
      { teacher: teacherFile, student: 'derive:0.3', data: unlabelled, epochs: 2, batch: 16, features: ['relu1:relu1'], seed: 3, out, threads: 1 },
      undefined,
      () => {},
      (s) => steps.push(s),
    );
    assert.equal(sha256File(teacherFile), sha);
    for (const f of ['recipe.whittle.json', 'report.json', 'report.md']) assert.ok(fs.existsSync(path.join(out, f)), f);
    assert.ok(fs.existsSync(r.output));
    assert.equal(r.distill.hasLabels, false);
    assert.equal(r.distill.alpha, 0);
    assert.ok(r.warnings.some((w) => /no labels/.test(w)), r.warnings.join('; '));
    assert.equal(r.distill.steps, 6);
    assert.equal(r.distill.cache.misses, 48, 'the teacher ran once per sample');
    assert.equal(r.distill.cache.hits, 48, 'epoch 2 read the cache');
    assert.ok(r.params.after < r.params.before * 0.3 + 1);
    assert.ok(r.distill.features[0].projection, 'channel counts differ, so a projection was learned');
    const written = OnnxModel.open(r.output);
    assert.ok(!written.graph.initializer.some((t) => t.name.startsWith('whittle_kd/')), 'the projection is dropped at export');
    assert.equal(paramCount(written), r.params.after);
    written.close();
    const dg = r.diagnostics;
    assert.ok(dg.steps.length >= 2 && dg.steps.every((s) => s.loss.ce === undefined && s.loss.kd >= 0 && s.loss.feature! >= 0 && s.agreement >= 0 && s.agreement <= 1));
    assert.equal(dg.confusion.matrix.length, 10);
    assert.equal(dg.confusion.matrix.flat().reduce((a, b) => a + b, 0), dg.confusion.samples);
    assert.equal(dg.softLabels.length, 8);
    for (const row of dg.softLabels) assert.ok(Math.abs(row.teacher.reduce((a, b) => a + b, 0) - 1) < 1e-3);
    assert.deepEqual(dg.similarity!.teacher, ['logits', 'relu1']);
    assert.ok(dg.similarity!.matrix.flat().every((x) => x >= 0 && x <= 1 + 1e-9));
    const report = JSON.parse(fs.readFileSync(r.report, 'utf8'));
    assert.equal(report.output, r.output);
    for (const key of ['output', 'sizeBytes', 'params', 'sparsity', 'metrics', 'latencyMs', 'ep', 'warnings']) assert.ok(key in report, key);
  });

  test('the worker request distill sends progress and distillStep events and returns the result', async () => {
    const events: FromWorkerEvent[] = [];
    const client = new WorkerClient(path.join(repoRoot, 'dist', 'worker.js'), (e) => events.push(e));
    try {
      const data = write(path.join(dir, 'data', 'worker-images-idx3-ubyte'), idxBytes([32, 28, 28], Uint8Array.from({ length: 32 * 784 }, (_, i) => (i * 13) % 256)));
      const r = await client.request('distill', { teacher: teacherFile, student: studentFile, data, batch: 8, out: path.join(dir, 'run-worker'), threads: 1 });
      assert.equal(r.distill.steps, 4);
      const step = events.find((e) => e.type === 'distillStep');
      assert.ok(step && step.type === 'distillStep' && step.progress.totalSteps === 4 && step.progress.loss.kd >= 0 && step.progress.temperature === 4, JSON.stringify(step));
      assert.ok(events.some((e) => e.type === 'progress' && /evaluating the teacher/.test(e.message)));
    } finally {
      client.dispose();
    }
  });

  test('errors: a missing feature tensor fails before anything is written; cancel removes the run folder', async () => {
    const out = path.join(dir, 'run-bad');
    await assert.rejects(runDistill({ teacher: teacherFile, student: studentFile, data: 'random', limit: 8, features: ['relu2:nope'], out, threads: 1 }), /student has no tensor named 'nope'/);
    assert.ok(!fs.existsSync(out));
    const controller = new AbortController();
    const cancelled = path.join(dir, 'run-cancel');
    const run = runDistill({ teacher: teacherFile, student: studentFile, data: 'random', limit: 64, batch: 8, epochs: 3, out: cancelled, threads: 1 }, controller.signal, () => {}, () => controller.abort());
    await assert.rejects(run, CancelledError);
    assert.ok(!fs.existsSync(cancelled));
  });

  test('mnist-8 -> derive:0.25 with logits + features beats its own start on MNIST', { skip: noSharedData }, async () => {
    const mnist = path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx');
    const images = path.join(sharedData!, 'mnist');
    const r = await runDistill({
      teacher: mnist,
      student: 'derive:0.25',
      data: path.join(images, 'train-images-idx3-ubyte.gz#:1024'),
      evalData: path.join(images, 't10k-images-idx3-ubyte.gz'),
      evalLimit: 500,
      batch: 32,
      lr: 0.003,
      features: ['ReLU114_Output_0:ReLU114_Output_0'],
      out: path.join(dir, 'run-mnist'),
      cacheDir: path.join(dir, 'mnist-cache'),
      threads: 1,
    });
    assert.ok(r.params.after <= r.params.before / 4, `${r.params.after} of ${r.params.before}`);
    assert.ok(r.metrics.before.accuracy! > 0.95);
    assert.ok(r.metrics.after.accuracy! > r.metrics.studentBefore!.accuracy! + 0.05, `${r.metrics.studentBefore!.accuracy} -> ${r.metrics.after.accuracy}`);
    assert.ok(r.metrics.after.accuracy! > 0.7, `${r.metrics.after.accuracy}`);
    assert.equal(r.diagnostics.confusion.samples, 500);
  });
});
