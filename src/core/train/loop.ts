/**
 * The training loop: batches from the Data layer (seeded shuffle, reshuffled per epoch), one onnxruntime run of the
 * training graph per step, an optimizer update in JS, learning-rate schedules, periodic evaluation that keeps the
 * best weights, progress and cancel. Pruning masks: weights that are exactly zero in the input stay zero.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import { openDataset } from '../data';
import type { Batch } from '../data/types';
import { InputError } from '../errors';
import { node as makeNode, valueInfo } from '../formats/onnx/build';
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
  /** Gradual magnitude pruning during training, ending at an exact sparsity of the matrix-like weights. */
  prune?: GradualPruneOptions;
  /**
   * Cross-entropy reads logits·scale (a softmax temperature of 1/scale) during training only; the model keeps its
   * weights' meaning and its argmax. 'auto' (the default for cross-entropy): 1 unless the model's logits on the first
   * batch have an RMS above 20, then 5/RMS, so a model with huge logits (a saturated softmax, where only misclassified
   * samples get a gradient) trains on margins again.
   */
  logitScale?: number | 'auto';
}

/**
 * Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017): every `every` steps between `start` and
 * `end` (fractions of the run) the smallest-magnitude kernel and matrix elements are zeroed, the target sparsity
 * rising along s·(1 − (1 − t)³); from `end` on the masks stay and the rest of the run fine-tunes at the final
 * sparsity. Zeros only accumulate, so weights already pruned in the input stay pruned. With evaluation, only
 * evaluations at the final sparsity compete for the kept weights.
 */
export interface GradualPruneOptions {
  /** Final fraction of zeros, 0 < sparsity < 1. */
  sparsity: number;
  /** 'global': one magnitude threshold across all kernels and matrices; 'layer': each reaches the sparsity; 'lamp': one threshold on LAMP scores (default global). */
  scope?: 'global' | 'layer' | 'lamp';
  /** Fraction of the run at which pruning starts (default 0) and reaches the final sparsity (default 0.5). */
  start?: number;
  end?: number;
  /** Steps between pruning rounds (default: about 20 rounds). */
  every?: number;
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
  /** Weights whose zeros were held at zero, and how many zeros (at the end, with gradual pruning). */
  masks: Array<{ name: string; zeros: number; count: number }>;
  /** The logit scale cross-entropy trained with (1 unless scaled). */
  logitScale: number;
  /** With gradual pruning: the rounds (step, target sparsity). */
  pruneRounds?: Array<{ step: number; sparsity: number }>;
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
  const loss = o.loss ?? 'softmaxCrossEntropy';
  if (o.logitScale !== undefined && o.logitScale !== 'auto' && !(o.logitScale > 0)) throw new InputError(undefined, `the logit scale must be a positive number or 'auto', not ${o.logitScale}`);
  const scaled = loss === 'softmaxCrossEntropy' && o.logitScale !== 1;
  let proto = o.qat ? insertWeightFakeQuant(model.proto, o.qat).proto : model.proto;
  if (scaled) proto = withLogitScale(proto);
  const tg = buildTrainingGraph(proto, { loss, trainable: o.trainable ?? (o.qat || scaled ? defaultTrainable(model.graph) : undefined), file: model.file, ...(scaled ? { output: scaledLogits } : {}) });
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
    const prunable = weights.map((_, k) => o.keepMasks !== false && matrixLike(shapes[k]));
    if (o.prune && !prunable.some(Boolean)) throw new InputError(model.file, 'gradual pruning found no kernels or matrices to prune (or masks are off)');
    let zeroIdx: Array<Uint32Array | undefined> = weights.map((w, k) => (prunable[k] ? zerosIn(w) : undefined));
    const opt = createOptimizer(o.optimizer);
    const extra: Record<string, ort.Tensor> = {};
    const setScale = (v: number) => scaled && (extra[logitScaleInput] = new ort.Tensor('float32', Float32Array.of(v), []));
    let logitScale = typeof o.logitScale === 'number' ? o.logitScale : 1;
    setScale(logitScale);
    const schedule = o.schedule ?? { kind: 'constant' };
    const probe = await openDataset(o.data, inputs, { limit: o.limit, seed: o.seed });
    if (!probe.hasLabels) throw new InputError(o.data, 'training needs labelled data (an idx images file with its labels beside it, class folders, or a manifest with labels)');
    warnings.push(...probe.warnings);
    const stepsPerEpoch = Math.ceil(probe.size / o.batch);
    const totalSteps = stepsPerEpoch * o.epochs;
    const evalEvery = o.evalEvery ?? stepsPerEpoch;
    const plan = o.prune ? prunePlan(o.prune, totalSteps, model.file) : undefined;
    const pruneRounds: Array<{ step: number; sparsity: number }> = [];
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
      const accuracy = await accuracyOf(evalSession!, tg, weights, shapes, extra, o.evalData!, inputs, o.evalLimit, signal);
      trainMs -= performance.now() - t;
      evals.push({ step, accuracy });
      // While gradual pruning is still removing weights, a better score comes from a denser model: not a candidate.
      const final = !plan || step >= plan.endStep;
      if (final && (!best || accuracy > best.accuracy)) best = { step, accuracy, weights: weights.map((w) => w.slice()) };
    };

    for (let epoch = 0; epoch < o.epochs; epoch++) {
      // Reshuffled per epoch from the seed, so a run is reproducible.
      const dataset = await openDataset(o.data, inputs, { limit: o.limit, seed: (o.seed ?? 0) + epoch, shuffle: true });
      for await (const batch of dataset.batches(o.batch, signal)) {
        if (scaled && (o.logitScale ?? 'auto') === 'auto' && step === 0) {
          // 'auto': read the logits' RMS off the first batch (scale 1) and pick the scale from it.
          const logits = (await session.run(feedsOf(tg, batch, weights, shapes, extra)))[tg.output].data as Float32Array;
          const rms = Math.sqrt(logits.reduce((a, v) => a + v * v, 0) / Math.max(1, logits.length));
          if (rms > 20) logitScale = 5 / rms;
          setScale(logitScale);
        }
        if (signal?.aborted) throw new CancelledError();
        const tStep = performance.now();
        if (plan && step >= plan.startStep && step <= plan.endStep && (step - plan.startStep) % plan.every === 0) {
          const target = plan.target(step);
          magnitudePrune(weights, prunable, target, o.prune!.scope ?? 'global');
          zeroIdx = weights.map((w, k) => (prunable[k] ? zerosIn(w) : undefined));
          pruneRounds.push({ step, sparsity: target });
        }
        const out = await session.run(feedsOf(tg, batch, weights, shapes, extra));
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
    const masks: TrainResult['masks'] = [];
    zeroIdx.forEach((z, k) => z?.length && masks.push({ name: tg.weights[k], zeros: z.length, count: weights[k].length }));
    return {
      weights: new Map(tg.weights.map((name, k) => [name, kept[k]])),
      steps: step,
      samplesPerSec: Math.round((samples * 1000) / Math.max(1, trainMs)),
      curve,
      evals,
      ...(best ? { best: { step: best.step, accuracy: best.accuracy } } : {}),
      masks,
      logitScale,
      ...(plan ? { pruneRounds } : {}),
      warnings,
    };
  } finally {
    await session.release();
    await evalSession?.release();
  }
}

