/**
 * Static int8 quantization in QDQ form (U8S8): uint8 asymmetric activations with ranges from calibration,
 * int8 symmetric per-channel weights, int32 biases, placed by the fusion rules of DESIGN.md section 4 so that
 * onnxruntime runs QLinearConv / QGemm / QLinearAdd / QLinearConcat / QLinearGlobalAveragePool end to end.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProtoSchema, type GraphProto, type NodeProto, type TensorProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset, randomWarning } from '../../data';
import { InputError } from '../../errors';
import { floatTensor, node as makeNode } from '../../formats/onnx/build';
import { removeDeadNodes, topologicalOrder } from '../../formats/onnx/edit';
import { OnnxModel } from '../../formats/onnx/model';
import { readOnnxFile } from '../../formats/onnx/read';
import { inferShapes } from '../../formats/onnx/shapes';
import { tensorShape } from '../../formats/onnx/tensor';
import { modelInputs, openSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import type { Calibration, ParamValue, PassContext } from '../pass';
import { activationSpec, chooseRange, collectStats, histogramMse, type CalibrationTarget, type TensorStats } from './calibrate';
import { floatValues, prepareForQuantization } from './fold';
import { dequantizeTensor, quantizeTensor, roundHalfEven, scaleZeroPoint, sqnrDb, sqnrPerAxis, toBytes8, type ScaleZero } from './math';
import type { ActivationRange, QuantizeOptions, QuantizeReport, QuantLayerSummary, WeightError } from './params';

/** Ops that get their own output scale and run as QLinear* kernels when all their inputs are quantized. */
const ownScaleOps = new Set(['Add', 'Mul', 'Concat', 'GlobalAveragePool', 'AveragePool']);
/** Ops that move or select values without changing them: their output shares the input's scale and zero point. */
const sharedScaleOps = new Set(['MaxPool', 'Flatten', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze']);

/** A weighted layer that gets int8 weights. */
interface WeightedLayer {
  node: NodeProto;
  weight: TensorProto;
  /** Axis of the weight that indexes output channels. */
  axis: number;
  /** Bias initializer (Conv B, Gemm C with one value per output). */
  bias?: TensorProto;
  /** Where the input's channels are, for bias correction means. */
  inputAxis: 'channel1' | 'last';
}

/** How an activation tensor is quantized: with its own calibrated range, or with the range of another tensor. */
type Plan = { kind: 'own' } | { kind: 'shared'; from: string };

/** 7- or 8-bit weights, from the user or from the CPU. */
export function chooseWeightBits(pref: QuantizeOptions['weightBits']): { bits: 7 | 8; reason: string } {
  if (pref === '7' || pref === '8') return { bits: pref === '7' ? 7 : 8, reason: `--weight-bits ${pref}` };
  if (process.arch === 'arm64' || process.arch === 'arm') return { bits: 8, reason: `${process.arch}: onnxruntime's ARM int8 kernels do not saturate on full-range weights` };
  if (process.arch !== 'x64' && process.arch !== 'ia32') return { bits: 8, reason: `${process.arch}: no known saturation issue` };
  let flags: string;
  try {
    flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return { bits: 7, reason: 'x86 CPU whose flags could not be read (/proc/cpuinfo): 7-bit weights avoid the U8S8 kernel saturating without VNNI' };
  }
  const vnni = /\b(avx512_vnni|avx_vnni)\b/.exec(flags)?.[1];
  return vnni
    ? { bits: 8, reason: `x86 with ${vnni}: the U8S8 kernel does not saturate on 8-bit weights` }
    : { bits: 7, reason: 'x86 without VNNI (no avx512_vnni or avx_vnni in /proc/cpuinfo): the U8S8 kernel (vpmaddubsw) saturates on full-range int8 weights, so 7-bit weights' };
}

/** The model's bytes as a fresh OnnxModel (its own protobuf objects and weight views). */
export function cloneModel(model: OnnxModel): OnnxModel {
  return OnnxModel.fromBytes(toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true }), model.file);
}

