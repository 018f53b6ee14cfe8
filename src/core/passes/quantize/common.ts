/**
 * Graph plumbing shared by the weight-only, dynamic and fp16 modes: which layers to touch, reading a weight
 * safely, replacing a weight by a computed value, opset upgrades, and the error figures for the Inspector.
 */
import { create } from '@bufbuild/protobuf';
import { OperatorSetIdProtoSchema, type GraphProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { CancelledError } from '../../../protocol/rpc';
import { InputError } from '../../errors';
import { valueInfo } from '../../formats/onnx/build';
import { subgraphs } from '../../formats/onnx/edit';
import type { OnnxModel, Weight } from '../../formats/onnx/model';
import { dtypeName } from '../../model/dtype';
import type { Layer } from '../../model/layers';
import type { PassContext } from '../pass';
import { sqnrDb, sqnrPerAxis } from './math';
import type { QuantLayerSummary, WeightError } from './params';

/** True when `--exclude` names this layer, its op type or its weight. */
export function isExcluded(layer: Pick<Layer, 'name' | 'op'> & { weight: { name: string } }, exclude: readonly string[]): boolean {
  return exclude.includes(layer.name) || exclude.includes(layer.op) || exclude.includes(layer.weight.name);
}

/** Names in `--exclude` that match no layer, op type or weight: a warning, since a typo would silently quantize. */
export function unknownExcludes(model: OnnxModel, exclude: readonly string[]): string[] {
  const known = new Set<string>();
  for (const l of model.layers()) known.add(l.name).add(l.op).add(l.weight.name);
  for (const n of model.graph.node) known.add(n.opType).add(n.name);
  return exclude.filter((e) => !known.has(e));
}

/**
 * A float32 weight's values, checked: a NaN or infinite element is the model's fault, so it is an InputError
 * that names the model file and the weight.
 */
export function finiteWeight(model: OnnxModel, w: Weight): Float32Array {
  const values = w.ref.toFloat32();
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new InputError(model.file, `weight '${w.ref.name}' holds ${values[i]} at element ${i}; it cannot be quantized (fix or retrain the model)`);
  }
  return values;
}

/** Why a weight cannot be quantized at all (not float32, in a subgraph, not a constant), or undefined. */
export function unquantizableWeight(w: Weight | undefined): string | undefined {
  if (!w) return 'its weight is not a constant';
  if (w.scope) return `its weight lives in the subgraph ${w.scope}, which this pass does not edit`;
  if (w.ref.dtype !== 1) return `its weight is ${dtypeName(w.ref.dtype)}, not float32`;
  return undefined;
}

/**
 * The layers a quantize report lists: every weight-bearing layer except the bias Adds and similar whose
 * constants another layer already owns (MatMul + Add(bias) is one layer).
 */
export function reportedLayers(model: OnnxModel): Layer[] {
  const layers = model.layers();
  const owned = new Set(layers.filter((l) => l.kind !== 'other').flatMap((l) => Object.values(l.tensors)));
  return layers.filter((l) => l.kind !== 'other' || !Object.values(l.tensors).every((t) => owned.has(t)));
}

/** A float layer summary with the reason it stayed float. */
export function keptFloat(layer: Layer, reason: string): QuantLayerSummary {
  return { layer: layer.name, op: layer.op, weight: layer.weight.name, shape: [...layer.weight.shape], format: 'float', reason };
}

/** The error of a quantized weight (dequantized - original) with its SQNR overall and per output channel. */
export function weightError(layer: string, weight: string, shape: number[], original: Float32Array, dequantized: Float32Array, outputAxis: number): { sqnr: number; error: WeightError } {
  const error = new Float32Array(original.length);
  for (let i = 0; i < error.length; i++) error[i] = dequantized[i] - original[i];
  const axis = shape.length ? Math.min(Math.max(0, outputAxis), shape.length - 1) : 0;
  const channelSqnrDb = shape.length ? sqnrPerAxis(original, dequantized, shape, axis) : Float64Array.of(sqnrDb(original, dequantized));
  return { sqnr: sqnrDb(original, dequantized), error: { layer, weight, shape: [...shape], error, channelSqnrDb } };
}

