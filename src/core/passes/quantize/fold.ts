/**
 * Graph preparation before static quantization, usable on its own: BatchNormalization folded into the Conv
 * before it, constant bias Adds folded into Conv biases, MatMul + bias Add turned into Gemm, weights reshaped
 * by a constant Reshape stored in their used shape, and the default-domain opset raised to 13 where that
 * keeps the model's meaning. Each step leaves the model's outputs unchanged (up to float rounding).
 */
import { create } from '@bufbuild/protobuf';
import { OperatorSetIdProtoSchema, TensorProtoSchema, type GraphProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { floatTensor, node as makeNode } from '../../formats/onnx/build';
import { removeDeadNodes } from '../../formats/onnx/edit';
import { tensorRefOf, type OnnxModel } from '../../formats/onnx/model';
import { inferShapes } from '../../formats/onnx/shapes';
import { tensorShape } from '../../formats/onnx/tensor';

const isDefault = (n: NodeProto) => !n.domain || n.domain === 'ai.onnx';

/** An initializer of the main graph by name. */
function init(graph: GraphProto, name: string): TensorProto | undefined {
  return name ? graph.initializer.find((t) => t.name === name) : undefined;
}

/** A float initializer's values (float32 or float64 source), or undefined for any other type. */
export function floatValues(model: OnnxModel, t: TensorProto): Float32Array | undefined {
  if (t.dataType !== 1 && t.dataType !== 11) return undefined;
  const data = tensorRefOf(t, t.name, model.external, model.file).read();
  return data instanceof Float32Array ? Float32Array.from(data) : Float32Array.from(data as Float64Array);
}

/** Names read by nodes or graph outputs, with how many readers each has. */
function readers(graph: GraphProto): Map<string, number> {
  const count = new Map<string, number>();
  for (const n of graph.node) for (const i of n.input) if (i) count.set(i, (count.get(i) ?? 0) + 1);
  for (const o of graph.output) count.set(o.name, (count.get(o.name) ?? 0) + 1);
  return count;
}

/** A fresh initializer name based on `base`. */
function freshName(graph: GraphProto, base: string): string {
  const taken = new Set([...graph.initializer.map((t) => t.name), ...graph.input.map((v) => v.name), ...graph.node.flatMap((n) => n.output)]);
  let name = base;
  for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
  return name;
}

function attrInt(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

function attrFloat(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? a.f : fallback;
}

/** The Conv that produces `value` and is read only by `reader`, with float initializer weight (and bias). */
function soleConv(model: OnnxModel, value: string, count: Map<string, number>): { conv: NodeProto; w: Float32Array; shape: number[]; b: Float32Array } | undefined {
  const g = model.graph;
  const conv = g.node.find((n) => n.output[0] === value && n.opType === 'Conv' && isDefault(n));
  if (!conv || count.get(value) !== 1) return undefined;
  const wt = init(g, conv.input[1]);
  const w = wt && floatValues(model, wt);
  if (!wt || !w) return undefined;
  const shape = tensorShape(wt);
  const bt = conv.input[2] ? init(g, conv.input[2]) : undefined;
  if (conv.input[2] && !bt) return undefined;
  const b = bt ? floatValues(model, bt) : new Float32Array(shape[0]);
  if (!b || b.length !== shape[0]) return undefined;
  return { conv, w, shape, b };
}

/** Gives a Conv new (float32) weight and bias initializers; old ones go when nothing else reads them. */
function setConvParams(graph: GraphProto, conv: NodeProto, w: Float32Array, shape: number[], b: Float32Array): void {
  const wName = freshName(graph, `${conv.input[1]}_f`);
  const bName = freshName(graph, `${conv.input[2] || `${conv.name || conv.output[0]}_bias`}_f`);
  graph.initializer.push(floatTensor(wName, shape, w), floatTensor(bName, [shape[0]], b));
  conv.input[1] = wName;
  if (conv.input.length > 2) conv.input[2] = bName;
  else conv.input.push(bName);
}

/**
 * Folds each BatchNormalization (inference form, constant parameters) into the Conv that feeds it, when that
 * Conv's output goes nowhere else: W' = W * g / sqrt(v + eps) per output channel, b' = (b - m) * g /
 * sqrt(v + eps) + beta. The Conv takes over the BN's output name. Returns the names of the folded BN nodes.
 */
export function foldBatchNorm(model: OnnxModel): string[] {
  const g = model.graph;
  const count = readers(g);
  const folded: string[] = [];
  for (const bn of [...g.node]) {
    if (bn.opType !== 'BatchNormalization' || !isDefault(bn) || bn.output.filter(Boolean).length !== 1) continue;
    if (attrInt(bn, 'training_mode', 0) !== 0 || attrInt(bn, 'spatial', 1) !== 1) continue;
    const c = soleConv(model, bn.input[0], count);
    const params = bn.input.slice(1, 5).map((name) => init(g, name));
    if (!c || params.some((t) => !t)) continue;
    const [gamma, beta, mean, variance] = params.map((t) => floatValues(model, t!));
    const channels = c.shape[0];
    if (![gamma, beta, mean, variance].every((v) => v && v.length === channels)) continue;
    const eps = attrFloat(bn, 'epsilon', 1e-5);
    const per = c.w.length / channels;
    const w = new Float32Array(c.w.length);
    const b = new Float32Array(channels);
    for (let o = 0; o < channels; o++) {
      const k = gamma![o] / Math.sqrt(variance![o] + eps);
      for (let i = 0; i < per; i++) w[o * per + i] = c.w[o * per + i] * k;
      b[o] = (c.b[o] - mean![o]) * k + beta![o];
    }
    setConvParams(g, c.conv, w, c.shape, b);
    c.conv.output[0] = bn.output[0];
    g.node.splice(g.node.indexOf(bn), 1);
    folded.push(bn.name || bn.output[0]);
  }
  if (folded.length) removeDeadNodes(g);
  return folded;
}

/**
 * Folds `Add(Conv(x), c)` into the Conv's bias when c is a constant that adds one value per output channel
 * (shape [C,1,1], [1,C,1,1] or a single value) and the Conv's output goes only to the Add. CNTK exports
 * (mnist-8) put every bias in such an Add, and the QDQ fusion needs Conv's output to go straight to Q.
 */
export function foldConvAdd(model: OnnxModel): string[] {
  const g = model.graph;
  const count = readers(g);
  const folded: string[] = [];
  for (const add of [...g.node]) {
    if (add.opType !== 'Add' || !isDefault(add)) continue;
    for (const side of [0, 1]) {
      const c = soleConv(model, add.input[side], count);
      const ct = init(g, add.input[1 - side]);
      const values = ct && floatValues(model, ct);
      if (!c || !ct || !values) continue;
      const channels = c.shape[0];
      const outRank = c.shape.length;
      const dims = tensorShape(ct);
      // Right-aligned broadcast: the constant's channel position is outRank - 1 - (its rank - 1 - pos) = 1.
      const channelPos = dims.length - (outRank - 1);
      const perChannel = values.length === channels && dims.every((d, i) => (i === channelPos ? d === channels : d === 1));
      if (values.length !== 1 && !perChannel) continue;
      const b = c.b.map((v, o) => v + values[values.length === 1 ? 0 : o]);
      setConvParams(g, c.conv, c.w, c.shape, b);
      c.conv.output[0] = add.output[0];
      g.node.splice(g.node.indexOf(add), 1);
      folded.push(add.name || add.output[0]);
      break;
    }
  }
  if (folded.length) removeDeadNodes(g);
  return folded;
}

/**
 * Stores weights that reach their consumer through `Reshape(initializer, constant shape)` as initializers of
 * the reshaped shape, so a MatMul or Gemm sees its weight directly (mnist-8's classifier).
 */
export function foldConstantReshapes(model: OnnxModel): number {
  const g = model.graph;
  let n = 0;
  for (const r of [...g.node]) {
    if (r.opType !== 'Reshape' || !isDefault(r)) continue;
    const data = init(g, r.input[0]);
    const shapeT = init(g, r.input[1]);
    if (!data || !shapeT || shapeT.dataType !== 7 || (data.dataType !== 1 && data.dataType !== 11)) continue;
    const values = floatValues(model, data)!;
    const target = tensorRefOf(shapeT, shapeT.name, model.external, model.file).toNumbers();
    const src = tensorShape(data);
    const dims = target.map((d, i) => (d === 0 ? src[i] : d));
    const known = dims.reduce((a, d) => (d > 0 ? a * d : a), 1);
    const shape = dims.map((d) => (d === -1 ? values.length / known : d));
    if (shape.reduce((a, b) => a * b, 1) !== values.length || !shape.every(Number.isInteger)) continue;
    g.initializer.push(floatTensor(r.output[0], shape, values));
    g.node.splice(g.node.indexOf(r), 1);
    n++;
  }
  if (n) removeDeadNodes(g);
  return n;
}

/**
 * Turns `Add(MatMul(A, B), c)` into `Gemm(A, B^T, c, transB=1)` when A is 2-D, B a [K, N] initializer and c a
 * constant of N values (or one), so that the layer quantizes as one QGemm with its bias in int32.
 */
export function matMulAddToGemm(model: OnnxModel): string[] {
  const g = model.graph;
  const count = readers(g);
  const shapes = inferShapes(model.proto);
  const changed: string[] = [];
  for (const add of [...g.node]) {
    if (add.opType !== 'Add' || !isDefault(add)) continue;
    for (const side of [0, 1]) {
      const mm = g.node.find((n) => n.output[0] === add.input[side] && n.opType === 'MatMul' && isDefault(n));
      const bt = mm && init(g, mm.input[1]);
      const ct = init(g, add.input[1 - side]);
      if (!mm || !bt || !ct || count.get(mm.output[0]) !== 1 || init(g, mm.input[0])) continue;
      const a = shapes.get(mm.input[0]);
      const bShape = tensorShape(bt);
      const b = floatValues(model, bt);
      const c = floatValues(model, ct);
      if (!a || a.shape.length !== 2 || bShape.length !== 2 || !b || !c) continue;
      const [k, n] = bShape;
      const cDims = tensorShape(ct);
      if (!(c.length === 1 || (c.length === n && cDims[cDims.length - 1] === n && cDims.length <= 2))) continue;
      const bT = new Float32Array(k * n);
      for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) bT[j * k + i] = b[i * n + j];
      const bias = c.length === n ? c : new Float32Array(n).fill(c[0]);
      const wName = freshName(g, `${bt.name}_t`);
      const cName = freshName(g, `${ct.name}_gemm`);
      g.initializer.push(floatTensor(wName, [n, k], bT), floatTensor(cName, [n], bias));
      const gemm = makeNode('Gemm', [mm.input[0], wName, cName], [add.output[0]], { transB: 1 }, mm.name || add.name || add.output[0]);
      g.node.splice(g.node.indexOf(mm), 1, gemm);
      g.node.splice(g.node.indexOf(add), 1);
      changed.push(gemm.name);
      break;
    }
  }
  if (changed.length) removeDeadNodes(g);
  return changed;
}

/**
 * Puts each Gemm with initializer weights in the form QGemm fuses best: B stored [N, K] with transB=1, C as one
 * value per output ([N]), alpha and beta folded into B and C. Returns the names of the Gemms changed.
 */
export function normalizeGemm(model: OnnxModel): string[] {
  const g = model.graph;
  const changed: string[] = [];
  for (const n of g.node) {
    if (n.opType !== 'Gemm' || !isDefault(n) || attrInt(n, 'transA', 0)) continue;
    const bt = init(g, n.input[1]);
    const b = bt && floatValues(model, bt);
    const ct = n.input[2] ? init(g, n.input[2]) : undefined;
    const c = ct ? floatValues(model, ct) : undefined;
    if (!bt || !b || tensorShape(bt).length !== 2 || (n.input[2] && !c)) continue;
    const transB = attrInt(n, 'transB', 0);
    const [alpha, beta] = [attrFloat(n, 'alpha', 1), attrFloat(n, 'beta', 1)];
    const [rows, cols] = tensorShape(bt);
    const [outs, k] = transB ? [rows, cols] : [cols, rows];
    const cDims = ct ? tensorShape(ct) : [];
    const cPerOutput = !c || c.length === 1 || (c.length === outs && cDims[cDims.length - 1] === outs);
    const already = transB && alpha === 1 && beta === 1 && (!ct || cDims.length === 1) && cPerOutput;
    if (already || !cPerOutput) continue;
    const w = new Float32Array(outs * k);
    for (let o = 0; o < outs; o++) for (let i = 0; i < k; i++) w[o * k + i] = alpha * (transB ? b[o * k + i] : b[i * outs + o]);
    const wName = freshName(g, `${bt.name}_gemm`);
    g.initializer.push(floatTensor(wName, [outs, k], w));
    n.input[1] = wName;
    if (c) {
      const cName = freshName(g, `${ct!.name}_gemm`);
      g.initializer.push(floatTensor(cName, [outs], Float32Array.from({ length: outs }, (_, o) => beta * c[c.length === 1 ? 0 : o])));
      n.input[2] = cName;
    }
    n.attribute = n.attribute.filter((a) => !['alpha', 'beta', 'transB'].includes(a.name));
    n.attribute.push(...makeNode('Gemm', [], ['x'], { transB: 1 }).attribute);
    changed.push(n.name || n.output[0]);
  }
  if (changed.length) removeDeadNodes(g);
  return changed;
}

/**
 * Default-domain ops whose meaning does not change from the opset where a model may use them up to 13 (with
 * the attributes an older model can have). Ops not listed, or listed with a condition that fails, block the
 * upgrade; Slice and Squeeze/Unsqueeze get their attributes moved to inputs instead.
 */
const sameUpTo13 = new Set([
  'Abs', 'Add', 'And', 'ArgMax', 'ArgMin', 'AveragePool', 'BatchNormalization', 'Cast', 'Ceil', 'Concat', 'Constant', 'ConstantOfShape',
  'Conv', 'ConvTranspose', 'Div', 'Elu', 'Equal', 'Erf', 'Exp', 'Expand', 'Flatten', 'Floor', 'Gather', 'Gemm', 'GlobalAveragePool',
  'GlobalMaxPool', 'Greater', 'HardSigmoid', 'Identity', 'InstanceNormalization', 'LRN', 'LeakyRelu', 'Less', 'Log', 'MatMul', 'Max',
  'MaxPool', 'Mean', 'Min', 'Mul', 'Neg', 'Not', 'Or', 'PRelu', 'Pow', 'Reciprocal', 'ReduceL2', 'ReduceMax', 'ReduceMean', 'ReduceMin',
  'ReduceProd', 'Relu', 'Reshape', 'Selu', 'Shape', 'Sigmoid', 'Sign', 'Sin', 'Cos', 'Softplus', 'Softsign', 'Sqrt', 'Sub', 'Sum', 'Tanh',
  'Tile', 'Transpose', 'Where', 'Xor',
]);

/**
 * Raises the default-domain opset to 13 when every op keeps its meaning, moving Slice and Squeeze/Unsqueeze
 * attributes to inputs on the way. Softmax, LogSoftmax and Hardmax changed at 13 (before, they flattened
 * everything from `axis` on into one axis; from 13 they work along `axis` alone), so they are accepted only
 * where `axis` is the last axis, where both readings agree. Returns the opset it started from, and the ops
 * that blocked the upgrade when it was not done.
 */
export function upgradeOpset13(model: OnnxModel): { from: number; blockers?: string[] } {
  const entry = model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  const from = Number(entry?.version ?? 1n);
  if (from >= 13) return { from };
  const g = model.graph;
  const shapes = inferShapes(model.proto);
  const blockers = new Set<string>();
  // Broadcasting Add/Mul/... took an explicit `broadcast` attribute before opset 7.
  if (from < 7) blockers.add(`opset ${from} (numpy broadcasting came at 7)`);
  for (const n of g.node) {
    if (!isDefault(n)) continue;
    if (n.attribute.some((a) => a.g || a.graphs.length)) blockers.add(n.opType);
    else if (n.opType === 'Softmax' || n.opType === 'LogSoftmax' || n.opType === 'Hardmax') {
      const rank = shapes.get(n.input[0])?.shape.length;
      const axis = attrInt(n, 'axis', 1);
      if (rank === undefined || (axis !== -1 && axis !== rank - 1)) blockers.add(`${n.opType} (axis ${axis} is not the last axis)`);
    } else if (n.opType === 'Slice' || n.opType === 'Squeeze' || n.opType === 'Unsqueeze') continue;
    else if (n.opType === 'Gemm' && from < 7) blockers.add(n.opType);
    else if (n.opType === 'BatchNormalization' && attrInt(n, 'spatial', 1) !== 1) blockers.add('BatchNormalization (spatial=0)');
    else if ((n.opType === 'MaxPool' || n.opType === 'AveragePool') && n.output.length > 1) blockers.add(`${n.opType} (with indices)`);
    else if (!sameUpTo13.has(n.opType)) blockers.add(n.opType);
  }
  if (blockers.size) return { from, blockers: [...blockers] };
  for (const n of g.node) {
    if (!isDefault(n)) continue;
    if (n.opType === 'Slice' && from < 10) attrsToInputs(g, n, ['starts', 'ends', 'axes']);
    if ((n.opType === 'Squeeze' || n.opType === 'Unsqueeze') && n.attribute.some((a) => a.name === 'axes')) attrsToInputs(g, n, ['axes']);
    // Opset 9 dropped BatchNormalization's `spatial` (1 is the only value accepted above) and 6 `is_test`.
    if (n.opType === 'BatchNormalization') n.attribute = n.attribute.filter((a) => a.name !== 'spatial' && a.name !== 'is_test' && a.name !== 'consumed_inputs');
  }
  if (entry) entry.version = 13n;
  else model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: '', version: 13n }));
  // Opset 13 needs IR 7; from IR 4 initializers need not be inputs, and ones that are would be overridable,
  // which keeps onnxruntime from treating them as constants (no constant folding, no QDQ fusion).
  if (model.proto.irVersion < 7n) model.proto.irVersion = 7n;
  const inits = new Set(g.initializer.map((t) => t.name));
  g.input = g.input.filter((v) => !inits.has(v.name));
  return { from };
}