const logitScaleInput = 'whittle_logit_scale';
const scaledLogits = 'whittle_scaled_logits';

/** The model with its logits (before a final Softmax) times a scalar input, as an extra output for the loss. */
function withLogitScale(proto: ModelProto): ModelProto {
  const g = proto.graph!;
  let logits = g.output[0]?.name;
  const producer = g.node.find((n) => n.output.includes(logits));
  if (producer?.opType === 'Softmax') logits = producer.input[0];
  const graph = {
    ...g,
    node: [...g.node, makeNode('Mul', [logits, logitScaleInput], [scaledLogits], {}, scaledLogits)],
    input: [...g.input, valueInfo(logitScaleInput, 1, [])],
    output: [...g.output, create(ValueInfoProtoSchema, { name: scaledLogits })],
  };
  return { ...proto, graph };
}

/** Indices of the exact zeros of a weight, or undefined when it has none. */
function zerosIn(w: Float32Array): Uint32Array | undefined {
  const idx: number[] = [];
  for (let i = 0; i < w.length; i++) if (w[i] === 0) idx.push(i);
  return idx.length ? Uint32Array.from(idx) : undefined;
}

/** The pruning schedule in steps, checked. */
export function prunePlan(p: GradualPruneOptions, totalSteps: number, file?: string): { startStep: number; endStep: number; every: number; target: (step: number) => number } {
  const start = p.start ?? 0;
  const end = p.end ?? 0.5;
  if (!(p.sparsity > 0 && p.sparsity < 1)) throw new InputError(file, `the pruning sparsity must lie strictly between 0 and 1, not ${p.sparsity}`);
  if (!(start >= 0 && end >= start && end <= 1)) throw new InputError(file, `the pruning window must satisfy 0 <= start <= end <= 1 (got ${start} to ${end})`);
  const startStep = Math.floor(start * totalSteps);
  const endStep = Math.min(totalSteps - 1, Math.max(startStep, Math.floor(end * totalSteps)));
  const every = p.every ?? Math.max(1, Math.floor((endStep - startStep) / 20));
  if (!Number.isSafeInteger(every) || every < 1) throw new InputError(file, `the pruning interval must be a whole number of steps of at least 1, not ${p.every}`);
  // The last round lands on a step the run reaches (at most endStep), at the final sparsity.
  const rounds = Math.floor((endStep - startStep) / every);
  const last = startStep + rounds * every;
  return {
    startStep,
    endStep: last,
    every,
    target: (step) => {
      const t = Math.min(1, (step - startStep) / (last - startStep || 1));
      return step >= last ? p.sparsity : p.sparsity * (1 - (1 - t) ** 3);
    },
  };
}