/**
 * Quantizes a float model in place to static QDQ int8 (DESIGN.md section 4):
 * - BatchNormalization and constant bias Adds are folded into Convs first, MatMul + Add becomes Gemm, and the
 *   opset is raised to 13 when safe (per-channel DequantizeLinear needs it; otherwise weights are per tensor);
 * - every trunk activation, the graph input included, gets Q→DQ with a uint8 range from `p.calibration`;
 *   Relu/Clip after a quantized op is folded into its Q; MaxPool/Flatten/Reshape/Transpose/Squeeze share
 *   their input's scale; other ops stay float with a DQ before them;
 * - Conv/Gemm/MatMul weights become DQ of int8 initializers (per output channel), biases DQ of int32 with
 *   scale sx·sw; `p.biasCorrection` first shifts each bias by E[(W − Ŵ)x];
 * - onnxruntime's optimized graph is read back to report the compute ops that stayed float, and each
 *   activation's SQNR against the float model is measured on the calibration data.
 */
export async function quantizeStatic(model: OnnxModel, p: QuantizeOptions, ctx: PassContext): Promise<QuantizeReport> {
  const calib: Calibration = ctx.calibration ?? { data: 'random' };
  if (calib.data === 'random' && !ctx.warnings.includes(randomWarning)) ctx.warnings.push(randomWarning);
  ctx.progress?.(undefined, 'preparing the graph');
  const prep = prepareForQuantization(model);
  if (prep.batchNorms.length) ctx.warnings.push(`folded ${prep.batchNorms.length} BatchNormalization node(s) into the Conv before them`);
  if (prep.opset.from < 13 && prep.opset.to >= 13) {
    ctx.warnings.push(`raised the default-domain opset from ${prep.opset.from} to 13 for per-channel QDQ: every op in the model keeps its meaning at 13 (Softmax-family ops, whose meaning changed at 13, are accepted only along their last axis)`);
  }
  const opset = prep.opset.to;
  if (opset < 10) {
    throw new InputError(model.file, `opset ${opset} has no QuantizeLinear (it came at opset 10), and the opset cannot be raised safely because of: ${prep.opset.blockers?.join(', ')}`);
  }
  const perChannel = p.perChannel && opset >= 13;
  if (p.perChannel && !perChannel) ctx.warnings.push(`weights quantized per tensor: per-channel DequantizeLinear needs opset 13, and opset ${opset} cannot be raised because of: ${prep.opset.blockers?.join(', ')}`);
  const weightBits = chooseWeightBits(p.weightBits);
  const g = model.graph;
  g.node = topologicalOrder(g);

  // --- Plan: which layers get int8 weights, which tensors get Q→DQ and with whose range.
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const constants = new Set([...inits.keys(), ...g.node.filter((n) => n.opType === 'Constant').map((n) => n.output[0])]);
  const shapes = inferShapes(model.proto);
  const isFloat = (t: string) => (shapes.get(t)?.dtype ?? 1) === 1;
  const excluded = (n: NodeProto) => p.exclude.includes(n.name) || p.exclude.includes(n.opType);
  const unmatched = p.exclude.filter((e) => !g.node.some((n) => n.name === e || n.opType === e));
  if (unmatched.length) ctx.warnings.push(`--exclude: no node or op type named ${unmatched.map((e) => `'${e}'`).join(', ')}`);
  const readers = new Map<string, NodeProto[]>();
  for (const n of g.node) for (const i of n.input) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
  const graphOutputs = new Set(g.output.map((o) => o.name));

  const weighted = new Map<NodeProto, WeightedLayer>();
  const layers: QuantLayerSummary[] = [];
  for (const n of g.node) {
    const w = weightedLayer(n, inits);
    if (!w) continue;
    if (excluded(n)) {
      layers.push({ layer: n.name, op: n.opType, weight: w.weight.name, shape: tensorShape(w.weight), format: 'float', reason: 'excluded by --exclude' });
      continue;
    }
    if (!isFloat(n.input[0])) continue;
    weighted.set(n, w);
  }
  const plan = new Map<string, Plan>();
  const foldedActivations = new Set<NodeProto>();
  /** Per quantized op, the tensor its output Q sits on (after a folded Relu), for the report. */
  const outputActivation = new Map<NodeProto, string>();
  const own = (t: string) => {
    if (t && !constants.has(t) && isFloat(t) && !plan.has(t)) plan.set(t, { kind: 'own' });
  };
  /** Marks a quantized op's output, through a Relu/Clip(0, ·) that only it feeds. */
  const markOutput = (n: NodeProto) => {
    const out = n.output[0];
    const next = readers.get(out);
    const act = next?.length === 1 && !graphOutputs.has(out) ? next[0] : undefined;
    if (act && !excluded(act) && (act.opType === 'Relu' || (act.opType === 'Clip' && clipMin(act, inits) === 0))) {
      foldedActivations.add(act);
      own(act.output[0]);
      outputActivation.set(n, act.output[0]);
    } else {
      own(out);
      outputActivation.set(n, out);
    }
  };
  for (const n of g.node) {
    if (weighted.has(n)) {
      own(n.input[0]);
      markOutput(n);
    } else if (!excluded(n) && isOwnScale(n, constants)) {
      for (const i of n.input) own(i);
      markOutput(n);
    }
  }
  // Second pass, in order: ops that pass values through inherit their input's range when it is quantized.
  for (const n of g.node) {
    if (excluded(n) || foldedActivations.has(n)) continue;
    const input = n.input[0];
    if (!plan.has(input)) continue;
    if (sharedScaleOps.has(n.opType) && n.output.filter(Boolean).length === 1) plan.set(n.output[0], { kind: 'shared', from: rootOf(plan, input) });
    else if (n.opType === 'Relu' || (n.opType === 'Clip' && clipMin(n, inits) === 0)) own(n.output[0]);
  }

  // --- Calibration on the prepared float model.
  const floatModel = cloneModel(model);
  const targets: CalibrationTarget[] = [...plan.keys()].map((tensor) => ({ tensor }));
  if (p.biasCorrection) for (const w of weighted.values()) targets.push({ tensor: w.node.input[0], channelAxis: w.inputAxis });
  ctx.progress?.(0, 'calibrating');
  let calibration;
  try {
    calibration = await collectStats(floatModel, targets, calib, ctx);
  } catch (err) {
    if (err instanceof RangeError) throw new InputError(calib.data, err.message);
    throw err;
  }
  const params = new Map<string, ScaleZero>();
  const fullRange = new Set(p.fullRange ?? []);
  const unknownFull = [...fullRange].filter((t) => plan.get(t)?.kind !== 'own');
  if (unknownFull.length) ctx.warnings.push(`--full-range: no calibrated activation named ${unknownFull.map((t) => `'${t}'`).join(', ')} (shared-scale tensors take their input's range)`);
  const ranges: ActivationRange[] = [];
  for (const [t, pl] of plan) {
    if (pl.kind !== 'own') continue;
    const stats = calibration.stats.get(t)!;
    const full = fullRange.has(t);
    const [lo, hi] = full ? [stats.min, stats.max] : chooseRange(stats, p.calibration, p.percentile);
    params.set(t, scaleZeroPoint(lo, hi, activationSpec));
    if (stats.count) ranges.push(rangeReport(t, stats, [lo, hi], full, p.percentile));
  }
  ranges.sort((a, b) => a.sqnrDb - b.sqnrDb || a.tensor.localeCompare(b.tensor));
  for (const [t, pl] of plan) if (pl.kind === 'shared') params.set(t, params.get(pl.from)!);

  // --- Weights and biases.
  const fresh = namer(g);
  const errors: WeightError[] = [];
  let corrected = 0;
  for (const w of weighted.values()) {
    if (ctx.signal?.aborted) throw new CancelledError();
    const sx = params.get(w.node.input[0]);
    if (!sx) continue;
    const done = quantizeWeights(model, g, fresh, w, sx.scale, perChannel, weightBits.bits, p.biasCorrection ? calibration.stats.get(w.node.input[0]) : undefined, errors);
    if (done.corrected) corrected++;
    const act = outputActivation.get(w.node);
    if (act && plan.has(act)) done.summary.activation = act;
    layers.push(done.summary);
  }
  if (p.biasCorrection) ctx.warnings.push(`bias correction: ${corrected} layer(s) had their bias shifted by E[(W − Ŵ)x], with E[x] per input channel from the calibration data (empirical bias correction, Nagel et al. 2019; zero padding at borders is ignored)`);

  // --- Q→DQ on activations.
  // onnxruntime's WeightBiasQuantization quantizes any Conv/ConvTranspose/Gemm fed by a DQ on its own (int8 per
  // tensor); an excluded layer reads the float tensor instead, so that it really stays float.
  const floatReaders = new Set(g.node.filter((n) => excluded(n) && ['Conv', 'ConvTranspose', 'Gemm'].includes(n.opType)));
  const quantView = insertActivationQdq(g, fresh, plan, params, graphOutputs, floatReaders);
  g.node = topologicalOrder(g);
  // The float weights and the float stand-ins from preparation are read by nothing now; declared value types
  // may be stale (outputs renamed), and onnxruntime infers them anyway.
  removeDeadNodes(g);
  g.valueInfo = [];

  ctx.progress?.(undefined, 'checking onnxruntime fusion');
  const fused = await optimizedOps(model, ctx);
  const floatOps = fused ? fused.floatOps : undefined;
  if (floatOps && Object.keys(floatOps).length) {
    ctx.warnings.push(`ops that stay float in onnxruntime's optimized graph: ${Object.entries(floatOps).map(([op, k]) => `${op} ×${k}`).join(', ')}`);
  }

  ctx.progress?.(undefined, 'measuring activation SQNR');
  const quantModel = cloneModel(model);
  // Q→DQ pairs that only an excluded layer would have read are gone with removeDeadNodes.
  const produced = new Set([...g.input.map((v) => v.name), ...g.node.flatMap((n) => n.output)]);
  const tensors = [...quantView].filter(([, q]) => produced.has(q)).map(([tensor, quantTensor]) => ({ tensor, quantTensor }));
  const activations = await activationSqnr(floatModel, quantModel, tensors, { ...calib, limit: Math.min(calib.limit ?? 64, 64) }, ctx);

  const reportParams: Record<string, ParamValue> = {};
  for (const [k, v] of Object.entries(p)) if (v !== undefined) reportParams[k] = v as ParamValue;
  return {
    pass: 'quantize',
    params: reportParams,
    mode: 'static',
    layers,
    calibration: { method: p.calibration, data: calibration.description, samples: calibration.samples, tensors: [...plan.values()].filter((x) => x.kind === 'own').length },
    weightBits,
    floatOps,
    optimizedOps: fused?.ops,
    errors,
    activations,
    ranges,
    preparation: prep,
  };
}