/** A name not yet used by any value, initializer, input or output of the graph. */
export function freshName(graph: GraphProto, base: string, taken?: Set<string>): string {
  const used = taken ?? usedNames(graph);
  let name = base;
  for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
  used.add(name);
  return name;
}

/** Every value name the graph mentions. */
export function usedNames(graph: GraphProto): Set<string> {
  const used = new Set<string>();
  for (const v of [...graph.input, ...graph.output, ...graph.valueInfo]) used.add(v.name);
  for (const t of graph.initializer) used.add(t.name);
  for (const n of graph.node) for (const x of [...n.input, ...n.output]) if (x) used.add(x);
  return used;
}

/**
 * Removes a weight's definition (its initializer and any old-IR graph.input declaration of it, or its
 * Constant node), so a node can produce a value of the same name instead; consumers stay untouched.
 */
export function dropWeightDefinition(graph: GraphProto, w: Weight): void {
  if (w.origin.kind === 'initializer') {
    graph.initializer = graph.initializer.filter((t) => t !== (w.origin as { tensor: TensorProto }).tensor);
    graph.input = graph.input.filter((v) => v.name !== w.ref.name);
  } else {
    graph.node = graph.node.filter((n) => n !== (w.origin as { node: NodeProto }).node);
  }
}

/** Adds initializers; models below IR 4 must also declare them as graph inputs. */
export function addInitializers(model: OnnxModel, tensors: TensorProto[]): void {
  const g = model.graph;
  g.initializer.push(...tensors);
  if (model.proto.irVersion < 4n) for (const t of tensors) g.input.push(valueInfo(t.name, t.dataType, t.dims.map(Number)));
}

/** The default-domain opset of the model. */
export function defaultOpset(model: OnnxModel): number {
  return model.opsets['ai.onnx'] ?? 1;
}

/** Imports a domain (e.g. com.microsoft) at least at `version`. */
export function importDomain(model: OnnxModel, domain: string, version: number): void {
  const o = model.proto.opsetImport.find((x) => x.domain === domain);
  if (!o) model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
  else if (o.version < BigInt(version)) o.version = BigInt(version);
}

/**
 * Default-domain opsets at which an op's meaning or signature changed incompatibly (an attribute became an
 * input, a default or the broadcasting rule changed). Raising a model's opset across one of these would
 * change or break that op, so the upgrade is refused. Ops not listed are unknown and refuse it too.
 */
const breakingVersions: Record<string, number[]> = {
  Abs: [6], Acos: [], Add: [7], And: [7], ArgMax: [], ArgMin: [], Asin: [], Atan: [], AveragePool: [7],
  BatchNormalization: [9], Cast: [6], Ceil: [6], Concat: [4], Constant: [], ConstantOfShape: [], Conv: [],
  ConvTranspose: [], Cos: [], DepthToSpace: [], DequantizeLinear: [], Div: [7], Dropout: [7, 10, 12], Elu: [6],
  Equal: [7], Erf: [], Exp: [6], Expand: [], Flatten: [], Floor: [6], Gather: [], GatherElements: [], Gemm: [7],
  GlobalAveragePool: [], GlobalMaxPool: [], Greater: [7], HardSigmoid: [6], Identity: [], InstanceNormalization: [6],
  LeakyRelu: [6], Less: [7], Log: [6], LRN: [], MatMul: [], MatMulInteger: [], Max: [8], MaxPool: [8], Mean: [8],
  Min: [8], Mul: [7], Neg: [6], Not: [], Or: [7], Pow: [7], PRelu: [7], QuantizeLinear: [], Reciprocal: [6],
  ReduceL1: [18], ReduceL2: [18], ReduceLogSum: [18], ReduceLogSumExp: [18], ReduceMax: [18], ReduceMean: [18],
  ReduceMin: [18], ReduceProd: [18], ReduceSum: [13], ReduceSumSquare: [18], Relu: [6], Reshape: [5], Selu: [6],
  Shape: [], Sigmoid: [6], Sign: [], Sin: [], Size: [], Softplus: [], Softsign: [], SpaceToDepth: [], Sqrt: [6],
  Squeeze: [13], Sub: [7], Sum: [8], Tanh: [6], Tile: [6], Transpose: [], Unsqueeze: [13], Where: [], Xor: [7],
  Softmax: [13], LogSoftmax: [13], Hardmax: [13], Split: [13], Pad: [11], Clip: [11], Slice: [10], Upsample: [9, 10],
  Resize: [11], TopK: [10], Range: [], NonZero: [], Einsum: [], Gelu: [], LayerNormalization: [],
};

