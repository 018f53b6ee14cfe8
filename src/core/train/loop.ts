/**
 * The training loop: batches from the Data layer (seeded shuffle, reshuffled per epoch), one onnxruntime run of the
 * training graph per step, an optimizer update in JS, learning-rate schedules, periodic evaluation that keeps the
 * best weights, progress and cancel. Pruning masks: weights that are exactly zero in the input stay zero.
 */
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto } from 'onnx-buf';
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import { openDataset } from '../data';
import type { Batch } from '../data/types';
import { InputError } from '../errors';
import { removeDeadNodes } from '../formats/onnx/edit';
import type { OnnxModel } from '../formats/onnx/model';
import { tensorShape } from '../formats/onnx/tensor';
import { modelInputs } from '../runtime/session';
import { toOrt } from '../runtime/tensors';
import { CancelledError } from '../../protocol/rpc';
import { buildTrainingGraph, defaultTrainable, type LossKind, type TrainingGraph } from './grad';
import { insertWeightFakeQuant, type FakeQuantOptions } from './qat';
import { createOptimizer, learningRate, type OptimizerOptions, type ScheduleOptions } from './optim';

/** What to train and how. */
export interface TrainOptions {
  /** Training data (a --data SPEC with labels). */
  data: string;
  /** Evaluation data; without it, no periodic evaluation and no best-checkpoint choice. */
  evalData?: string;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: OptimizerOptions;
  schedule?: ScheduleOptions;
  loss?: LossKind;
  trainable?: string[];
  seed?: number;
  /** Cap on training samples per epoch. */
  limit?: number;
  evalLimit?: number;
  /** Evaluate every N steps (default: once per epoch); the best evaluated weights are kept. */
  evalEvery?: number;
  /** Keep exact zeros of matrix-like weights at zero (default true). */
  keepMasks?: boolean;
  threads?: number;
  /** Quantization-aware training: weight fake-quant (per channel, int8 or 4-bit) in the forward pass; the weights returned stay float. */
  qat?: FakeQuantOptions;
}

/** A progress report, at most a few a second. */
export interface TrainProgress {
  epoch: number;
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  samplesPerSec: number;
}

/** What training produced. */
export interface TrainResult {
  /** Final (or best evaluated) weights by name. */
  weights: Map<string, Float32Array>;
  steps: number;
  samplesPerSec: number;
  /** Mean training loss per logged interval. */
  curve: Array<{ step: number; loss: number; lr: number }>;
  evals: Array<{ step: number; accuracy: number }>;
  /** The evaluation whose weights were kept, when evaluation ran. */
  best?: { step: number; accuracy: number };
  /** Weights whose zeros were held at zero, and how many zeros. */
  masks: Array<{ name: string; zeros: number; count: number }>;
  warnings: string[];
}

/** Weights treated as prunable: at least two dimensions larger than 1 (kernels and matrices, not biases). */
function matrixLike(shape: number[]): boolean {
  return shape.filter((d) => d > 1).length >= 2;
}