/**
 * Zeroes the lowest-scoring elements of the prunable weights so that exactly round(sparsity·n) of their n elements are
 * zero: by magnitude over all of them (global) or per weight (layer), or by LAMP score over all of them ('lamp', Lee
 * et al. 2021: w² over the sum of w² of the same weight's elements at least as large, which rescales each layer so a
 * global threshold does not empty a layer of small weights). Existing zeros score 0 and go first, so zeros only
 * accumulate.
 */
export function magnitudePrune(weights: Float32Array[], prunable: boolean[], sparsity: number, scope: 'global' | 'layer' | 'lamp'): void {
  const scores = weights.map((w) => (scope === 'lamp' ? lampScores(w) : w.map(Math.abs)));
  const groups = scope === 'layer' ? weights.map((_, k) => [k]).filter(([k]) => prunable[k]) : [weights.map((_, k) => k).filter((k) => prunable[k])];
  for (const group of groups) {
    const n = group.reduce((a, k) => a + weights[k].length, 0);
    const want = Math.round(sparsity * n);
    if (want === 0) continue;
    const all = new Float32Array(n);
    let at = 0;
    for (const k of group) all.set(scores[k], (at += scores[k].length) - scores[k].length);
    all.sort();
    const thr = all[want - 1];
    let below = 0;
    for (let i = 0; i < want; i++) if (all[i] < thr) below++;
    // Everything under the threshold goes, then elements at it until the count is exact.
    let ties = want - below;
    for (const k of group) {
      const w = weights[k];
      const sc = scores[k];
      for (let i = 0; i < w.length; i++) {
        if (sc[i] < thr) w[i] = 0;
        else if (sc[i] === thr && ties > 0) {
          w[i] = 0;
          ties--;
        }
      }
    }
  }
}

/** LAMP scores of one weight: w_i² / Σ w_j² over the elements j with |w_j| ≥ |w_i| (ties in index order). */
function lampScores(w: Float32Array): Float32Array {
  const order = Array.from(w.keys()).sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]) || a - b);
  const out = new Float32Array(w.length);
  let suffix = 0;
  for (let r = order.length - 1; r >= 0; r--) {
    const sq = w[order[r]] * w[order[r]];
    suffix += sq;
    out[order[r]] = suffix > 0 ? sq / suffix : 0;
  }
  return out;
}

function floatsOf(model: OnnxModel, name: string, dataType: number): Float32Array {
  if (dataType !== 1) throw new InputError(model.file, `'${name}' is not float32; training runs float32 weights only`);
  const w = model.weights().get(name);
  if (!w) throw new InputError(model.file, `no weight named '${name}'`);
  return Float32Array.from(w.ref.toFloat32());
}

function feedsOf(tg: TrainingGraph, batch: Batch, weights: Float32Array[], shapes: number[][], extra: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = { ...extra };
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
async function accuracyOf(session: ort.InferenceSession, tg: TrainingGraph, weights: Float32Array[], shapes: number[][], extra: Record<string, ort.Tensor>, data: string, inputs: ReturnType<typeof modelInputs>, limit: number | undefined, signal?: AbortSignal): Promise<number> {
  const dataset = await openDataset(data, inputs, { limit });
  if (!dataset.hasLabels) throw new InputError(data, 'evaluation data has no labels, so accuracy cannot be measured');
  let right = 0;
  let total = 0;
  for await (const batch of dataset.batches(256, signal)) {
    const feeds: Record<string, ort.Tensor> = { ...extra };
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