/**
 * One activation's range and the error its quantization alone is expected to add, from the calibration
 * histogram: signal Σx² against rounding noise inside the range and clipping error beyond it.
 */
function rangeReport(tensor: string, s: TensorStats, range: [number, number], full: boolean, percentile: number): ActivationRange {
  let signal = 0;
  let total = 0;
  let out = 0;
  const w = s.binWidth;
  for (let b = 0; b < s.counts.length; b++) {
    const n = s.counts[b];
    if (!n) continue;
    const c = -s.limit + (b + 0.5) * w;
    signal += n * c * c;
    total += n;
    // A bin counts as clipped when its centre lies beyond the range by more than half a bin.
    if (c < range[0] - w / 2 || c > range[1] + w / 2) out += n;
  }
  const db = (lo: number, hi: number) => {
    const noise = histogramMse(s, lo, hi);
    return noise === 0 ? Infinity : 10 * Math.log10(signal / Math.max(total, 1) / noise);
  };
  const methods = ['minmax', 'percentile', 'entropy', 'mse'] as const;
  const calibrators = Object.fromEntries(methods.map((m) => [m, chooseRange(s, m, percentile)])) as Record<(typeof methods)[number], [number, number]>;
  return { tensor, range, observed: [s.min, s.max], full, sqnrDb: db(range[0], range[1]), fullRangeSqnrDb: db(s.min, s.max), clipped: total ? out / total : 0, calibrators, histogram: coarseHistogram(s, 64) };
}

