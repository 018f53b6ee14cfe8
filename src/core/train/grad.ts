/**
 * Reverse-mode autodiff over ONNX: turns an inference graph into a training graph of standard ONNX ops that the
 * stock onnxruntime runs. Trainable weights become graph inputs, and the graph outputs the loss and one gradient per
 * weight. Gradient rules live in one declarative table (op -> function); an op with no rule on a path from a
 * trainable weight to the loss is an InputError naming the op and the node. Formulations: DESIGN.md section 4.
 */
import { clone, create } from '@bufbuild/protobuf';
import { NodeProtoSchema, TensorProtoSchema, ValueInfoProtoSchema, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import { InputError } from '../errors';
import { int64Tensor, node as makeNode, valueInfo, type AttrValue } from '../formats/onnx/build';
import { topologicalOrder } from '../formats/onnx/edit';
import { inferShapes, type Dim } from '../formats/onnx/shapes';
import { tensorShape } from '../formats/onnx/tensor';
import { distillLoss, type DistillLossGraph, type DistillLossOptions } from './losses';

/** Losses the builder can append. */
export type LossKind = 'softmaxCrossEntropy' | 'mse' | 'distill';

/** Options for buildTrainingGraph. */
export interface TrainingGraphOptions {
  /** Initializers to train (default: every float initializer feeding Conv, Gemm, MatMul or Add, directly or through Reshape). */
  trainable?: string[];
  loss: LossKind;
  /** The model output the loss reads (default: the first). A Softmax output is traced back to its logits. */
  output?: string;
  /** Name of the model file, for errors. */
  file?: string;
  /** Feature terms of the 'distill' loss (src/core/train/losses.ts). */
  distill?: DistillLossOptions;
}

/** The training graph and the names to feed and fetch. */
export interface TrainingGraph {
  proto: ModelProto;
  /** Trainable weight names, in the order of `gradients`. */
  weights: string[];
  /** Their starting values (the model's initializers). */
  initial: TensorProto[];
  /** Gradient output name per weight. */
  gradients: string[];
  /** The scalar loss output. */
  loss: string;
  /** The label input: int64 [N] class indices for cross-entropy, or a tensor shaped like the output for MSE. */
  label: string;
  /** The logits (or output) the loss reads, also fetchable. */
  output: string;
  /** The model's data inputs (not weights, not the label). */
  dataInputs: string[];
  /** With the 'distill' loss: its extra inputs and its parts (also graph outputs). */
  distill?: DistillLossGraph;
}

/** Opset the training graph runs at: ScatterElements reduction='add' needs 16, axes-as-input ReduceSum 13. */
const trainingOpset = 17;

/** Ops whose signature changed between the model's opset and trainingOpset in ways that would change meaning. */
const opsetSensitive = new Set(['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'Squeeze', 'Unsqueeze', 'Split', 'Slice', 'Pad', 'Upsample', 'Resize', 'Softmax', 'LogSoftmax', 'Hardmax', 'TopK', 'Clip', 'Dropout', 'BatchNormalization']);

/** What a rule sees: the node, its input gradient needs, and emitters for new nodes and constants. */
export interface GradCtx {
  node: NodeProto;
  /** Gradient of each output ('' when no gradient flows into it). */
  dY: string[];
  /** Whether input i needs a gradient. */
  needs(i: number): boolean;
  /** Static shape of a value, if known. */
  shape(name: string): Dim[] | undefined;
  /** Static shape that must be known (else InputError naming the node). */
  staticShape(name: string, what: string): number[];
  /** Emits a node, returning its (first) output name. */
  emit(op: string, inputs: string[], attrs?: Record<string, AttrValue>, outputs?: number): string;
  /** Emits a node with several outputs. */
  emitMulti(op: string, inputs: string[], outputs: number, attrs?: Record<string, AttrValue>): string[];
  /** A scalar constant of the graph's float type. */
  scalar(v: number): string;
  /** A float constant of the graph's float type with a shape. */
  floats(dims: number[], values: ArrayLike<number>): string;
  /** An int64 constant. */
  ints(values: number[]): string;
  /** Sums `g` (shaped like `outName`) down to the shape of `inName` under numpy broadcasting. */
  unbroadcast(g: string, outName: string, inName: string): string;
  /** The values of an int64 initializer input (axes, split sizes), if it is one. */
  constInts(name: string): number[] | undefined;
  /** Attribute value helpers. */
  int(name: string, dflt: number): number;
  ints_(name: string): number[] | undefined;
  float(name: string, dflt: number): number;
  str(name: string, dflt: string): string;
  /** A one-element zero tensor of the graph's float type, for ConstantOfShape. */
  zeroTensor(): TensorProto;
  /** Adds an output to the forward node (MaxPool Indices), returning its name. */
  forwardOutput(index: number): string;
  /** The element type (TensorProto.DataType) of a value, if known. */
  dtype(name: string): number | undefined;
  /** Whether a value is one of the trainable weights themselves. */
  isTrainable(name: string): boolean;
}

/** One gradient rule: returns the gradient name per input ('' or undefined where none). */
export type GradRule = (c: GradCtx) => Array<string | undefined>;

const unary = (f: (c: GradCtx, x: string, y: string, dy: string) => string): GradRule => (c) => [c.needs(0) ? f(c, c.node.input[0], c.node.output[0], c.dY[0]) : undefined];

/** The rule table. */
export const gradRules: Record<string, GradRule> = {
  Identity: (c) => [c.dY[0]],
  Dropout: (c) => [c.dY[0]],
  Relu: unary((c, _x, y, dy) => c.emit('Where', [c.emit('Greater', [y, c.scalar(0)]), dy, c.scalar(0)])),
  LeakyRelu: unary((c, x, _y, dy) => c.emit('Where', [c.emit('Greater', [x, c.scalar(0)]), dy, c.emit('Mul', [dy, c.scalar(c.float('alpha', 0.01))])])),
  Sigmoid: unary((c, _x, y, dy) => c.emit('Mul', [dy, c.emit('Mul', [y, c.emit('Sub', [c.scalar(1), y])])])),
  Tanh: unary((c, _x, y, dy) => c.emit('Mul', [dy, c.emit('Sub', [c.scalar(1), c.emit('Mul', [y, y])])])),
  Reshape: (c) => [c.needs(0) ? c.emit('Reshape', [c.dY[0], c.emit('Shape', [c.node.input[0]])]) : undefined],
  Flatten: (c) => [c.needs(0) ? c.emit('Reshape', [c.dY[0], c.emit('Shape', [c.node.input[0]])]) : undefined],
  Transpose: (c) => {
    if (!c.needs(0)) return [];
    const perm = c.ints_('perm') ?? c.staticShape(c.node.input[0], 'Transpose without perm').map((_, i, a) => a.length - 1 - i);
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [c.emit('Transpose', [c.dY[0]], { perm: inv })];
  },
  Add: (c) => [c.needs(0) ? c.unbroadcast(c.dY[0], c.node.output[0], c.node.input[0]) : undefined, c.needs(1) ? c.unbroadcast(c.dY[0], c.node.output[0], c.node.input[1]) : undefined],
  Sub: (c) => [c.needs(0) ? c.unbroadcast(c.dY[0], c.node.output[0], c.node.input[0]) : undefined, c.needs(1) ? c.unbroadcast(c.emit('Neg', [c.dY[0]]), c.node.output[0], c.node.input[1]) : undefined],
  Mul: (c) => {
    const [a, b] = c.node.input;
    return [c.needs(0) ? c.unbroadcast(c.emit('Mul', [c.dY[0], b]), c.node.output[0], a) : undefined, c.needs(1) ? c.unbroadcast(c.emit('Mul', [c.dY[0], a]), c.node.output[0], b) : undefined];
  },
  Div: (c) => {
    const [a, b] = c.node.input;
    const y = c.node.output[0];
    return [c.needs(0) ? c.unbroadcast(c.emit('Div', [c.dY[0], b]), y, a) : undefined, c.needs(1) ? c.unbroadcast(c.emit('Neg', [c.emit('Div', [c.emit('Mul', [c.dY[0], y]), b])]), y, b) : undefined];
  },
  Gemm: gemmRule,
  MatMul: matMulRule,
  Softmax: (c) => {
    if (!c.needs(0)) return [];
    const y = c.node.output[0];
    const axis = c.ints([c.int('axis', -1)]);
    const s = c.emit('ReduceSum', [c.emit('Mul', [c.dY[0], y]), axis], { keepdims: 1 });
    return [c.emit('Mul', [y, c.emit('Sub', [c.dY[0], s])])];
  },
  LogSoftmax: (c) => {
    if (!c.needs(0)) return [];
    const axis = c.ints([c.int('axis', -1)]);
    const s = c.emit('ReduceSum', [c.dY[0], axis], { keepdims: 1 });
    return [c.emit('Sub', [c.dY[0], c.emit('Mul', [c.emit('Exp', [c.node.output[0]]), s])])];
  },
  Conv: convRule,
  MaxPool: maxPoolRule,
  AveragePool: averagePoolRule,
  Neg: unary((c, _x, _y, dy) => c.emit('Neg', [dy])),
  Exp: unary((c, _x, y, dy) => c.emit('Mul', [dy, y])),
  Log: unary((c, x, _y, dy) => c.emit('Div', [dy, x])),
  Sqrt: unary((c, _x, y, dy) => c.emit('Div', [dy, c.emit('Mul', [y, c.scalar(2)])])),
  Erf: unary((c, x, _y, dy) => c.emit('Mul', [dy, c.emit('Mul', [c.scalar(2 / Math.sqrt(Math.PI)), c.emit('Exp', [c.emit('Neg', [c.emit('Mul', [x, x])])])])])),
  Pow: (c) => {
    const [x, p] = c.node.input;
    const y = c.node.output[0];
    const dy = c.dY[0];
    return [
      c.needs(0) ? c.unbroadcast(c.emit('Mul', [dy, c.emit('Mul', [p, c.emit('Pow', [x, c.emit('Sub', [p, c.scalar(1)])])])]), y, x) : undefined,
      c.needs(1) ? c.unbroadcast(c.emit('Mul', [dy, c.emit('Mul', [y, c.emit('Log', [x])])]), y, p) : undefined,
    ];
  },
  Clip: (c) => {
    if (c.needs(1) || c.needs(2)) throw new InputError(undefined, `Clip node '${c.node.name}': gradients for the min and max inputs have no rule`);
    if (!c.needs(0)) return [];
    const [x, lo, hi] = c.node.input;
    let keep: string | undefined;
    if (lo) keep = c.emit('GreaterOrEqual', [x, lo]);
    if (hi) {
      const below = c.emit('LessOrEqual', [x, hi]);
      keep = keep ? c.emit('And', [keep, below]) : below;
    }
    return [keep ? c.emit('Where', [keep, c.dY[0], c.scalar(0)]) : c.dY[0]];
  },
  Squeeze: (c) => [c.needs(0) ? c.emit('Reshape', [c.dY[0], c.emit('Shape', [c.node.input[0]])]) : undefined],
  Unsqueeze: (c) => [c.needs(0) ? c.emit('Reshape', [c.dY[0], c.emit('Shape', [c.node.input[0]])]) : undefined],
  ReduceSum: (c) => [c.needs(0) ? spreadReduced(c, c.node.input[1] ? c.constInts(c.node.input[1]) : undefined, !!c.node.input[1], 1) : undefined],
  ReduceMean: (c) => {
    if (!c.needs(0)) return [];
    // An attribute up to opset 17, an input from 18.
    const axes = c.ints_('axes') ?? (c.node.input[1] ? c.constInts(c.node.input[1]) : undefined);
    const shape = c.staticShape(c.node.input[0], 'ReduceMean input');
    const rank = shape.length;
    const reduced = (axes ?? [...shape.keys()]).map((a) => (a + rank) % rank);
    const count = reduced.reduce((n, a) => n * shape[a], 1);
    if (count <= 0) throw new InputError(undefined, `ReduceMean node '${c.node.name}': the gradient needs the static size of the reduced axes`);
    return [spreadReduced(c, axes, axes !== undefined || !!c.node.input[1], 1 / count)];
  },
  Concat: (c) => {
    const axis = c.int('axis', 0);
    const sizes = c.node.input.map((x) => {
      const s = c.staticShape(x, 'Concat input');
      return s[(axis + s.length) % s.length];
    });
    if (sizes.some((n) => n < 0)) throw new InputError(undefined, `Concat node '${c.node.name}': the gradient needs static sizes along axis ${axis}`);
    const parts = c.emitMulti('Split', [c.dY[0], c.ints(sizes)], sizes.length, { axis });
    return parts.map((part, i) => (c.needs(i) ? part : undefined));
  },
  Split: (c) => {
    if (!c.needs(0)) return [];
    const parts = c.node.output.map((o, i) => c.dY[i] || c.emit('ConstantOfShape', [c.emit('Shape', [o])], { value: c.zeroTensor() }));
    return [c.emit('Concat', parts, { axis: c.int('axis', 0) })];
  },
  BatchNormalization: (c) => {
    // Inference form: y = scale·(x − mean)/√(var + ε) + B with the running statistics as constants.
    if (c.int('training_mode', 0)) throw new InputError(undefined, `BatchNormalization node '${c.node.name}': the training form has no gradient rule yet`);
    if (c.needs(3) || c.needs(4)) throw new InputError(undefined, `BatchNormalization node '${c.node.name}': the running mean and variance cannot be trained`);
    const [x, scale, , mean, variance] = c.node.input;
    const dy = c.dY[0];
    const rank = c.staticShape(x, 'BatchNormalization input').length;
    const perChannel = (v: string) => c.emit('Reshape', [v, c.ints([-1, ...new Array(rank - 2).fill(1)])]);
    const invStd = perChannel(c.emit('Reciprocal', [c.emit('Sqrt', [c.emit('Add', [variance, c.scalar(c.float('epsilon', 1e-5))])])]));
    const others = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
    return [
      c.needs(0) ? c.emit('Mul', [dy, c.emit('Mul', [perChannel(scale), invStd])]) : undefined,
      c.needs(1) ? c.emit('ReduceSum', [c.emit('Mul', [dy, c.emit('Mul', [c.emit('Sub', [x, perChannel(mean)]), invStd])]), c.ints(others)], { keepdims: 0 }) : undefined,
      c.needs(2) ? c.emit('ReduceSum', [dy, c.ints(others)], { keepdims: 0 }) : undefined,
    ];
  },
  Gather: (c) => {
    if (c.needs(1)) throw new InputError(undefined, `Gather node '${c.node.name}': indices have no gradient`);
    if (!c.needs(0)) return [];
    if (c.int('axis', 0) !== 0) throw new InputError(undefined, `Gather node '${c.node.name}': only axis 0 (embedding lookups) has a gradient rule`);
    const [data, indices] = c.node.input;
    const zeros = c.emit('ConstantOfShape', [c.emit('Shape', [data])], { value: c.zeroTensor() });
    // Rows gathered more than once accumulate.
    return [c.emit('ScatterND', [zeros, c.emit('Unsqueeze', [indices, c.ints([-1])]), c.dY[0]], { reduction: 'add' })];
  },
  // Fake-quant, QuantizeLinear→DequantizeLinear, with the straight-through estimator: DequantizeLinear passes the
  // gradient on unscaled (d/dq of q·s, times d/dx of x/s, is 1), and QuantizeLinear keeps it where the input lies
  // inside the clip range [s·(qmin−zp), s·(qmax−zp)] and zeroes it outside. Scales and zero points get no gradient:
  // constants, or computed from the weights each step and treated as constants (no learned scales, no LSQ).
  QuantizeLinear: (c) => {
    if ((c.needs(1) && c.isTrainable(c.node.input[1])) || (c.needs(2) && c.isTrainable(c.node.input[2]))) throw new InputError(undefined, `QuantizeLinear node '${c.node.name}': learned scales and zero points (LSQ) have no gradient rule`);
    if (!c.needs(0)) return [];
    const [x, scale, zp] = c.node.input;
    const zpType = zp ? c.dtype(zp) : 2;
    const range = zpType === undefined ? undefined : quantRanges[zpType];
    if (!range) throw new InputError(undefined, `QuantizeLinear node '${c.node.name}': the straight-through gradient needs an integer zero point of known type (got type ${zpType ?? 'unknown'})`);
    const rank = c.shape(x)?.length;
    const scaleRank = c.shape(scale)?.length;
    if (rank === undefined || scaleRank === undefined) throw new InputError(undefined, `QuantizeLinear node '${c.node.name}': the gradient needs the ranks of its input and scale`);
    const axis = (c.int('axis', 1) + rank) % rank;
    // A per-channel (1-D) scale lines up with `axis`; a scalar broadcasts as it is.
    const align = (v: string) => (scaleRank === 1 && rank > 1 ? c.emit('Reshape', [v, c.ints(Array.from({ length: rank }, (_, i) => (i === axis ? -1 : 1)))]) : v);
    const s = align(scale);
    const z = zp ? align(c.emit('Cast', [zp], { to: c.dtype(scale) ?? 1 })) : c.scalar(0);
    const lo = c.emit('Mul', [c.emit('Sub', [c.scalar(range[0]), z]), s]);
    const hi = c.emit('Mul', [c.emit('Sub', [c.scalar(range[1]), z]), s]);
    const keep = c.emit('And', [c.emit('GreaterOrEqual', [x, lo]), c.emit('LessOrEqual', [x, hi])]);
    return [c.emit('Where', [keep, c.dY[0], c.scalar(0)])];
  },
  DequantizeLinear: (c) => {
    if ((c.needs(1) && c.isTrainable(c.node.input[1])) || (c.needs(2) && c.isTrainable(c.node.input[2]))) throw new InputError(undefined, `DequantizeLinear node '${c.node.name}': learned scales and zero points (LSQ) have no gradient rule`);
    return [c.needs(0) ? c.dY[0] : undefined];
  },
  GlobalAveragePool: (c) => {
    if (!c.needs(0)) return [];
    const x = c.node.input[0];
    const s = c.staticShape(x, 'GlobalAveragePool input');
    const area = s.slice(2).reduce((a, b) => a * b, 1);
    return [c.emit('Mul', [c.emit('Expand', [c.dY[0], c.emit('Shape', [x])]), c.scalar(1 / area)])];
  },
};

/** Integer range per zero-point type (TensorProto.DataType): uint8, int8, uint16, int16. */
const quantRanges: Record<number, [number, number]> = { 2: [0, 255], 3: [-128, 127], 4: [0, 65535], 5: [-32768, 32767] };

/** The gradient of a sum (or, with `factor`, a mean) over `axes`: dY with the reduced axes restored, broadcast to x. */
function spreadReduced(c: GradCtx, axes: number[] | undefined, axesGiven: boolean, factor: number): string {
  const x = c.node.input[0];
  let dy = c.dY[0];
  if (axesGiven && !axes) throw new InputError(undefined, `${c.node.opType} node '${c.node.name}': the gradient needs constant axes`);
  if (c.int('keepdims', 1) === 0 && axes && axes.length) {
    const rank = c.shape(x)?.length;
    if (rank === undefined) throw new InputError(undefined, `${c.node.opType} node '${c.node.name}': the gradient needs the rank of its input`);
    dy = c.emit('Unsqueeze', [dy, c.ints(axes.map((a) => (a + rank) % rank).sort((p, q) => p - q))]);
  }
  if (axesGiven && axes?.length === 0 && c.int('noop_with_empty_axes', 0)) return dy;
  const spread = c.emit('Expand', [dy, c.emit('Shape', [x])]);
  return factor === 1 ? spread : c.emit('Mul', [spread, c.scalar(factor)]);
}

function gemmRule(c: GradCtx): Array<string | undefined> {
  const [a, b, bias] = c.node.input;
  const dy = c.dY[0];
  const alpha = c.float('alpha', 1);
  const beta = c.float('beta', 1);
  const transA = c.int('transA', 0);
  const transB = c.int('transB', 0);
  // Gemm's alpha must be a FLOAT attribute, which an integral value would not be: scale afterwards instead.
  const gemm = (inputs: string[], attrs: Record<string, AttrValue>) => {
    const y = c.emit('Gemm', inputs, attrs);
    return alpha === 1 ? y : c.emit('Mul', [y, c.scalar(alpha)]);
  };
  const out: Array<string | undefined> = [];
  if (c.needs(0)) out[0] = transA ? gemm([b, dy], { transA: transB, transB: 1 }) : gemm([dy, b], { transB: transB ? 0 : 1 });
  if (c.needs(1)) out[1] = transB ? gemm([dy, a], { transA: 1, transB: transA }) : gemm([a, dy], { transA: transA ? 0 : 1 });
  if (bias && c.needs(2)) {
    const g = c.unbroadcast(dy, c.node.output[0], bias);
    out[2] = beta === 1 ? g : c.emit('Mul', [g, c.scalar(beta)]);
  }
  return out;
}

function matMulRule(c: GradCtx): Array<string | undefined> {
  const [a, b] = c.node.input;
  const dy = c.dY[0];
  const ra = c.shape(a)?.length;
  const rb = c.shape(b)?.length;
  // dB of a 2-D B folds A whatever its rank; every other case needs both ranks.
  const bOnly2d = !c.needs(0) && rb === 2;
  if (!bOnly2d && (ra === undefined || rb === undefined || ra < 2 || rb < 2)) throw new InputError(undefined, `MatMul node '${c.node.name}': gradients need inputs of known rank >= 2 (got ${ra ?? '?'} and ${rb ?? '?'})`);
  const swap = (r: number) => [...Array(r - 2).keys(), r - 1, r - 2];
  const out: Array<string | undefined> = [];
  if (c.needs(0)) out[0] = c.unbroadcast(c.emit('MatMul', [dy, c.emit('Transpose', [b], { perm: swap(rb!) })]), c.node.output[0], a);
  if (c.needs(1)) {
    if (rb === 2) {
      // Fold every leading axis of A into the rows: dB = A2ᵀ·dY2.
      const k = c.staticShape(b, 'MatMul weight')[0];
      const n = c.staticShape(b, 'MatMul weight')[1];
      out[1] = c.emit('Gemm', [c.emit('Reshape', [a, c.ints([-1, k])]), c.emit('Reshape', [dy, c.ints([-1, n])])], { transA: 1 });
    } else {
      out[1] = c.unbroadcast(c.emit('MatMul', [c.emit('Transpose', [a], { perm: swap(ra!) }), dy]), c.node.output[0], b);
    }
  }
  return out;
}

/** Explicit begin/end pads of a conv or pool over `spatial` dims, resolving auto_pad. */
function explicitPads(c: GradCtx, input: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const n = kernel.length;
  const autoPad = c.str('auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') return c.ints_('pads') ?? new Array(2 * n).fill(0);
  if (autoPad === 'VALID') return new Array(2 * n).fill(0);
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < n; i++) {
    const outSize = Math.ceil(input[i] / strides[i]);
    const total = Math.max((outSize - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - input[i], 0);
    const small = Math.floor(total / 2);
    begin.push(autoPad === 'SAME_LOWER' ? total - small : small);
    end.push(autoPad === 'SAME_LOWER' ? small : total - small);
  }
  return [...begin, ...end];
}

interface Window {
  spatial: number[];
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[];
  out: number[];
}

function windowOf(c: GradCtx, x: string, kernel: number[]): Window {
  const xs = c.staticShape(x, `${c.node.opType} input`);
  const spatial = xs.slice(2);
  const n = spatial.length;
  const strides = c.ints_('strides') ?? new Array(n).fill(1);
  const dilations = c.ints_('dilations') ?? new Array(n).fill(1);
  const pads = explicitPads(c, spatial, kernel, strides, dilations);
  if (c.int('ceil_mode', 0)) throw new InputError(undefined, `${c.node.opType} node '${c.node.name}': ceil_mode=1 has no gradient rule yet`);
  const out = spatial.map((h, i) => Math.floor((h + pads[i] + pads[i + n] - ((kernel[i] - 1) * dilations[i] + 1)) / strides[i]) + 1);
  return { spatial, kernel, strides, dilations, pads, out };
}

function convRule(c: GradCtx): Array<string | undefined> {
  const [x, w, bias] = c.node.input;
  const dy = c.dY[0];
  const ws = c.staticShape(w, 'Conv weight');
  const xs = c.staticShape(x, 'Conv input');
  const group = c.int('group', 1);
  const win = windowOf(c, x, ws.slice(2));
  const n = win.kernel.length;
  const out: Array<string | undefined> = [];
  if (c.needs(0)) {
    // dX = ConvTranspose(dY, W); output_padding recovers the rows a strided conv never reached.
    const outputPadding = win.spatial.map((h, i) => h - ((win.out[i] - 1) * win.strides[i] + (win.kernel[i] - 1) * win.dilations[i] + 1 - win.pads[i] - win.pads[i + n]));
    const attrs: Record<string, AttrValue> = { strides: win.strides, pads: win.pads, dilations: win.dilations, group, kernel_shape: win.kernel };
    if (outputPadding.some((p) => p !== 0)) attrs.output_padding = outputPadding;
    out[0] = c.emit('ConvTranspose', [dy, w], attrs);
  }
  if (c.needs(1)) {
    // dW = Conv of the channel-major input with the channel-major output grad, strides and dilations swapped, grouped
    // by folding the group into the batch (DESIGN.md section 4).
    const [cIn, m] = [xs[1], ws[0]];
    const g = group;
    const xr = c.emit('Reshape', [x, c.ints([-1, g, cIn / g, ...win.spatial])]);
    const xt = c.emit('Reshape', [c.emit('Transpose', [xr], { perm: [2, 1, 0, ...win.spatial.map((_, i) => 3 + i)] }), c.ints([cIn / g, -1, ...win.spatial])]);
    const dyr = c.emit('Reshape', [dy, c.ints([-1, g, m / g, ...win.out])]);
    const dyt = c.emit('Reshape', [c.emit('Transpose', [dyr], { perm: [1, 2, 0, ...win.out.map((_, i) => 3 + i)] }), c.ints([m, -1, ...win.out])]);
    const conv = c.emit('Conv', [xt, dyt], { strides: win.dilations, dilations: win.strides, pads: win.pads, group: g });
    let dw = c.emit('Transpose', [conv], { perm: [1, 0, ...win.kernel.map((_, i) => 2 + i)] });
    const full = win.spatial.map((h, i) => Math.floor((h + win.pads[i] + win.pads[i + n] - win.strides[i] * (win.out[i] - 1) - 1) / win.dilations[i]) + 1);
    if (full.some((f, i) => f !== win.kernel[i])) {
      dw = c.emit('Slice', [dw, c.ints(win.kernel.map(() => 0)), c.ints(win.kernel), c.ints(win.kernel.map((_, i) => 2 + i))]);
    }
    out[1] = dw;
  }
  if (bias && c.needs(2)) out[2] = c.emit('ReduceSum', [dy, c.ints([0, ...win.kernel.map((_, i) => 2 + i)])], { keepdims: 0 });
  return out;
}

function maxPoolRule(c: GradCtx): Array<string | undefined> {
  if (!c.needs(0)) return [];
  const x = c.node.input[0];
  if (c.int('storage_order', 0)) throw new InputError(undefined, `MaxPool node '${c.node.name}': storage_order=1 has no gradient rule yet`);
  // Route each output gradient to the element the forward pass picked (its flat index over N·C·H·W); an equality
  // mask would be wrong on ties.
  const indices = c.forwardOutput(1);
  const zeros = c.emit('ConstantOfShape', [c.emit('Reshape', [c.emit('Size', [x]), c.ints([1])])], { value: c.zeroTensor() });
  const scattered = c.emit('ScatterElements', [zeros, c.emit('Reshape', [indices, c.ints([-1])]), c.emit('Reshape', [c.dY[0], c.ints([-1])])], { axis: 0, reduction: 'add' });
  return [c.emit('Reshape', [scattered, c.emit('Shape', [x])])];
}


function averagePoolRule(c: GradCtx): Array<string | undefined> {
  if (!c.needs(0)) return [];
  const x = c.node.input[0];
  const xs = c.staticShape(x, 'AveragePool input');
  const kernel = c.ints_('kernel_shape')!;
  const win = windowOf(c, x, kernel);
  const n = kernel.length;
  const includePad = c.int('count_include_pad', 0) === 1;
  // Divisor per output position: the window's element count, pads counted only with count_include_pad.
  const outCount = win.out.reduce((a, b) => a * b, 1);
  const divisor = new Float64Array(outCount);
  for (let o = 0; o < outCount; o++) {
    let rest = o;
    let count = 1;
    for (let d = n - 1; d >= 0; d--) {
      const pos = rest % win.out[d];
      rest = Math.floor(rest / win.out[d]);
      let inside = 0;
      for (let k = 0; k < kernel[d]; k++) {
        const at = pos * win.strides[d] - win.pads[d] + k * win.dilations[d];
        if (includePad ? at < win.spatial[d] + win.pads[d + n] : at >= 0 && at < win.spatial[d]) inside++;
      }
      count *= inside;
    }
    divisor[o] = 1 / count;
  }
  const scaled = c.emit('Mul', [c.dY[0], c.floats([1, 1, ...win.out], divisor)]);
  // Spread each scaled gradient over its window: a depthwise ConvTranspose with a kernel of ones.
  const channels = xs[1];
  const ones = c.floats([channels, 1, ...kernel], new Float64Array(channels * kernel.reduce((a, b) => a * b, 1)).fill(1));
  const outputPadding = win.spatial.map((h, i) => h - ((win.out[i] - 1) * win.strides[i] + (kernel[i] - 1) * win.dilations[i] + 1 - win.pads[i] - win.pads[i + n]));
  const attrs: Record<string, AttrValue> = { strides: win.strides, pads: win.pads, dilations: win.dilations, group: channels, kernel_shape: kernel };
  if (outputPadding.some((p) => p !== 0)) attrs.output_padding = outputPadding;
  return [c.emit('ConvTranspose', [scaled, ones], attrs)];
}

/** Float initializers feeding Conv, Gemm, MatMul or Add (directly or through Reshape/Identity): the default trainables. */
export function defaultTrainable(g: GraphProto): string[] {
  const floats = new Set(g.initializer.filter((t) => t.dataType === 1 || t.dataType === 11).map((t) => t.name));
  const consumers = new Map<string, NodeProto[]>();
  for (const n of g.node) n.input.forEach((i) => consumers.set(i, [...(consumers.get(i) ?? []), n]));
  const reaches = (name: string, depth: number): boolean =>
    (consumers.get(name) ?? []).some((n) => ['Conv', 'Gemm', 'MatMul', 'Add'].includes(n.opType) || (depth < 3 && ['Reshape', 'Identity'].includes(n.opType) && n.input[0] === name && reaches(n.output[0], depth + 1)));
  return [...floats].filter((name) => reaches(name, 0));
}

/**
 * Builds the training graph: the forward pass with `trainable` initializers as inputs and a symbolic batch, the
 * loss, and the gradient of the loss with respect to each trainable weight.
 */
export function buildTrainingGraph(source: ModelProto, opts: TrainingGraphOptions): TrainingGraph {
  const file = opts.file;
  const src = source.graph!;
  const modelOpset = Number(source.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 0);
  const g: GraphProto = { ...src, node: topologicalOrder(src).map((n) => clone(NodeProtoSchema, n)), initializer: [...src.initializer], input: [...src.input], output: [...src.output], valueInfo: [] };
  if (modelOpset < 13) {
    const bad = g.node.find((n) => (!n.domain || n.domain === 'ai.onnx') && opsetSensitive.has(n.opType));
    if (bad) throw new InputError(file, `training needs opset ${trainingOpset}; the model is opset ${modelOpset} and its ${bad.opType} node '${bad.name}' changed meaning since (convert the model to opset >= 13 first)`);
  }
  const trainable = opts.trainable ?? defaultTrainable(g);
  const initByName = new Map(g.initializer.map((t) => [t.name, t]));
  const initial: TensorProto[] = [];
  for (const name of trainable) {
    const t = initByName.get(name);
    if (!t) throw new InputError(file, `'${name}' is not an initializer of the model, so it cannot be trained`);
    if (t.dataType !== 1 && t.dataType !== 11) throw new InputError(file, `'${name}' is not a float tensor (data type ${t.dataType}), so it cannot be trained`);
    initial.push(t);
  }
  const floatType = initial[0]?.dataType ?? 1;
  const trainSet = new Set(trainable);
  g.initializer = g.initializer.filter((t) => !trainSet.has(t.name));
  g.input = g.input.filter((v) => !trainSet.has(v.name));
  const dataInputs = g.input.filter((v) => !initByName.has(v.name)).map((v) => v.name);
  // The batch becomes symbolic: inputs with a fixed leading 1, and Reshape targets that pin a batch of 1.
  g.input = g.input.map((v) => (dataInputs.includes(v.name) ? withBatch(v) : v));
  for (const t of initial) g.input.push(valueInfo(t.name, t.dataType, tensorShape(t)));

  // The loss reads logits: a final Softmax is skipped (its cross-entropy is the same function of the logits).
  let output = opts.output ?? src.output[0]?.name;
  if (!output) throw new InputError(file, 'the model has no outputs');
  const producerOf = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) producerOf.set(o, n);
  if ((opts.loss === 'softmaxCrossEntropy' || opts.loss === 'distill') && producerOf.get(output)?.opType === 'Softmax') output = producerOf.get(output)!.input[0];

  const shapes = inferShapes({ ...source, graph: g } as ModelProto);
  for (const n of g.node) {
    if (n.opType !== 'Reshape') continue;
    const t = initByName.get(n.input[1]);
    if (!t || !dependsOnData(n.input[0], producerOf, new Set(dataInputs))) continue;
    const dims = tensorShape(t);
    const vals = int64Values(t);
    if (vals[0] === 1 && !vals.includes(-1)) {
      const name = `${t.name}_whittle_batch`;
      g.initializer.push(int64Tensor(name, dims, [-1, ...vals.slice(1)]));
      n.input = [n.input[0], name];
    }
  }

  const nodes: NodeProto[] = [];
  let counter = 0;
  const fresh = (base: string) => `whittle_grad/${base}_${counter++}`;
  const constTensor = (dims: number[], values: ArrayLike<number>): string => {
    const name = fresh('const');
    const arr = floatType === 11 ? Float64Array.from(values) : Float32Array.from(values);
    g.initializer.push(create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: floatType, rawData: new Uint8Array(arr.buffer) }));
    return name;
  };
  const emit = (op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1): string[] => {
    const outs = Array.from({ length: outputs }, () => fresh(op));
    nodes.push(makeNode(op, inputs, outs, attrs, outs[0]));
    return outs;
  };
  const shapeOf = (name: string): Dim[] | undefined => shapes.get(name)?.shape;

  // Loss.
  const label = 'whittle_label';
  const outShape = shapeOf(output);
  let loss: string;
  let dOut = '';
  let distill: DistillLossGraph | undefined;
  if (opts.loss === 'distill') {
    const emitter = {
      emit: (op: string, inputs: string[], attrs?: Record<string, AttrValue>) => emit(op, inputs, attrs)[0],
      ints,
      ints0,
      scalar: (v: number) => constTensor([], [v]),
      input: (name: string, elemType: number, shape: Array<number | string>) => void g.input.push(valueInfo(name, elemType, shape)),
      floatType,
    };
    distill = distillLoss(emitter, output, outShape, opts.distill ?? {}, file);
    loss = distill.loss;
  } else if (opts.loss === 'softmaxCrossEntropy') {
    const classes = outShape?.[outShape.length - 1];
    if (!outShape || outShape.length !== 2 || typeof classes !== 'number') throw new InputError(file, `softmax cross-entropy needs a [batch, classes] output; '${output}' has shape [${outShape?.join(',') ?? '?'}]`);
    g.input.push(valueInfo(label, 7, ['whittle_batch']));
    const logp = emit('LogSoftmax', [output], { axis: 1 })[0];
    const classIds = fresh('classes');
    g.initializer.push(int64Tensor(classIds, [1, classes], [...Array(classes).keys()]));
    const oneHot = emit('Cast', [emit('Equal', [emit('Unsqueeze', [label, ints([1])])[0], classIds])[0]], { to: floatType })[0];
    const count = emit('Cast', [emit('Gather', [emit('Shape', [output])[0], ints0(0)], { axis: 0 })[0]], { to: floatType })[0];
    loss = emit('Div', [emit('Neg', [emit('ReduceSum', [emit('Mul', [oneHot, logp])[0]], { keepdims: 0 })[0]])[0], count])[0];
    dOut = emit('Div', [emit('Sub', [emit('Exp', [logp])[0], oneHot])[0], count])[0];
  } else {
    g.input.push(valueInfo(label, floatType, (outShape ?? []).map((d, i) => (i === 0 ? 'whittle_batch' : d === null ? `d${i}` : d))));
    const diff = emit('Sub', [output, label])[0];
    const count = emit('Cast', [emit('Size', [output])[0]], { to: floatType })[0];
    loss = emit('Div', [emit('ReduceSum', [emit('Mul', [diff, diff])[0]], { keepdims: 0 })[0], count])[0];
    dOut = emit('Div', [emit('Mul', [diff, constTensor([], [2])])[0], count])[0];
  }
  function ints(values: number[]): string {
    const name = fresh('ints');
    g.initializer.push(int64Tensor(name, [values.length], values));
    return name;
  }
  function ints0(value: number): string {
    const name = fresh('int');
    g.initializer.push(int64Tensor(name, [], [value]));
    return name;
  }

  // Which values depend on a trainable weight, and which the loss depends on.
  const needsGrad = new Set<string>(trainable);
  for (const n of g.node) if (n.input.some((i) => needsGrad.has(i))) for (const o of n.output) if (o) needsGrad.add(o);
  const seeds: Array<[string, string]> = distill ? distill.seeds : [[output, dOut]];
  const onPath = new Set<string>(seeds.map(([name]) => name));
  for (const n of [...g.node].reverse()) if (n.output.some((o) => onPath.has(o))) for (const i of n.input) if (i) onPath.add(i);
  const grads = new Map<string, string[]>();
  for (const [name, seed] of seeds) grads.set(name, [...(grads.get(name) ?? []), seed]);
  const gradOf = (name: string): string => {
    const list = grads.get(name);
    if (!list?.length) return '';
    if (list.length === 1) return list[0];
    const sum = emit('Sum', list)[0];
    grads.set(name, [sum]);
    return sum;
  };
  const zeroTensor = () => create(TensorProtoSchema, { name: 'zero', dims: [1n], dataType: floatType, rawData: new Uint8Array((floatType === 11 ? new Float64Array(1) : new Float32Array(1)).buffer) });

  for (const n of [...g.node].reverse()) {
    const dY = n.output.map((o) => (onPath.has(o) ? gradOf(o) : ''));
    if (dY.every((d) => !d)) continue;
    const needs = (i: number) => !!n.input[i] && needsGrad.has(n.input[i]) && onPath.has(n.input[i]);
    if (!n.input.some((_, i) => needs(i))) continue;
    const rule = (!n.domain || n.domain === 'ai.onnx') ? gradRules[n.opType] : undefined;
    if (!rule) throw new InputError(file, `no gradient rule for ${n.domain ? n.domain + '.' : ''}${n.opType} (node '${n.name || n.output[0]}'), which lies between a trainable weight and the loss; freeze the weights before it or add a rule`);
    const ctx: GradCtx = {
      node: n,
      dY,
      needs,
      shape: shapeOf,
      staticShape: (name, what) => {
        const s = shapeOf(name);
        const fixed = s?.map((d, i) => (typeof d === 'number' ? d : i === 0 ? -1 : NaN));
        if (!fixed || fixed.slice(1).some((d) => Number.isNaN(d))) throw new InputError(file, `${n.opType} node '${n.name}': the gradient needs the static shape of ${what} '${name}' (got [${s?.join(',') ?? 'unknown rank'}])`);
        return fixed;
      },
      emit: (op, inputs, attrs, count) => emit(op, inputs, attrs, count ?? 1)[0],
      emitMulti: (op, inputs, count, attrs) => emit(op, inputs, attrs, count),
      scalar: (v) => constTensor([], [v]),
      floats: (dims, values) => constTensor(dims, values),
      ints,
      unbroadcast: (gName, outName, inName) => unbroadcast(gName, shapeOf(outName), shapeOf(inName), inName),
      int: (name, dflt) => Number(n.attribute.find((a) => a.name === name)?.i ?? dflt),
      ints_: (name) => n.attribute.find((a) => a.name === name)?.ints.map(Number),
      float: (name, dflt) => n.attribute.find((a) => a.name === name)?.f ?? dflt,
      str: (name, dflt) => {
        const a = n.attribute.find((x) => x.name === name);
        return a ? new TextDecoder().decode(a.s) : dflt;
      },
      zeroTensor,
      constInts: (name) => {
        const t = g.initializer.find((x) => x.name === name);
        return t && t.dataType === 7 ? int64Values(t) : undefined;
      },
      dtype: (name) => shapes.get(name)?.dtype ?? g.initializer.find((t) => t.name === name)?.dataType,
      isTrainable: (name) => trainSet.has(name),
      forwardOutput: (index) => {
        while (n.output.length <= index) n.output.push('');
        if (!n.output[index]) n.output[index] = fresh(`${n.opType}_out${index}`);
        return n.output[index];
      },
    };
    const dx = rule(ctx);
    n.input.forEach((input, i) => {
      if (!needs(i) || !dx[i]) return;
      grads.set(input, [...(grads.get(input) ?? []), dx[i]!]);
    });
  }

  function unbroadcast(gName: string, out: Dim[] | undefined, inn: Dim[] | undefined, inName: string): string {
    if (!out || !inn) throw new InputError(file, `the gradient of a broadcasting op needs the ranks of its values ('${inName}' or its output has unknown rank)`);
    const lead = out.length - inn.length;
    const axes: number[] = [];
    for (let i = 0; i < out.length; i++) {
      if (i < lead) axes.push(i);
      else if (inn[i - lead] === 1 && out[i] !== 1) axes.push(i);
    }
    if (axes.length === 0) return gName;
    const reduced = emit('ReduceSum', [gName, ints(axes)], { keepdims: 1 })[0];
    return emit('Reshape', [reduced, emit('Shape', [inName])[0]])[0];
  }

  const gradients = trainable.map((name) => {
    const gname = gradOf(name);
    const outName = `grad/${name}`;
    if (!gname) {
      // A weight the loss does not reach: its gradient is zero.
      nodes.push(makeNode('Mul', [name, constTensor([], [0])], [outName], {}, outName));
    } else {
      nodes.push(makeNode('Identity', [gname], [outName], {}, outName));
    }
    return outName;
  });
  nodes.push(makeNode('Identity', [loss], ['whittle_loss'], {}, 'whittle_loss'));
  const partOutputs: string[] = [];
  if (distill) {
    for (const part of ['ce', 'kd', 'feature'] as const) {
      if (!distill[part]) continue;
      const name = `whittle_loss_${part}`;
      nodes.push(makeNode('Identity', [distill[part]], [name], {}, name));
      partOutputs.push((distill[part] = name));
    }
  }
  g.node = [...g.node, ...nodes];
  g.output = [create(ValueInfoProtoSchema, { name: 'whittle_loss' }), ...gradients.map((name) => create(ValueInfoProtoSchema, { name })), create(ValueInfoProtoSchema, { name: output })];
  if (output === src.output[0]?.name) g.output[g.output.length - 1] = src.output[0];
  if (distill) for (const part of partOutputs) g.output.push(create(ValueInfoProtoSchema, { name: part }));
  const opsetImport = source.opsetImport.map((o) => (o.domain === '' || o.domain === 'ai.onnx' ? { ...o, version: BigInt(Math.max(Number(o.version), trainingOpset)) } : o));
  const proto: ModelProto = { ...source, irVersion: source.irVersion < 8n ? 8n : source.irVersion, opsetImport, graph: g };
  return { proto, weights: trainable, initial, gradients, loss: 'whittle_loss', label, output, dataInputs, ...(distill ? { distill } : {}) };
}


function withBatch(v: ValueInfoProto): ValueInfoProto {
  if (v.type?.value.case !== 'tensorType') return v;
  const tt = v.type.value.value;
  const first = tt.shape?.dim[0];
  if (!tt.shape || !first) return v;
  const dim = [{ ...first, value: { case: 'dimParam' as const, value: 'whittle_batch' } }, ...tt.shape.dim.slice(1)];
  return { ...v, type: { ...v.type, value: { case: 'tensorType', value: { ...tt, shape: { ...tt.shape, dim } } } } };
}

function dependsOnData(name: string, producerOf: Map<string, NodeProto>, data: Set<string>, seen = new Set<string>()): boolean {
  if (data.has(name)) return true;
  if (seen.has(name)) return false;
  seen.add(name);
  const p = producerOf.get(name);
  return !!p && p.input.some((i) => i && dependsOnData(i, producerOf, data, seen));
}

function int64Values(t: TensorProto): number[] {
  if (t.int64Data.length) return t.int64Data.map(Number);
  const raw = t.rawData;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return Array.from({ length: raw.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
}
