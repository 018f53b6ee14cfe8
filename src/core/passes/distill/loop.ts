/**
 * The distillation loop: the frozen teacher runs (on the fastest provider) once per sample and its logits and
 * feature targets go to the on-disk cache; the student's training graph (src/core/train/grad.ts with the 'distill'
 * loss) runs on the CPU EP with the teacher's outputs fed per batch; the optimizer and schedules are the training
 * loop's. Afterwards the diagnostics: the student-versus-teacher confusion matrix, linear CKA between the paired
 * features, and soft labels of a few samples, all on the evaluation data.
 */
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto } from 'onnx-buf';
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset } from '../../data';
import type { Batch, HostTensor } from '../../data/types';
import { InputError } from '../../errors';
import { removeDeadNodes } from '../../formats/onnx/edit';
import { OnnxModel } from '../../formats/onnx/model';
import { tensorShape } from '../../formats/onnx/tensor';
import { modelInputs, openSession, type ModelSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import type { EpName } from '../../runtime/ep';
import { buildTrainingGraph, defaultTrainable, type TrainingGraph } from '../../train/grad';
import { createOptimizer, learningRate, type OptimizerOptions, type ScheduleOptions } from '../../train/optim';
import { TeacherCache, dataIdentity } from './cache';
import { checkSignatures, planFeatures, type FeatureHead } from './features';
import type { DistillDiagnostics, DistillLossParts, DistillProgress, DistillStepLog, FeatureLossKind, FeaturePair, LayerSimilarity, TeacherCacheStats } from './types';

/** What the loop needs. */
export interface DistillTrainOptions {
  teacher: OnnxModel;
  student: OnnxModel;
  teacherSha256: string;
  /** Names for errors. */
  files: { teacher: string; student: string };
  pairs: FeaturePair[];
  featureLoss: FeatureLossKind;
  featureWeight: number;
  attentionP: number;
  data: string;
  evalData?: string;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: OptimizerOptions;
  schedule: ScheduleOptions;
  temperature: number;
  alpha: number;
  alphaEnd: number;
  alphaSchedule: 'constant' | 'linear';
  seed: number;
  limit?: number;
  evalLimit?: number;
  evalEvery?: number;
  threads?: number;
  ep?: EpName;
  cacheDir: string;
  cacheMaxBytes: number;
}

/** What the loop produced. */
export interface DistillTrainResult {
  /** Trained student weights (projections excluded). */
  weights: Map<string, Float32Array>;
  steps: number;
  samplesPerSec: number;
  hasLabels: boolean;
  evals: Array<{ step: number; accuracy: number }>;
  best?: { step: number; accuracy: number };
  /** Accuracy of the starting student on the evaluation data (when it has labels). */
  studentBefore?: { samples: number; accuracy?: number };
  heads: FeatureHead[];
  cache: TeacherCacheStats;
  teacherEp: string;
  diagnostics: DistillDiagnostics;
  warnings: string[];
}

/** The teacher's output the loss reads: its first output, or the logits under a final Softmax. */
function logitsOf(proto: ModelProto): string {
  const out = proto.graph!.output[0].name;
  const producer = proto.graph!.node.find((n) => n.output.includes(out));
  return producer?.opType === 'Softmax' ? producer.input[0] : out;
}

const feedsOfBatch = (b: Batch) => Object.fromEntries(Object.entries(b.inputs).map(([k, v]) => [k, toOrt(v)]));

/** Sample i of a batched host tensor, batch axis kept. */
function sampleOf(t: HostTensor, i: number): HostTensor {
  const n = t.shape[0];
  const per = t.data.length / n;
  return { ...t, shape: [1, ...t.shape.slice(1)], data: t.data.subarray(i * per, (i + 1) * per) as HostTensor['data'] };
}

/** Runs the teacher on a batch and returns the fetched values, each [count, ...] as float32 (one run per sample when it cannot batch). */
async function runTeacher(s: ModelSession, batch: Batch, names: string[]): Promise<Float32Array[]> {
  if (s.batched || batch.count === 1) {
    const out = await s.session.run(feedsOfBatch(batch), names);
    return names.map((n) => outputFloats(out[n]));
  }
  const parts: Float32Array[][] = names.map(() => []);
  for (let i = 0; i < batch.count; i++) {
    const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(sampleOf(v, i))]));
    const out = await s.session.run(feeds, names);
    names.forEach((n, k) => parts[k].push(outputFloats(out[n]).slice()));
  }
  return parts.map((list) => {
    const all = new Float32Array(list.reduce((a, x) => a + x.length, 0));
    let at = 0;
    for (const x of list) {
      all.set(x, at);
      at += x.length;
    }
    return all;
  });
}