/** The streaming histogram re-binned into `bins` equal bins over the observed [min, max], for drawing. */
function coarseHistogram(s: TensorStats, bins: number): { lo: number; hi: number; counts: number[] } {
  const [lo, hi] = [s.min, s.max];
  const counts = new Array<number>(bins).fill(0);
  const w = s.binWidth;
  const span = hi - lo || 1;
  for (let b = 0; b < s.counts.length; b++) {
    const n = s.counts[b];
    if (!n) continue;
    const c = -s.limit + (b + 0.5) * w;
    counts[Math.min(bins - 1, Math.max(0, Math.floor(((c - lo) / span) * bins)))] += n;
  }
  return { lo, hi, counts };
}

/** The constant lower bound of a Clip (attribute before opset 11, input after), or undefined. */
function clipMin(n: NodeProto, inits: Map<string, TensorProto>): number | undefined {
  const attr = n.attribute.find((a) => a.name === 'min');
  if (attr) return attr.f;
  const t = n.input[1] ? inits.get(n.input[1]) : undefined;
  if (!t) return undefined;
  const v = t.rawData.byteLength >= 4 ? new Float32Array(t.rawData.slice().buffer)[0] : t.floatData[0];
  return t.dataType === 1 ? v : undefined;
}

function rootOf(plan: Map<string, Plan>, t: string): string {
  let at = t;
  for (let pl = plan.get(at); pl?.kind === 'shared'; pl = plan.get(at)) at = pl.from;
  return at;
}

