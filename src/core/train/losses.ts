/**
 * Losses with hand-written gradients that buildTrainingGraph appends after the forward pass: the distillation loss
 * (hard-label cross-entropy, the temperature-scaled KL to a teacher, and feature terms). Each returns the scalar loss
 * and the gradient seeds (value -> d loss / d value) that backpropagation starts from.
 */
import { InputError } from '../errors';
import type { AttrValue } from '../formats/onnx/build';
import type { Dim } from '../formats/onnx/shapes';

/** What a loss builder may emit into the training graph. */
export interface LossEmitter {
  emit(op: string, inputs: string[], attrs?: Record<string, AttrValue>): string;
  /** A 1-D int64 constant. */
  ints(values: number[]): string;
  /** A scalar int64 constant. */
  ints0(value: number): string;
  /** A scalar of the graph's float type. */
  scalar(v: number): string;
  /** Declares a graph input. */
  input(name: string, elemType: number, shape: Array<number | string>): void;
  floatType: number;
}

/** One feature term: a student value (after its projection or attention head) against a teacher value fed per batch. */
export interface FeatureTerm {
  /** The student value the term reads; it must lie on the forward graph. */
  student: string;
  /** Shape of the teacher value without the batch axis (equal to the student value's). */
  shape: number[];
  kind: 'mse' | 'cosine';
  /** Multiplier of the term (default 1). 'mse' is relative: Σ(s − t)²/Σt² over the batch. */
  weight?: number;
}

/** Options of the distillation loss. */
export interface DistillLossOptions {
  features?: FeatureTerm[];
}

/** Names of the distillation loss's inputs and outputs in the training graph. */
export interface DistillLossGraph {
  loss: string;
  /** int64 [N] labels (fed zeros with alpha 0 when the data has none). */
  label: string;
  /** Teacher logits [N, classes], float. */
  teacherLogits: string;
  /** Scalar inputs: alpha (weight of CE) and temperature T. */
  alpha: string;
  temperature: string;
  /** Teacher feature inputs, one per feature term, shaped [N, ...shape]. */
  teacherFeatures: string[];
  /** Scalar outputs of the parts: CE, T²·KL, and the summed weighted feature terms ('' without features). */
  ce: string;
  kd: string;
  feature: string;
  seeds: Array<[string, string]>;
}

/**
 * loss = alpha·CE(z, y) + (1 − alpha)·T²·KL(softmax(t/T) ‖ softmax(z/T)) + Σ_k w_k·F_k, means over the batch.
 * d/dz: alpha·(softmax(z) − onehot(y))/N + (1 − alpha)·T·(softmax(z/T) − softmax(t/T))/N.
 */