const argmax = (v: ArrayLike<number>, at: number, n: number) => {
  let best = 0;
  for (let c = 1; c < n; c++) if (v[at + c] > v[at + best]) best = c;
  return best;
};

/** Trains the student on the teacher; neither model is changed. */
export async function distillTrain(o: DistillTrainOptions, signal?: AbortSignal, onStep: (p: DistillProgress) => void = () => {}): Promise<DistillTrainResult> {
  const warnings = checkSignatures(o.teacher.proto, o.student.proto, o.files);
  const plan = planFeatures(o.teacher.proto, o.student.proto, o.pairs, o.featureLoss, { files: o.files, attentionP: o.attentionP, weight: o.featureWeight, seed: o.seed });
  const trainable = [...defaultTrainable(o.student.graph), ...plan.projections];
  const tg = buildTrainingGraph(plan.student, { loss: 'distill', trainable, distill: { features: plan.heads.map((h) => h.term) }, file: o.files.student });
  const d = tg.distill!;
  const inputs = modelInputs(o.student);
  if (inputs.length !== 1) throw new InputError(o.files.student, `distillation takes single-input models for now; this one has ${inputs.length} inputs`);
  const threads = o.threads ?? Math.max(1, os.availableParallelism() - 1);
  const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 4 };
  const teacherModel = OnnxModel.fromBytes(toBinary(ModelProtoSchema, plan.teacher), o.files.teacher);
  const teacherLogits = logitsOf(o.teacher.proto);
  const targetNames = [teacherLogits, ...plan.heads.map((h) => h.teacherValue)];
  const rawTeacher = [...new Set(o.pairs.map((p) => p.teacher))];
  const sessions: Array<{ release(): Promise<void> }> = [];
  let cache: TeacherCache | undefined;
  try {
    const teacher = await openSession(teacherModel, { ep: o.ep ?? 'auto', extraOutputs: [...targetNames, ...rawTeacher], dynamicBatch: true, threads });
    sessions.push(teacher);
    warnings.push(...teacher.warnings);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), sessionOptions);
    } catch (err) {
      throw new InputError(o.files.student, `onnxruntime cannot load the distillation training graph: ${(err as Error).message.split('\n')[0]}`);
    }
    sessions.push(session);
    const rawStudent = [...new Set(o.pairs.map((p) => p.student))];
    const forward = await ort.InferenceSession.create(toBinary(ModelProtoSchema, forwardOnly(tg, rawStudent)), sessionOptions);
    sessions.push(forward);

    const randomCount = o.limit ?? 64;
    const probe = await openDataset(o.data, inputs, { limit: o.limit, seed: o.seed, randomCount });
    warnings.push(...probe.warnings);
    const hasLabels = probe.hasLabels;
    let { alpha, alphaEnd } = o;
    if (!hasLabels && (alpha > 0 || alphaEnd > 0)) {
      warnings.push(`${o.data} has no labels: training on the teacher's soft targets alone (alpha 0 instead of ${alpha})`);
      alpha = alphaEnd = 0;
    }
    const classes = logitClasses(tg);
    const sizes = [classes, ...plan.heads.map((h) => h.shape.reduce((a, b) => a * b, 1))];
    const recordFloats = sizes.reduce((a, b) => a + b, 0);
    // Cache keys are sample indices in the source's order, which a --limit picks from: size the cache by the whole source.
    const sourceSize = o.limit === undefined || o.data === 'random' ? probe.size : (await openDataset(o.data, inputs, {})).size;
    // Random samples are drawn from the per-epoch seed, so an index does not name the same sample twice: no cache.
    cache = new TeacherCache(o.cacheDir, { teacherSha256: o.teacherSha256, data: dataIdentity(o.data), tensors: targetNames, sizes }, recordFloats, sourceSize, o.data === 'random' ? 0 : o.cacheMaxBytes);
    if (o.data === 'random') cache.stats.note = 'random data: the teacher runs on every batch (its samples change with the epoch seed)';

    const studentWeights = o.student.weights();
    // Student weights through their references (external data included); projections are fresh raw_data initializers.
    const weights = tg.initial.map((t) => {
      const ref = studentWeights.get(t.name)?.ref;
      if (ref && ref.dtype !== 1) throw new InputError(o.files.student, `'${t.name}' is not float32; distillation trains float32 weights only`);
      return ref ? Float32Array.from(ref.toFloat32()) : new Float32Array(t.rawData.slice().buffer);
    });
    const shapes = tg.initial.map((t) => tensorShape(t));
    const evalSpec = o.evalData;
    const accuracyNow = async (w: Float32Array[]) => (evalSpec ? (await forwardStats(forward, tg, w, shapes, evalSpec, inputs, o.evalLimit, signal)).accuracy : undefined);
    const before = evalSpec ? await forwardStats(forward, tg, weights, shapes, evalSpec, inputs, o.evalLimit, signal) : undefined;

    const opt = createOptimizer(o.optimizer);
    const stepsPerEpoch = Math.ceil(probe.size / o.batch);
    const totalSteps = stepsPerEpoch * o.epochs;
    const evalEvery = o.evalEvery ?? stepsPerEpoch;
    const logEvery = Math.max(1, Math.floor(stepsPerEpoch / 20));
    const steps: DistillStepLog[] = [];
    const evals: Array<{ step: number; accuracy: number }> = [];
    let best: { step: number; accuracy: number; weights: Float32Array[] } | undefined;
    let step = 0;
    let samples = 0;
    let trainMs = 0;
    let lastReport = 0;
    const acc = { total: 0, ce: 0, kd: 0, feature: 0, n: 0, right: 0, agree: 0, count: 0 };
    const scalar = (v: number) => new ort.Tensor('float32', Float32Array.from([v]), []);

    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const dataset = await openDataset(o.data, inputs, { limit: o.limit, seed: o.seed + epoch, shuffle: true, randomCount });
      for await (const batch of dataset.batches(o.batch, signal)) {
        if (signal?.aborted) throw new CancelledError();
        const t0 = performance.now();
        const indices = batch.indices ?? Array.from({ length: batch.count }, (_, i) => batch.start + i);
        let records = cache.get(indices);
        if (!records) {
          const got = await runTeacher(teacher, batch, targetNames);
          records = new Float32Array(batch.count * recordFloats);
          for (let i = 0; i < batch.count; i++) {
            let at = i * recordFloats;
            got.forEach((values, k) => {
              records!.set(values.subarray(i * sizes[k], (i + 1) * sizes[k]), at);
              at += sizes[k];
            });
          }
          cache.put(indices, records);
        }
        const n = batch.count;
        const split = sizes.map((size, k) => {
          const out = new Float32Array(n * size);
          const offset = sizes.slice(0, k).reduce((a, b) => a + b, 0);
          for (let i = 0; i < n; i++) out.set(records!.subarray(i * recordFloats + offset, i * recordFloats + offset + size), i * size);
          return out;
        });
        const t = totalSteps > 1 ? step / (totalSteps - 1) : 1;
        const a = o.alphaSchedule === 'linear' ? alpha + (alphaEnd - alpha) * t : alpha;
        const feeds: Record<string, ort.Tensor> = feedsOfBatch(batch);
        tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', weights[k], shapes[k])));
        feeds[d.label] = new ort.Tensor('int64', batch.labels ? BigInt64Array.from(batch.labels, (l) => BigInt(l)) : new BigInt64Array(n), [n]);
        feeds[d.teacherLogits] = new ort.Tensor('float32', split[0], [n, classes]);
        plan.heads.forEach((h, k) => (feeds[d.teacherFeatures[k]] = new ort.Tensor('float32', split[k + 1], [n, ...h.shape])));
        feeds[d.alpha] = scalar(a);
        feeds[d.temperature] = scalar(o.temperature);
        const out = await session.run(feeds);
        const lr = learningRate(o.lr, step, totalSteps, o.schedule);
        opt.step(weights, tg.gradients.map((g) => out[g].data as Float32Array), lr);
        trainMs += performance.now() - t0;
        const loss = Number(out[tg.loss].data[0]);
        if (!Number.isFinite(loss)) throw new InputError(o.data, `the distillation loss became ${loss} at step ${step}; lower --lr or --temperature`);
        const logits = out[tg.output].data as Float32Array;
        for (let i = 0; i < n; i++) {
          const s = argmax(logits, i * classes, classes);
          if (batch.labels && s === batch.labels[i]) acc.right++;
          if (s === argmax(split[0], i * classes, classes)) acc.agree++;
        }
        acc.count += n;
        acc.total += loss;
        acc.ce += Number(out[d.ce].data[0]);
        acc.kd += Number(out[d.kd].data[0]);
        if (d.feature) acc.feature += Number(out[d.feature].data[0]);
        acc.n++;
        step++;
        samples += n;
        if (step % logEvery === 0 || step === totalSteps) {
          const parts: DistillLossParts = { total: acc.total / acc.n, ...(hasLabels ? { ce: acc.ce / acc.n } : {}), kd: acc.kd / acc.n, ...(d.feature ? { feature: acc.feature / acc.n } : {}) };
          steps.push({ step, epoch, loss: parts, lr, alpha: a, ...(hasLabels ? { accuracy: acc.right / acc.count } : {}), agreement: acc.agree / acc.count });
          Object.assign(acc, { total: 0, ce: 0, kd: 0, feature: 0, n: 0, right: 0, agree: 0, count: 0 });
        }
        if (performance.now() - lastReport > 250) {
          lastReport = performance.now();
          const parts: DistillLossParts = { total: loss, ...(hasLabels ? { ce: Number(out[d.ce].data[0]) } : {}), kd: Number(out[d.kd].data[0]), ...(d.feature ? { feature: Number(out[d.feature].data[0]) } : {}) };
          onStep({ epoch, step, totalSteps, loss: parts, lr, alpha: a, temperature: o.temperature, samplesPerSec: (samples * 1000) / Math.max(1, trainMs) });
        }
        if (evalSpec && step % evalEvery === 0) {
          const accuracy = (await accuracyNow(weights))!;
          evals.push({ step, accuracy });
          if (!best || accuracy > best.accuracy) best = { step, accuracy, weights: weights.map((w) => w.slice()) };
        }
      }
    }
    if (evalSpec && evals.at(-1)?.step !== step) {
      const accuracy = (await accuracyNow(weights))!;
      evals.push({ step, accuracy });
      if (!best || accuracy > best.accuracy) best = { step, accuracy, weights: weights.map((w) => w.slice()) };
    }
    cache.close();
    const kept = best && best.step !== step ? best.weights : weights;

    // Diagnostics on the evaluation data (or the first 1000 training samples).
    const diagSpec = evalSpec ?? o.data;
    const diagnostics = await diagnose({ teacher, forward, tg, weights: kept, shapes, spec: diagSpec, inputs, limit: Math.min(o.evalLimit ?? 1000, 1000), teacherLogits, classes, pairs: o.pairs, signal });
    diagnostics.steps = steps;
    const trained = new Map<string, Float32Array>();
    tg.weights.forEach((name, k) => {
      if (!plan.projections.includes(name)) trained.set(name, kept[k]);
    });
    return {
      weights: trained,
      steps: step,
      samplesPerSec: Math.round((samples * 1000) / Math.max(1, trainMs)),
      hasLabels,
      evals,
      ...(best ? { best: { step: best.step, accuracy: best.accuracy } } : {}),
      ...(before ? { studentBefore: { samples: before.samples, ...(before.accuracy !== undefined ? { accuracy: before.accuracy } : {}) } } : {}),
      heads: plan.heads,
      cache: cache.stats,
      teacherEp: teacher.ep,
      diagnostics,
      warnings,
    };
  } finally {
    try {
      cache?.close();
    } catch {
      // Already reported or already closed.
    }
    for (const s of sessions) await s.release().catch(() => {});
    teacherModel.close();
  }
}