/** Add/Mul/Concat/pools on activations only (constant operands would need their own quantization). */
function isOwnScale(n: NodeProto, constants: Set<string>): boolean {
  if (n.domain && n.domain !== 'ai.onnx') return false;
  if (n.opType === 'MatMul') return n.input.every((i) => i && !constants.has(i));
  if (!ownScaleOps.has(n.opType)) return false;
  if (n.opType === 'AveragePool' && n.output.length > 1) return false;
  return n.input.filter(Boolean).every((i) => !constants.has(i));
}

/** The weighted layer a node is, when its weight is a float initializer it can take as int8. */
function weightedLayer(n: NodeProto, inits: Map<string, TensorProto>): WeightedLayer | undefined {
  if (n.domain && n.domain !== 'ai.onnx') return undefined;
  const intAttr = (name: string) => Number(n.attribute.find((a) => a.name === name)?.i ?? 0);
  const weight = inits.get(n.input[1]);
  if (!weight || weight.dataType !== 1 || inits.has(n.input[0])) return undefined;
  const shape = tensorShape(weight);
  const biasOf = (axis: number) => {
    const b = n.input[2] ? inits.get(n.input[2]) : undefined;
    return b && b.dataType === 1 && tensorShape(b).reduce((x, y) => x * y, 1) === shape[axis] && tensorShape(b).length === 1 ? b : undefined;
  };
  if (n.opType === 'Conv') {
    if (n.input[2] && !biasOf(0)) return undefined;
    return { node: n, weight, axis: 0, bias: biasOf(0), inputAxis: 'channel1' };
  }
  if (n.opType === 'Gemm') {
    if (intAttr('transA') || shape.length !== 2) return undefined;
    const axis = intAttr('transB') ? 0 : 1;
    // A 2-D or broadcast C stays float: QGemm's int32 bias is one value per output.
    if (n.input[2] && !biasOf(axis)) return undefined;
    return { node: n, weight, axis, bias: biasOf(axis), inputAxis: 'last' };
  }
  if (n.opType === 'MatMul' && shape.length === 2) return { node: n, weight, axis: 1, inputAxis: 'last' };
  return undefined;
}

function scalarTensor(name: string, dataType: number, value: number): TensorProto {
  const raw = dataType === 1 ? new Uint8Array(Float32Array.of(value).buffer) : dataType === 2 ? Uint8Array.of(value) : dataType === 3 ? new Uint8Array(Int8Array.of(value).buffer) : new Uint8Array(Int32Array.of(value).buffer);
  return create(TensorProtoSchema, { name, dims: [], dataType, rawData: raw });
}

function bytesTensor(name: string, dataType: number, dims: number[], raw: Uint8Array): TensorProto {
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType, rawData: raw as Uint8Array<ArrayBuffer> });
}

/** A name maker for new tensors of `g`: `base`, or `base_1`, `base_2`... when taken. */
function namer(g: GraphProto): (base: string) => string {
  const taken = new Set([...g.initializer.map((t) => t.name), ...g.input.map((v) => v.name), ...g.output.map((v) => v.name), ...g.node.flatMap((n) => n.output)]);
  return (base) => {
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };
}

/**
 * Replaces a layer's weight by DQ(int8) and its bias by DQ(int32, scale sx·sw, zero point 0); with `stats`
 * (per-channel input means), first adds the mean output error E[(W − Ŵ)x] to the bias (creating one for a
 * Conv or Gemm without). Returns the layer's summary and whether its bias was corrected.
 */