/** Moves INTS attributes to int64 initializer inputs in the given order (absent trailing ones are left out). */
function attrsToInputs(g: GraphProto, n: NodeProto, names: string[]): void {
  const inputs = [n.input[0]];
  for (const name of names) {
    const a = n.attribute.find((x) => x.name === name);
    if (!a) break;
    // INT64_MAX ends ("to the end") must stay exact: bigints straight into int64_data.
    const t = create(TensorProtoSchema, { name: freshName(g, `${n.name || n.output[0]}_${name}`), dims: [BigInt(a.ints.length)], dataType: 7, int64Data: [...a.ints] });
    g.initializer.push(t);
    inputs.push(t.name);
  }
  n.input = inputs;
  n.attribute = n.attribute.filter((a) => !names.includes(a.name));
}

/** What graph preparation did, for the report and warnings. */
export interface Preparation {
  batchNorms: string[];
  biasAdds: string[];
  gemms: string[];
  reshapedWeights: number;
  opset: { from: number; to: number; blockers?: string[] };
}

/** Every preparation step, in the order that lets each one see what the previous exposed. */
export function prepareForQuantization(model: OnnxModel): Preparation {
  const reshapedWeights = foldConstantReshapes(model);
  const batchNorms = foldBatchNorm(model);
  const biasAdds = foldConvAdd(model);
  const gemms = [...matMulAddToGemm(model), ...normalizeGemm(model)];
  const up = upgradeOpset13(model);
  if (model.proto.irVersion < 4n) {
    // IR 3 requires every initializer to be a graph input too; the new ones are not, so move to IR 4.
    model.proto.irVersion = 4n;
    const inits = new Set(model.graph.initializer.map((t) => t.name));
    model.graph.input = model.graph.input.filter((v) => !inits.has(v.name));
  }
  const to = Number(model.proto.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 1n);
  return { batchNorms, biasAdds, gemms, reshapedWeights, opset: { from: up.from, to, blockers: up.blockers } };
}