/** The class count of the logits, from the teacher-logits input of the training graph. */
function logitClasses(tg: TrainingGraph): number {
  const v = tg.proto.graph!.input.find((x) => x.name === tg.distill!.teacherLogits);
  const last = v?.type?.value.case === 'tensorType' ? v.type.value.value.shape?.dim.at(-1) : undefined;
  if (last?.value.case !== 'dimValue') throw new InputError(undefined, 'distillation needs a static class count');
  return Number(last.value.value);
}

/** The student's forward pass from a training graph: weights as inputs, the logits and the raw paired features as outputs. */
function forwardOnly(tg: TrainingGraph, features: string[]): ModelProto {
  const src = tg.proto.graph!;
  const d = tg.distill!;
  const drop = new Set([tg.label, d.teacherLogits, d.alpha, d.temperature, ...d.teacherFeatures]);
  const outputs = [tg.output, ...features.filter((f) => f !== tg.output)];
  const graph = { ...src, node: [...src.node], initializer: [...src.initializer], input: src.input.filter((v) => !drop.has(v.name)), output: outputs.map((name) => src.output.find((v) => v.name === name) ?? { ...src.output[0], name, type: undefined }), valueInfo: [] };
  removeDeadNodes(graph);
  return { ...tg.proto, graph };
}