function quantizeWeights(model: OnnxModel, g: GraphProto, fresh: (base: string) => string, w: WeightedLayer, sx: number, perChannel: boolean, bits: 7 | 8, stats: TensorStats | undefined, errors: WeightError[]): { summary: QuantLayerSummary; corrected: boolean } {
  const n = w.node;
  const values = floatValues(model, w.weight)!;
  const shape = tensorShape(w.weight);
  const spec = { type: 'int8' as const, symmetric: true, reduceRange: bits === 7 };
  const q = quantizeTensor(values, shape, spec, perChannel ? { axis: w.axis } : {});
  const deq = dequantizeTensor(q);
  const outputs = shape[w.axis];
  const channelSqnr = sqnrPerAxis(values, deq, shape, w.axis);
  errors.push({ layer: n.name, weight: w.weight.name, shape, error: deq.map((v, i) => v - values[i]), channelSqnrDb: channelSqnr });
  const summary: QuantLayerSummary = { layer: n.name, op: n.opType, weight: w.weight.name, shape, format: 'qdq', bits, granularity: perChannel ? 'per-channel' : 'per-tensor', symmetric: true, sqnrDb: sqnrDb(values, deq) };

  let bias = w.bias ? floatValues(model, w.bias)! : undefined;
  const means = stats?.channelMeans();
  let corrected = false;
  if (means && n.opType !== 'MatMul') {
    const delta = meanOutputError(values, deq, shape, w, means);
    if (delta) {
      bias = (bias ?? new Float32Array(outputs)).map((b, o) => b + delta[o]);
      corrected = true;
    }
  }

  // The weight's int8 zero point is written out (onnxruntime's QGemm fusion wants it); the bias's int32 one is
  // left to DequantizeLinear's default of 0, which keeps small models small.
  const base = w.weight.name;
  const qName = fresh(`${base}_q`);
  const sName = fresh(`${base}_s`);
  const zName = fresh(`${base}_zp`);
  const dqName = fresh(`${base}_dq`);
  g.initializer.push(
    bytesTensor(qName, 3, shape, toBytes8(q.values, 'int8')),
    perChannel ? floatTensor(sName, [outputs], q.scales) : scalarTensor(sName, 1, q.scales[0]),
    perChannel ? bytesTensor(zName, 3, [outputs], new Uint8Array(outputs)) : scalarTensor(zName, 3, 0),
  );
  g.node.push(makeNode('DequantizeLinear', [qName, sName, zName], [dqName], perChannel ? { axis: w.axis } : {}, ''));
  n.input[1] = dqName;

  if (bias) {
    const bq = new Int32Array(outputs);
    const bs = new Float32Array(outputs);
    for (let o = 0; o < outputs; o++) {
      bs[o] = Math.fround(sx * q.scales[perChannel ? o : 0]);
      bq[o] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven(bias[o] / bs[o])));
    }
    const bBase = w.bias?.name ?? `${n.name || n.output[0]}_bias`;
    const bqName = fresh(`${bBase}_q`);
    const bsName = fresh(`${bBase}_s`);
    const bdqName = fresh(`${bBase}_dq`);
    g.initializer.push(bytesTensor(bqName, 6, [outputs], new Uint8Array(bq.buffer)), floatTensor(bsName, [outputs], bs));
    g.node.push(makeNode('DequantizeLinear', [bqName, bsName], [bdqName], { axis: 0 }, ''));
    while (n.input.length < 3) n.input.push('');
    n.input[2] = bdqName;
  }
  return { summary, corrected };
}

/**
 * E[(W − Ŵ)x] per output channel from the input's per-channel means: for Conv, Σ over input channels of
 * the group and kernel positions of (W − Ŵ) · E[x_c]; for Gemm, Σ_k (W − Ŵ)[n, k] · E[x_k].
 */