/** Trains `model`'s weights on the data; the model itself is not changed. */
export async function train(model: OnnxModel, o: TrainOptions, signal?: AbortSignal, progress: (p: TrainProgress) => void = () => {}): Promise<TrainResult> {
  const inputs = modelInputs(model);
  if (inputs.length !== 1) throw new InputError(model.file, `training takes single-input models for now; this one has ${inputs.length} inputs`);
  // With QAT the weights feed fake-quant nodes, so the default trainables are read off the original graph.
  const proto = o.qat ? insertWeightFakeQuant(model.proto, o.qat).proto : model.proto;
  const tg = buildTrainingGraph(proto, { loss: o.loss ?? 'softmaxCrossEntropy', trainable: o.trainable ?? (o.qat ? defaultTrainable(model.graph) : undefined), file: model.file });
  if (tg.weights.length === 0) throw new InputError(model.file, 'no trainable weights found (float initializers of Conv, Gemm, MatMul or Add)');
  const threads = o.threads ?? Math.max(1, os.availableParallelism() - 1);
  const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 4 };
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), sessionOptions);
  } catch (err) {
    throw new InputError(model.file, `onnxruntime cannot load the training graph: ${(err as Error).message.split('\n')[0]}`);
  }
  const evalSession = o.evalData ? await ort.InferenceSession.create(toBinary(ModelProtoSchema, forwardOnly(tg)), sessionOptions) : undefined;
  const warnings: string[] = [];
  try {
    const weights = tg.initial.map((t, k) => floatsOf(model, tg.weights[k], t.dataType));
    const shapes = tg.initial.map((t) => tensorShape(t));
    const masks: TrainResult['masks'] = [];
    const zeroIdx: Array<Uint32Array | undefined> = weights.map((w, k) => {
      if (o.keepMasks === false || !matrixLike(shapes[k])) return undefined;
      const idx: number[] = [];
      for (let i = 0; i < w.length; i++) if (w[i] === 0) idx.push(i);
      if (idx.length === 0) return undefined;
      masks.push({ name: tg.weights[k], zeros: idx.length, count: w.length });
      return Uint32Array.from(idx);
    });
    const opt = createOptimizer(o.optimizer);
    const schedule = o.schedule ?? { kind: 'constant' };
    const probe = await openDataset(o.data, inputs, { limit: o.limit, seed: o.seed });
    if (!probe.hasLabels) throw new InputError(o.data, 'training needs labelled data (an idx images file with its labels beside it, class folders, or a manifest with labels)');
    warnings.push(...probe.warnings);
    const stepsPerEpoch = Math.ceil(probe.size / o.batch);
    const totalSteps = stepsPerEpoch * o.epochs;
    const evalEvery = o.evalEvery ?? stepsPerEpoch;
    const curve: TrainResult['curve'] = [];
    const evals: TrainResult['evals'] = [];
    let best: { step: number; accuracy: number; weights: Float32Array[] } | undefined;
    let step = 0;
    let samples = 0;
    let lossSum = 0;
    let lossCount = 0;
    let lastReport = 0;
    const logEvery = Math.max(1, Math.floor(stepsPerEpoch / 20));
    let trainMs = 0;

    const evaluateNow = async () => {
      const t = performance.now();
      const accuracy = await accuracyOf(evalSession!, tg, weights, shapes, o.evalData!, inputs, o.evalLimit, signal);
      trainMs -= performance.now() - t;
      evals.push({ step, accuracy });
      if (!best || accuracy > best.accuracy) best = { step, accuracy, weights: weights.map((w) => w.slice()) };
    };

    for (let epoch = 0; epoch < o.epochs; epoch++) {
      // Reshuffled per epoch from the seed, so a run is reproducible.
      const dataset = await openDataset(o.data, inputs, { limit: o.limit, seed: (o.seed ?? 0) + epoch, shuffle: true });
      for await (const batch of dataset.batches(o.batch, signal)) {
        if (signal?.aborted) throw new CancelledError();
        const tStep = performance.now();
        const out = await session.run(feedsOf(tg, batch, weights, shapes));
        const grads = tg.gradients.map((g) => out[g].data as Float32Array);
        for (let k = 0; k < grads.length; k++) {
          const z = zeroIdx[k];
          if (z) for (let i = 0; i < z.length; i++) grads[k][z[i]] = 0;
        }
        const lr = learningRate(o.lr, step, totalSteps, schedule);
        opt.step(weights, grads, lr);
        // Weight decay would move a pruned zero; put it back.
        for (let k = 0; k < weights.length; k++) {
          const z = zeroIdx[k];
          if (z) for (let i = 0; i < z.length; i++) weights[k][z[i]] = 0;
        }
        trainMs += performance.now() - tStep;
        const loss = Number(out[tg.loss].data[0]);
        if (!Number.isFinite(loss)) throw new InputError(o.data, `the training loss became ${loss} at step ${step}; lower --lr`);
        lossSum += loss;
        lossCount++;
        step++;
        samples += batch.count;
        if (step % logEvery === 0 || step === totalSteps) {
          curve.push({ step, loss: lossSum / lossCount, lr });
          lossSum = 0;
          lossCount = 0;
        }
        if (performance.now() - lastReport > 500) {
          lastReport = performance.now();
          progress({ epoch, step, totalSteps, loss, lr, samplesPerSec: (samples * 1000) / Math.max(1, trainMs) });
        }
        if (evalSession && step % evalEvery === 0) await evaluateNow();
      }
    }
    if (evalSession && evals.at(-1)?.step !== step) await evaluateNow();
    const kept = best && best.step !== step ? best.weights : weights;
    return {
      weights: new Map(tg.weights.map((name, k) => [name, kept[k]])),
      steps: step,
      samplesPerSec: Math.round((samples * 1000) / Math.max(1, trainMs)),
      curve,
      evals,
      ...(best ? { best: { step: best.step, accuracy: best.accuracy } } : {}),
      masks,
      warnings,
    };
  } finally {
    await session.release();
    await evalSession?.release();
  }
}

function floatsOf(model: OnnxModel, name: string, dataType: number): Float32Array {
  if (dataType !== 1) throw new InputError(model.file, `'${name}' is not float32; training runs float32 weights only`);
  const w = model.weights().get(name);
  if (!w) throw new InputError(model.file, `no weight named '${name}'`);
  return Float32Array.from(w.ref.toFloat32());
}

function feedsOf(tg: TrainingGraph, batch: Batch, weights: Float32Array[], shapes: number[][]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(batch.inputs)) feeds[k] = toOrt(v);
  tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', weights[k], shapes[k])));
  feeds[tg.label] = new ort.Tensor('int64', BigInt64Array.from(batch.labels!, (l) => BigInt(l)), [batch.count]);
  return feeds;
}

/** The forward part of a training graph: weights still inputs, the logits the only output, no label. */
function forwardOnly(tg: TrainingGraph): ModelProto {
  const src = tg.proto.graph!;
  const graph = { ...src, node: [...src.node], initializer: [...src.initializer], input: src.input.filter((v) => v.name !== tg.label), output: src.output.filter((v) => v.name === tg.output), valueInfo: [] };
  removeDeadNodes(graph);
  // removeDeadNodes keeps graph inputs; the logits never depended on the label anyway.
  return { ...tg.proto, graph };
}

/** Top-1 accuracy of the current weights on labelled data. */
async function accuracyOf(session: ort.InferenceSession, tg: TrainingGraph, weights: Float32Array[], shapes: number[][], data: string, inputs: ReturnType<typeof modelInputs>, limit: number | undefined, signal?: AbortSignal): Promise<number> {
  const dataset = await openDataset(data, inputs, { limit });
  if (!dataset.hasLabels) throw new InputError(data, 'evaluation data has no labels, so accuracy cannot be measured');
  let right = 0;
  let total = 0;
  for await (const batch of dataset.batches(256, signal)) {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(batch.inputs)) feeds[k] = toOrt(v);
    tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', weights[k], shapes[k])));
    const out = (await session.run(feeds))[tg.output];
    const logits = out.data as Float32Array;
    const classes = logits.length / batch.count;
    for (let i = 0; i < batch.count; i++) {
      let arg = 0;
      for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + arg]) arg = c;
      if (arg === batch.labels![i]) right++;
    }
    total += batch.count;
  }
  return right / total;
}