/** Runs the student's forward pass over labelled or unlabelled data. */
async function forwardStats(forward: ort.InferenceSession, tg: TrainingGraph, weights: Float32Array[], shapes: number[][], spec: string, inputs: ReturnType<typeof modelInputs>, limit: number | undefined, signal?: AbortSignal): Promise<{ samples: number; accuracy?: number }> {
  const dataset = await openDataset(spec, inputs, { limit });
  let right = 0;
  let total = 0;
  for await (const batch of dataset.batches(256, signal)) {
    const feeds = feedsOfBatch(batch);
    tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', weights[k], shapes[k])));
    const logits = (await forward.run(feeds, [tg.output]))[tg.output].data as Float32Array;
    const classes = logits.length / batch.count;
    for (let i = 0; i < batch.count; i++) if (batch.labels && argmax(logits, i * classes, classes) === batch.labels[i]) right++;
    total += batch.count;
  }
  return { samples: total, ...(dataset.hasLabels ? { accuracy: right / total } : {}) };
}

/** Confusion (teacher class x student class), soft labels of the first samples and CKA between paired features. */
async function diagnose(a: {
  teacher: ModelSession;
  forward: ort.InferenceSession;
  tg: TrainingGraph;
  weights: Float32Array[];
  shapes: number[][];
  spec: string;
  inputs: ReturnType<typeof modelInputs>;
  limit: number;
  teacherLogits: string;
  classes: number;
  pairs: FeaturePair[];
  signal?: AbortSignal;
}): Promise<DistillDiagnostics> {
  const dataset = await openDataset(a.spec, a.inputs, { limit: a.limit });
  const C = a.classes;
  const matrix = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  const softLabels: DistillDiagnostics['softLabels'] = [];
  const teacherNames = [...new Set([a.teacherLogits, ...a.pairs.map((p) => p.teacher)])];
  const studentNames = [...new Set([a.tg.output, ...a.pairs.map((p) => p.student)])];
  const ckaSamples = 128;
  const tFeat = new Map<string, Float32Array[]>(teacherNames.map((n) => [n, []]));
  const sFeat = new Map<string, Float32Array[]>(studentNames.map((n) => [n, []]));
  let samples = 0;
  const softmax = (v: Float32Array, at: number) => {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, v[at + c]);
    const e = Array.from({ length: C }, (_, c) => Math.exp(v[at + c] - m));
    const s = e.reduce((x, y) => x + y, 0);
    return e.map((x) => Math.round((x / s) * 1e4) / 1e4);
  };
  for await (const batch of dataset.batches(64, a.signal)) {
    const t = await runTeacher(a.teacher, batch, teacherNames);
    const feeds = feedsOfBatch(batch);
    a.tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', a.weights[k], a.shapes[k])));
    const sOut = await a.forward.run(feeds, studentNames);
    const s = studentNames.map((n) => outputFloats(sOut[n]));
    const tl = t[0];
    const sl = s[0];
    for (let i = 0; i < batch.count; i++) {
      matrix[argmax(tl, i * C, C)][argmax(sl, i * C, C)]++;
      if (softLabels.length < 8) softLabels.push({ sample: samples + i, ...(batch.labels ? { label: batch.labels[i] } : {}), teacher: softmax(tl, i * C), student: softmax(sl, i * C) });
    }
    const take = Math.min(batch.count, ckaSamples - samples);
    for (let i = 0; i < take; i++) {
      teacherNames.forEach((n, k) => tFeat.get(n)!.push(t[k].slice((t[k].length / batch.count) * i, (t[k].length / batch.count) * (i + 1))));
      studentNames.forEach((n, k) => sFeat.get(n)!.push(s[k].slice((s[k].length / batch.count) * i, (s[k].length / batch.count) * (i + 1))));
    }
    samples += batch.count;
  }
  const grams = (m: Map<string, Float32Array[]>) => new Map([...m].map(([n, rows]) => [n, centeredGram(rows)]));
  const tg = grams(tFeat);
  const sg = grams(sFeat);
  const similarity: LayerSimilarity = {
    metric: 'cka',
    teacher: teacherNames,
    student: studentNames,
    matrix: teacherNames.map((tn) => studentNames.map((sn) => Math.round(cka(tg.get(tn)!, sg.get(sn)!) * 1e4) / 1e4)),
    samples: Math.min(samples, ckaSamples),
  };
  return { steps: [], confusion: { classes: C, samples, matrix }, similarity, softLabels };
}

/** The doubly centred Gram matrix of rows (n x n, row-major), in float64. */
export function centeredGram(rows: Float32Array[]): Float64Array {
  const n = rows.length;
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      const a = rows[i];
      const b = rows[j];
      for (let k = 0; k < a.length; k++) s += a[k] * b[k];
      g[i * n + j] = g[j * n + i] = s;
    }
  }
  const rowMean = new Float64Array(n);
  let all = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) rowMean[i] += g[i * n + j];
    all += rowMean[i];
    rowMean[i] /= n;
  }
  all /= n * n;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j] += all - rowMean[i] - rowMean[j];
  return g;
}

/** Linear CKA from centred Gram matrices: <K, L> / (|K| |L|). */
export function cka(k: Float64Array, l: Float64Array): number {
  let kl = 0;
  let kk = 0;
  let ll = 0;
  for (let i = 0; i < k.length; i++) {
    kl += k[i] * l[i];
    kk += k[i] * k[i];
    ll += l[i] * l[i];
  }
  return kk > 0 && ll > 0 ? kl / Math.sqrt(kk * ll) : 0;
}