function meanOutputError(w: Float32Array, deq: Float32Array, shape: number[], layer: WeightedLayer, means: Float64Array): Float64Array | undefined {
  if (layer.node.opType === 'Conv') {
    const [out, inPerGroup] = shape;
    const kernel = shape.slice(2).reduce((a, b) => a * b, 1);
    const groups = Number(layer.node.attribute.find((a) => a.name === 'group')?.i ?? 1);
    if (means.length !== inPerGroup * groups) return undefined;
    const outPerGroup = out / groups;
    const delta = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      const first = Math.floor(o / outPerGroup) * inPerGroup;
      let s = 0;
      for (let c = 0; c < inPerGroup; c++) {
        let diff = 0;
        const at = (o * inPerGroup + c) * kernel;
        for (let k = 0; k < kernel; k++) diff += w[at + k] - deq[at + k];
        s += diff * means[first + c];
      }
      delta[o] = s;
    }
    return delta;
  }
  const [rows, cols] = shape;
  const out = shape[layer.axis];
  const k = layer.axis === 0 ? cols : rows;
  if (means.length !== k) return undefined;
  const delta = new Float64Array(out);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [o, i] = layer.axis === 0 ? [r, c] : [c, r];
      delta[o] += (w[r * cols + c] - deq[r * cols + c]) * means[i];
    }
  }
  return delta;
}

/**
 * Inserts one QuantizeLinear and one DequantizeLinear per planned tensor; every reader of the tensor reads
 * the DQ's output (onnxruntime gives each node unit its own DQ copy when it fuses), except `floatReaders`, which
 * read the float tensor. A tensor that is a graph
 * output keeps its name on the DQ's output and its producer writes a new name. Returns, per float tensor, the
 * name of its dequantized view in the quantized graph.
 */
function insertActivationQdq(g: GraphProto, fresh: (base: string) => string, plan: Map<string, Plan>, params: Map<string, ScaleZero>, graphOutputs: Set<string>, floatReaders: Set<NodeProto>): Map<string, string> {
  const view = new Map<string, string>();
  const paramNames = new Map<string, [string, string]>();
  const paramsOf = (t: string): [string, string] => {
    const root = rootOf(plan, t);
    let names = paramNames.get(root);
    if (!names) {
      const sz = params.get(root)!;
      names = [fresh(`${root}_s`), fresh(`${root}_zp`)];
      g.initializer.push(scalarTensor(names[0], 1, sz.scale), scalarTensor(names[1], 2, sz.zeroPoint));
      paramNames.set(root, names);
    }
    return names;
  };
  for (const t of plan.keys()) {
    const [s, z] = paramsOf(t);
    const qName = fresh(`${t}_q`);
    if (graphOutputs.has(t)) {
      // The producer writes a new name; the graph output and every reader get the dequantized value.
      const source = fresh(`${t}_f`);
      for (const n of g.node) n.output = n.output.map((o) => (o === t ? source : o));
      for (const n of floatReaders) n.input = n.input.map((i) => (i === t ? source : i));
      g.node.push(makeNode('QuantizeLinear', [source, s, z], [qName], {}, ''));
      g.node.push(makeNode('DequantizeLinear', [qName, s, z], [t], {}, ''));
      view.set(t, t);
    } else {
      const dqName = fresh(`${t}_dq`);
      for (const n of g.node) if (!floatReaders.has(n)) n.input = n.input.map((i) => (i === t ? dqName : i));
      g.node.push(makeNode('QuantizeLinear', [t, s, z], [qName], {}, ''));
      g.node.push(makeNode('DequantizeLinear', [qName, s, z], [dqName], {}, ''));
      view.set(t, dqName);
    }
  }
  return view;
}