/** Why the model's default opset cannot be raised to `target`, or undefined when it can. */
export function opsetUpgradeBlocker(model: OnnxModel, target: number): string | undefined {
  const from = defaultOpset(model);
  if (from >= target) return undefined;
  const bad = new Set<string>();
  const visit = (g: GraphProto) => {
    for (const n of g.node) {
      if (n.domain && n.domain !== 'ai.onnx') continue;
      if (subgraphs(n).length) bad.add(`${n.opType} (control flow)`);
      const breaks = breakingVersions[n.opType];
      if (!breaks) bad.add(`${n.opType} (not checked)`);
      else if (breaks.some((v) => v > from && v <= target)) bad.add(n.opType);
      for (const s of subgraphs(n)) visit(s);
    }
  };
  visit(model.graph);
  return bad.size ? `raising opset ${from} to ${target} would change ${[...bad].sort().join(', ')}` : undefined;
}

/** Raises the default opset to `target` (and the IR version to one that knows it); call opsetUpgradeBlocker first. */
export function raiseOpset(model: OnnxModel, target: number): void {
  if (defaultOpset(model) >= target) return;
  const o = model.proto.opsetImport.find((x) => x.domain === '' || x.domain === 'ai.onnx');
  if (o) o.version = BigInt(target);
  else model.proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(target) }));
  // The IR version that introduced each opset: 13 -> IR 7, 15 -> 8, 19 -> 9, 21 -> 10.
  const ir = target >= 21 ? 10 : target >= 19 ? 9 : target >= 15 ? 8 : target >= 13 ? 7 : target >= 11 ? 6 : 5;
  if (model.proto.irVersion < BigInt(ir)) model.proto.irVersion = BigInt(ir);
}

/**
 * Makes the default opset at least `target` if that is safe; returns undefined on success or the reason it
 * is not possible.
 */
export function ensureOpset(model: OnnxModel, target: number): string | undefined {
  const blocker = opsetUpgradeBlocker(model, target);
  if (blocker) return blocker;
  raiseOpset(model, target);
  return undefined;
}

/** For each value, the nodes of the main graph that read it. */
export function consumersOf(graph: GraphProto): Map<string, NodeProto[]> {
  const map = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input) if (i) map.set(i, [...(map.get(i) ?? []), n]);
  return map;
}

/** The main-graph node of a layer (layers carry names, not nodes). */
export function nodeOfLayer(model: OnnxModel, layer: Layer): NodeProto | undefined {
  const g = model.graph;
  const named = g.node.find((n) => n.name === layer.name);
  if (named) return named;
  const m = /^(.*)_(\d+)$/.exec(layer.name);
  const n = m ? g.node[Number(m[2])] : undefined;
  return n && n.opType === m![1] && !n.name ? n : undefined;
}

/** Progress and cancellation for a loop over layers. */
export function step(ctx: PassContext, done: number, total: number, message: string): void {
  if (ctx.signal?.aborted) throw new CancelledError();
  ctx.progress?.(total ? done / total : undefined, message);
}

/** An integer attribute of a node, or the default. */
export function intAttr(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : dflt;
}

/** A float attribute of a node, or the default. */
export function floatAttr(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? a.f : dflt;
}

/** A [rows, cols] float matrix transposed. */
export function transpose2d(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** The parameters a report records, in their JSON form. */
export function reportParams(p: object): Record<string, number | string | boolean | string[]> {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as Record<string, number | string | boolean | string[]>;
}