export function distillLoss(e: LossEmitter, logits: string, logitShape: Dim[] | undefined, opts: DistillLossOptions, file?: string): DistillLossGraph {
  const classes = logitShape?.[logitShape.length - 1];
  if (!logitShape || logitShape.length !== 2 || typeof classes !== 'number') throw new InputError(file, `distillation needs a [batch, classes] output; '${logits}' has shape [${logitShape?.join(',') ?? '?'}]`);
  const f = e.floatType;
  const names = { label: 'whittle_label', teacherLogits: 'whittle_teacher_logits', alpha: 'whittle_alpha', temperature: 'whittle_temperature' };
  e.input(names.label, 7, ['whittle_batch']);
  e.input(names.teacherLogits, f, ['whittle_batch', classes]);
  e.input(names.alpha, f, []);
  e.input(names.temperature, f, []);
  const count = e.emit('Cast', [e.emit('Gather', [e.emit('Shape', [names.teacherLogits]), e.ints([0])], { axis: 0 })], { to: f });
  const n = e.emit('Reshape', [count, e.ints([])]);
  const sumAll = (x: string) => e.emit('ReduceSum', [x], { keepdims: 0 });
  // Hard labels.
  const logp = e.emit('LogSoftmax', [logits], { axis: 1 });
  const classIds = e.emit('Range', [e.ints0(0), e.ints0(classes), e.ints0(1)]);
  const oneHot = e.emit('Cast', [e.emit('Equal', [e.emit('Unsqueeze', [names.label, e.ints([1])]), e.emit('Unsqueeze', [classIds, e.ints([0])])])], { to: f });
  const ce = e.emit('Div', [e.emit('Neg', [sumAll(e.emit('Mul', [oneHot, logp]))]), n]);
  const dCe = e.emit('Div', [e.emit('Sub', [e.emit('Exp', [logp]), oneHot]), n]);
  // Soft targets at temperature T.
  const T = names.temperature;
  const lps = e.emit('LogSoftmax', [e.emit('Div', [logits, T])], { axis: 1 });
  const lpt = e.emit('LogSoftmax', [e.emit('Div', [names.teacherLogits, T])], { axis: 1 });
  const pt = e.emit('Exp', [lpt]);
  const kd = e.emit('Div', [e.emit('Mul', [e.emit('Mul', [T, T]), sumAll(e.emit('Mul', [pt, e.emit('Sub', [lpt, lps])]))]), n]);
  const dKd = e.emit('Div', [e.emit('Mul', [T, e.emit('Sub', [e.emit('Exp', [lps]), pt])]), n]);
  const a = names.alpha;
  const oneMinusA = e.emit('Sub', [e.scalar(1), a]);
  let loss = e.emit('Add', [e.emit('Mul', [a, ce]), e.emit('Mul', [oneMinusA, kd])]);
  const seeds: Array<[string, string]> = [[logits, e.emit('Add', [e.emit('Mul', [a, dCe]), e.emit('Mul', [oneMinusA, dKd])])]];
  const teacherFeatures: string[] = [];
  const featureParts: string[] = [];
  (opts.features ?? []).forEach((term, k) => {
    const t = `whittle_teacher_feature_${k}`;
    e.input(t, f, ['whittle_batch', ...term.shape]);
    teacherFeatures.push(t);
    const w = e.scalar(term.weight ?? 1);
    const s = term.student;
    if (term.kind === 'mse') {
      // w·Σ(s − t)²/Σt²: the MSE relative to the teacher feature's mean square, so the term does not depend on the
      // scale of the activations (mnist-8's run in the hundreds); d/ds = 2w(s − t)/Σt².
      const diff = e.emit('Sub', [s, t]);
      const energy = e.emit('Add', [sumAll(e.emit('Mul', [t, t])), e.scalar(1e-12)]);
      featureParts.push(e.emit('Div', [e.emit('Mul', [w, sumAll(e.emit('Mul', [diff, diff]))]), energy]));
      seeds.push([s, e.emit('Div', [e.emit('Mul', [e.emit('Mul', [w, e.scalar(2)]), diff]), energy])]);
    } else {
      // w·mean_n(1 − cos(s_n, t_n)); d/ds_n = −(w/N)·(t_n/(|s_n||t_n|) − cos_n·s_n/|s_n|²).
      const sf = e.emit('Flatten', [s], { axis: 1 });
      const tf = e.emit('Flatten', [t], { axis: 1 });
      const rowSum = (x: string) => e.emit('ReduceSum', [x, e.ints([1])], { keepdims: 1 });
      const eps = e.scalar(1e-12);
      const ns = e.emit('Sqrt', [e.emit('Add', [rowSum(e.emit('Mul', [sf, sf])), eps])]);
      const nt = e.emit('Sqrt', [e.emit('Add', [rowSum(e.emit('Mul', [tf, tf])), eps])]);
      const nsnt = e.emit('Mul', [ns, nt]);
      const cos = e.emit('Div', [rowSum(e.emit('Mul', [sf, tf])), nsnt]);
      featureParts.push(e.emit('Div', [e.emit('Mul', [w, sumAll(e.emit('Sub', [e.scalar(1), cos]))]), n]));
      const inner = e.emit('Sub', [e.emit('Div', [tf, nsnt]), e.emit('Div', [e.emit('Mul', [cos, sf]), e.emit('Mul', [ns, ns])])]);
      const g = e.emit('Div', [e.emit('Mul', [e.emit('Neg', [w]), inner]), n]);
      seeds.push([s, e.emit('Reshape', [g, e.emit('Shape', [s])])]);
    }
  });
  let feature = '';
  if (featureParts.length) {
    feature = featureParts.length === 1 ? featureParts[0] : e.emit('Sum', featureParts);
    loss = e.emit('Add', [loss, feature]);
  }
  return { loss, ...names, teacherFeatures, ce, kd, feature, seeds };
}