/** Ops that only move data or convert: not counted as compute that stayed float. */
const notCompute = new Set(['QuantizeLinear', 'DequantizeLinear', 'Constant', 'Shape', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Cast', 'Gather', 'Slice', 'ReorderInput', 'ReorderOutput']);

/**
 * Lets onnxruntime optimize the quantized model (level 'all', CPU), reads the optimized file back and counts
 * its ops: `ops` all of them, `floatOps` the compute ops whose first input is float (element types followed
 * through the graph: Q and QLinear* give integers, DQ gives float, other ops pass their first input's type).
 */
export async function optimizedOps(model: OnnxModel, ctx: PassContext): Promise<{ ops: Record<string, number>; floatOps: Record<string, number> } | undefined> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-fusion-'));
  const file = path.join(dir, 'optimized.onnx');
  try {
    const bytes = toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true });
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', optimizedModelFilePath: file, logSeverityLevel: 4 });
    await session.release();
    return countOps(readOnnxFile(file).proto.graph!);
  } catch (err) {
    ctx.warnings.push(`could not read onnxruntime's optimized graph to check the int8 fusion: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return undefined;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Op counts of a graph, and of its compute ops that run on float. */
export function countOps(g: GraphProto): { ops: Record<string, number>; floatOps: Record<string, number> } {
  const type = new Map<string, number>();
  for (const v of g.input) if (v.type?.value.case === 'tensorType') type.set(v.name, v.type.value.value.elemType);
  for (const t of g.initializer) type.set(t.name, t.dataType);
  const ops: Record<string, number> = {};
  const floatOps: Record<string, number> = {};
  for (const n of topologicalOrder(g)) {
    ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    const first = type.get(n.input[0]) ?? 1;
    let out = first;
    if (n.opType === 'DequantizeLinear') out = 1;
    else if (n.opType === 'QuantizeLinear' || n.opType.startsWith('QLinear') || /^Q[A-Z]/.test(n.opType) || n.opType === 'DynamicQuantizeLinear') out = type.get(n.input[2] ?? '') ?? 2;
    else if (n.opType.endsWith('Integer')) out = 6;
    else if (n.opType === 'Shape') out = 7;
    else if (n.opType === 'Cast') out = Number(n.attribute.find((a) => a.name === 'to')?.i ?? 1);
    for (const o of n.output) if (o) type.set(o, out);
    const float = first === 1 || first === 10 || first === 11;
    if (float && !notCompute.has(n.opType) && !n.opType.startsWith('QLinear') && !/^Q[A-Z]/.test(n.opType)) floatOps[n.opType] = (floatOps[n.opType] ?? 0) + 1;
  }
  return { ops, floatOps };
}

/** One float activation and its dequantized view in the quantized model. */
export interface ActivationPair {
  tensor: string;
  quantTensor: string;
}

/**
 * SQNR of each activation of the quantized model (its post-DQ value) against the float model's tensor, over
 * the calibration data, worst first: 10·log10(Σ ref² / Σ (ref − q)²) accumulated over every sample.
 */
export async function activationSqnr(floatModel: OnnxModel, quantModel: OnnxModel, tensors: ActivationPair[], calib: Calibration, ctx: PassContext): Promise<Array<{ tensor: string; sqnrDb: number }>> {
  if (tensors.length === 0) return [];
  const inputs = modelInputs(floatModel);
  const inputNames = new Set(inputs.map((i) => i.name));
  const dataset = await openDataset(calib.data, inputs, { limit: calib.limit, seed: calib.seed, shapes: calib.shapes, randomCount: calib.limit ?? 64 });
  const floatFetch = tensors.map((t) => t.tensor).filter((t) => !inputNames.has(t));
  const quantFetch = tensors.map((t) => t.quantTensor);
  const a = await openSession(floatModel, { ep: calib.ep ?? 'cpu', extraOutputs: floatFetch, dynamicBatch: true });
  const b = await openSession(quantModel, { ep: calib.ep ?? 'cpu', extraOutputs: quantFetch, dynamicBatch: true }).catch(async (err: unknown) => {
    await a.release();
    throw err;
  });
  const signal = new Float64Array(tensors.length);
  const noise = new Float64Array(tensors.length);
  try {
    const perRun = a.batched && b.batched ? 32 : 1;
    for await (const batch of dataset.batches(perRun, ctx.signal)) {
      if (ctx.signal?.aborted) throw new CancelledError();
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const fa = floatFetch.length ? await a.session.run(feeds, floatFetch) : {};
      const fb = await b.session.run(feeds, quantFetch);
      tensors.forEach((t, k) => {
        const ref = outputFloats(fa[t.tensor] ?? feeds[t.tensor]);
        const q = outputFloats(fb[t.quantTensor]);
        for (let i = 0; i < ref.length; i++) {
          signal[k] += ref[i] * ref[i];
          const d = ref[i] - q[i];
          noise[k] += d * d;
        }
      });
    }
  } finally {
    await a.release().catch(() => {});
    await b.release().catch(() => {});
  }
  return tensors
    .map((t, k) => ({ tensor: t.tensor, sqnrDb: noise[k] === 0 ? Infinity : 10 * Math.log10(signal[k] / noise[k]) }))
    .sort((x, y) => x.sqnrDb - y.sqnrDb);
}
