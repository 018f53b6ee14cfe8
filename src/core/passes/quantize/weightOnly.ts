/**
 * Weight-only quantization: weights stored as int8/uint8 or int4/uint4, activations stay float.
 *
 * Two storage forms (DESIGN.md section 4, and measured here with onnxruntime-node 1.30 on the CPU EP):
 * - `com.microsoft:MatMulNBits` (4 or 8 bits, blocks along K, accuracy_level 4) for MatMul and Gemm, the
 *   default (`--format auto`). int4 was measured 6.4x smaller and 4.9x faster at batch 1 (DESIGN.md); on the
 *   80 MB MLP of bench/quantizeWeight.ts int4 and int8 both run at about 0.1-0.2x fp32's latency.
 * - `DequantizeLinear` on the weight initializer, feeding the unchanged consumer: Convs always, MatMul/Gemm
 *   with `--format qdq`. Portable; per-tensor needs opset 10, per-axis 13, blocked and 4-bit types 21. ORT
 *   does not fold the DQ at load but dequantizes on every run: the int8 DQ MLP measured about 10x *slower*
 *   than fp32 at batch 1 (and int4 DQ 5-16x, DESIGN.md), so it saves file size, not time.
 */
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, type NodeProto, type TensorProto } from 'onnx-buf';
import { floatTensor, node } from '../../formats/onnx/build';
import { removeDeadNodes } from '../../formats/onnx/edit';
import type { OnnxModel, Weight } from '../../formats/onnx/model';
import type { Layer } from '../../model/layers';
import type { TensorRef } from '../../model/tensorRef';
import type { PassContext } from '../pass';
import {
  addInitializers, defaultOpset, dropWeightDefinition, finiteWeight, floatAttr, freshName, importDomain, intAttr,
  isExcluded, keptFloat, nodeOfLayer, opsetUpgradeBlocker, raiseOpset, reportedLayers, reportParams, step, transpose2d, unknownExcludes,
  unquantizableWeight, usedNames, weightError,
} from './common';
import { dequantizeTensor, packInt4, qtypeDataType, quantizeTensor, toBytes8, type Granularity, type QType, type QuantSpec } from './math';
import type { QuantizeOptions, QuantizeReport, QuantLayerSummary } from './params';

/** Layer kinds whose main weight weight-only quantization stores in fewer bits. */
const targets = new Set(['conv', 'convTranspose', 'gemm', 'matmul']);

/** How one layer's weight will be stored. */
type Plan =
  | { kind: 'float'; reason: string }
  | { kind: 'dq'; granularity: Granularity; opset: number }
  | { kind: 'nbits'; node: NodeProto; k: number; n: number; block: number; bits: 4 | 8 };

/**
 * Quantizes the weights of Conv, ConvTranspose, Gemm and MatMul layers in place (see the module comment for
 * the formats). Every layer is reported, quantized or kept float with the reason; quantized weights come with
 * their element error and per-output-channel SQNR for the Inspector's heatmap.
 */
export async function quantizeWeightOnly(model: OnnxModel, p: QuantizeOptions, ctx: PassContext): Promise<QuantizeReport> {
  // parseParams gives enum values as strings; accept either.
  const bits: 8 | 4 = Number(p.bits) === 4 ? 4 : 8;
  const symmetric = p.symmetric ?? bits === 8;
  const block = p.block ?? (bits === 4 ? 32 : 0);
  const report: QuantizeReport = { pass: 'quantize', params: reportParams(p), mode: 'weight-only', layers: [], errors: [] };
  const unknown = unknownExcludes(model, p.exclude);
  if (unknown.length) ctx.warnings.push(`--exclude names no layer, op type or weight of this model: ${unknown.join(', ')}`);

  const weightOf = new Map<TensorRef, Weight>([...model.weights().values()].map((w) => [w.ref, w]));
  const layers = reportedLayers(model);
  const opset = defaultOpset(model);
  const reachable = (v: number) => opset >= v || !opsetUpgradeBlocker(model, v);

  // Plan every layer first: the opset the DequantizeLinear forms need is one decision for the whole model.
  const plans = new Map<Layer, Plan>();
  const seen = new Map<Weight, string>();
  let warnedPerTensor = false;
  for (const layer of layers) plans.set(layer, planLayer(layer));
  // Only DequantizeLinear needs a default-domain opset (MatMulNBits is com.microsoft); the checks in planLayer
  // make every planned opset reachable, and reaching the highest reaches the others.
  const needed = Math.max(0, ...[...plans.values()].map((pl) => (pl.kind === 'dq' ? pl.opset : 0)));
  if (needed > opset) {
    raiseOpset(model, needed);
    ctx.warnings.push(`raised the model's opset from ${opset} to ${needed} for DequantizeLinear (every op in it means the same at ${needed})`);
  }

  const taken = usedNames(model.graph);
  const newTensors: TensorProto[] = [];
  const dqNodes: NodeProto[] = [];
  let done = 0;
  for (const layer of layers) {
    step(ctx, done++, layers.length, `quantizing ${layer.name}`);
    const plan = plans.get(layer)!;
    if (plan.kind === 'float') {
      report.layers.push(keptFloat(layer, plan.reason));
      continue;
    }
    const w = weightOf.get(layer.weight)!;
    const values = finiteWeight(model, w);
    const shape = [...layer.weight.shape];
    if (plan.kind === 'dq') {
      const spec = specOf(bits, symmetric);
      const q = quantizeTensor(values, shape, spec, plan.granularity);
      const name = w.ref.name;
      const qName = freshName(model.graph, `${name}_quantized`, taken);
      const sName = freshName(model.graph, `${name}_scale`, taken);
      const zName = freshName(model.graph, `${name}_zero_point`, taken);
      newTensors.push(intTensor(qName, shape, q.values, spec.type), floatTensor(sName, q.scaleShape, q.scales), intTensor(zName, q.scaleShape, q.zeroPoints, spec.type));
      const attrs: Record<string, number> = {};
      if (plan.granularity.axis !== undefined) attrs.axis = plan.granularity.axis;
      if (plan.granularity.blockSize) attrs.block_size = plan.granularity.blockSize;
      dropWeightDefinition(model.graph, w);
      dqNodes.push(node('DequantizeLinear', [qName, sName, zName], [name], attrs, freshName(model.graph, `${name}_DequantizeLinear`, taken)));
      const e = weightError(layer.name, name, shape, values, dequantizeTensor(q), layer.outputAxis);
      report.errors.push(e.error);
      report.layers.push(summary(layer, 'qdq', granularityName(plan.granularity, layer.outputAxis), e.sqnr));
    } else {
      const r = emitMatMulNBits(model, layer, plan, values, symmetric, taken);
      newTensors.push(...r.tensors);
      const e = weightError(layer.name, w.ref.name, shape, values, r.dequantized, layer.outputAxis);
      report.errors.push(e.error);
      report.layers.push(summary(layer, 'matmulnbits', `block-${plan.block}`, e.sqnr));
    }
  }
  // Dequantized weights are computed from initializers only, so the DQ nodes can all go first.
  model.graph.node.unshift(...dqNodes);
  addInitializers(model, newTensors);
  if (report.layers.some((l) => l.format === 'matmulnbits')) {
    importDomain(model, 'com.microsoft', 1);
    // The float weights (and mnist-8's Reshape of one) that only the replaced MatMuls read.
    removeDeadNodes(model.graph);
  }
  step(ctx, layers.length, layers.length, 'weights quantized');
  return report;

  function planLayer(layer: Layer): Plan {
    if (!targets.has(layer.kind)) return { kind: 'float', reason: `${layer.op} weights are not quantized in weight-only mode (Conv, ConvTranspose, Gemm and MatMul are)` };
    if (isExcluded(layer, p.exclude)) return { kind: 'float', reason: 'excluded by --exclude' };
    const w = weightOf.get(layer.weight);
    const bad = unquantizableWeight(w);
    if (bad) return { kind: 'float', reason: bad };
    const first = seen.get(w!);
    if (first) return { kind: 'float', reason: `its weight is shared with ${first}, which was quantized (the dequantized weight serves both)` };
    const n = nodeOfLayer(model, layer);
    if (!n) return { kind: 'float', reason: 'its node is inside a subgraph, which this pass does not edit' };
    const shape = layer.weight.shape;
    const inAxis = inputAxis(layer, n);

    // MatMulNBits for MatMul/Gemm unless DQ is asked for, or a single scale per tensor (which it cannot hold).
    if (p.format !== 'qdq' && (bits === 4 ? block > 0 : block > 0 || p.perChannel)) {
      const nb = nbitsShape(layer, n, weightOf);
      if (nb) {
        // The float weight may still feed other nodes; then only this MatMul reads the 4-bit copy.
        seen.set(w!, layer.name);
        // MatMulNBits has no per-channel form: int8 per channel becomes blocks of 32 along K (0.28x instead of 0.25x).
        return { kind: 'nbits', node: n, k: nb.k, n: nb.n, block: block || 32, bits };
      }
    }
    // DequantizeLinear: blocks along the input axis when asked (opset 21), else per channel or per tensor.
    let g: Granularity = {};
    let need = 10;
    if (block > 0 && inAxis !== undefined) [g, need] = [{ axis: inAxis, blockSize: block }, 21];
    else if (p.perChannel && shape.length > 0) [g, need] = [{ axis: layer.outputAxis }, 13];
    if (bits === 4) need = 21;
    if (!reachable(need)) {
      const why = opsetUpgradeBlocker(model, need)!;
      if (bits === 4) return { kind: 'float', reason: `4-bit DequantizeLinear needs opset 21, and ${why}` };
      if (reachable(13) && g.axis !== undefined) [g, need] = [{ axis: layer.outputAxis }, 13];
      else if (reachable(10)) [g, need] = [{}, 10];
      else return { kind: 'float', reason: `DequantizeLinear needs opset 10, and ${why}` };
      if (!warnedPerTensor) ctx.warnings.push(`${block > 0 ? 'blocked' : 'per-channel'} DequantizeLinear needs opset ${block > 0 ? 21 : 13}, and ${why}; using ${g.axis !== undefined ? 'per-channel' : 'per-tensor'} scales instead`);
      warnedPerTensor = true;
    }
    seen.set(w!, layer.name);
    return { kind: 'dq', granularity: g, opset: need };
  }

  function summary(layer: Layer, format: QuantLayerSummary['format'], granularity: string, sqnr: number): QuantLayerSummary {
    return { layer: layer.name, op: layer.op, weight: layer.weight.name, shape: [...layer.weight.shape], format, bits, granularity, symmetric, sqnrDb: sqnr };
  }
}

/** The integer type of weights: signed when symmetric (zero point 0), unsigned with a zero point otherwise. */
function specOf(bits: 8 | 4, symmetric: boolean): QuantSpec {
  const type: QType = bits === 8 ? (symmetric ? 'int8' : 'uint8') : symmetric ? 'int4' : 'uint4';
  return { type, symmetric };
}

/** An integer initializer of a QType (4-bit types packed two to a byte). */
function intTensor(name: string, dims: number[], values: Int32Array, type: QType): TensorProto {
  const rawData = (type === 'int8' || type === 'uint8' ? toBytes8(values, type) : packInt4(values)) as Uint8Array<ArrayBuffer>;
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: qtypeDataType[type], rawData });
}

function granularityName(g: Granularity, outputAxis: number): string {
  if (g.blockSize) return `block-${g.blockSize}`;
  if (g.axis === undefined) return 'per-tensor';
  return g.axis === outputAxis ? 'per-channel' : `per-axis-${g.axis}`;
}

/**
 * The axis of a weight that the layer sums over (the input dimension), where blocks run; undefined when the
 * weight is not laid out plainly (a MatMul weight reshaped on its way, a batched MatMul).
 */
function inputAxis(layer: Layer, n: NodeProto): number | undefined {
  const rank = layer.weight.shape.length;
  if (layer.op === 'Conv') return rank >= 2 ? 1 : undefined;
  if (layer.op === 'ConvTranspose') return rank >= 2 ? 0 : undefined;
  if (layer.op === 'Gemm') return intAttr(n, 'transB', 0) ? 1 : 0;
  if (layer.op === 'MatMul' && rank === 2 && n.input[1] === layer.weight.name) return 0;
  if (layer.op === 'MatMul' && rank === 2 && n.input[0] === layer.weight.name) return 1;
  return undefined;
}

/**
 * K and N when the layer can become MatMulNBits: a MatMul whose right operand is the weight (directly, or
 * through a Reshape that keeps N last, as in mnist-8), or a Gemm without transA whose C, if any, is a
 * constant or applies with beta 1.
 */
function nbitsShape(layer: Layer, n: NodeProto, weightOf: Map<TensorRef, Weight>): { k: number; n: number } | undefined {
  const shape = layer.weight.shape;
  const count = layer.weight.count;
  if (layer.op === 'MatMul') {
    if (layer.outputAxis !== shape.length - 1 || shape.length < 2) return undefined;
    const direct = n.input[1] === layer.weight.name && shape.length === 2;
    const reshaped = n.input[1] !== layer.weight.name && n.input[0] !== layer.weight.name;
    if (!direct && !reshaped) return undefined;
    const N = shape[shape.length - 1];
    return { k: count / N, n: N };
  }
  if (layer.op === 'Gemm' && shape.length === 2 && n.input[1] === layer.weight.name && !intAttr(n, 'transA', 0)) {
    const beta = floatAttr(n, 'beta', 1);
    const c = n.input[2];
    if (c && beta !== 1 && ![...weightOf.keys()].some((r) => r.name === c)) return undefined;
    const transB = intAttr(n, 'transB', 0);
    return transB ? { k: shape[1], n: shape[0] } : { k: shape[0], n: shape[1] };
  }
  return undefined;
}

/**
 * Rewrites a MatMul or Gemm node into MatMulNBits (4 or 8 bits, blocks of `block` along K, accuracy_level 4).
 * Layout (onnxruntime contrib op, checked against a float reference in the tests): B is uint8
 * [N, ceil(K/block), block * bits / 8] with element k of row n in the low bits first; scales float
 * [N * blocks]; zero points packed the same way per row (ceil(blocks * bits / 8) bytes) when asymmetric, else
 * the implied 2^(bits-1) (codes are q + 8 or q + 128).
 * A Gemm's alpha is folded into the weight and its bias C (times beta) becomes an Add.
 */
function emitMatMulNBits(model: OnnxModel, layer: Layer, plan: Extract<Plan, { kind: 'nbits' }>, values: Float32Array, symmetric: boolean, taken: Set<string>): { tensors: TensorProto[]; dequantized: Float32Array } {
  const { node: n, k: K, n: N, block, bits } = plan;
  const g = model.graph;
  const isGemm = n.opType === 'Gemm';
  const transB = isGemm && intAttr(n, 'transB', 0) === 1;
  const alpha = isGemm ? floatAttr(n, 'alpha', 1) : 1;
  // Wt is [N, K]: rows of MatMulNBits' B.
  let wt = transB ? Float32Array.from(values) : transpose2d(values, K, N);
  if (alpha !== 1) wt = wt.map((v) => v * alpha);
  const spec = specOf(bits, symmetric);
  const q = quantizeTensor(wt, [N, K], spec, { axis: 1, blockSize: block });
  const blocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  const offset = symmetric ? 2 ** (bits - 1) : 0;
  const perByte = 8 / bits;
  const B = new Uint8Array(N * blocks * blob);
  for (let r = 0; r < N; r++) {
    for (let b = 0; b < blocks; b++) {
      const zp = symmetric ? offset : q.zeroPoints[r * blocks + b];
      const base = (r * blocks + b) * blob;
      for (let j = 0; j < block; j++) {
        const k = b * block + j;
        // Padding past K dequantizes to zero: it holds the zero point.
        const code = k < K ? q.values[r * K + k] + offset : zp;
        B[base + Math.floor(j / perByte)] |= code << ((j % perByte) * bits);
      }
    }
  }
  const name = layer.weight.name;
  const bName = freshName(g, `${name}_nbits`, taken);
  const sName = freshName(g, `${name}_nbits_scale`, taken);
  const tensors: TensorProto[] = [
    create(TensorProtoSchema, { name: bName, dims: [BigInt(N), BigInt(blocks), BigInt(blob)], dataType: 2, rawData: B }),
    floatTensor(sName, [N * blocks], q.scales),
  ];
  const inputs = [n.input[0], bName, sName];
  if (!symmetric) {
    const zpRow = Math.ceil(blocks / perByte);
    const zp = new Uint8Array(N * zpRow);
    for (let r = 0; r < N; r++) for (let b = 0; b < blocks; b++) zp[r * zpRow + Math.floor(b / perByte)] |= q.zeroPoints[r * blocks + b] << ((b % perByte) * bits);
    const zName = freshName(g, `${name}_nbits_zero_point`, taken);
    tensors.push(create(TensorProtoSchema, { name: zName, dims: [BigInt(N * zpRow)], dataType: 2, rawData: zp }));
    inputs.push(zName);
  }
  const out = n.output[0];
  const bias = isGemm ? n.input[2] : undefined;
  const beta = isGemm ? floatAttr(n, 'beta', 1) : 1;
  const mmOut = bias ? freshName(g, `${out}_matmul`, taken) : out;
  const replacement = node('MatMulNBits', inputs, [mmOut], { K, N, bits, block_size: block, accuracy_level: 4 }, n.name || mmOut);
  replacement.domain = 'com.microsoft';
  const at = g.node.indexOf(n);
  const added: NodeProto[] = [replacement];
  if (bias) {
    let c = bias;
    if (beta !== 1) {
      // Only reached for a constant C (nbitsShape): scale a copy.
      const ref = [...model.weights().values()].find((w) => w.ref.name === bias)!.ref;
      c = freshName(g, `${bias}_beta`, taken);
      tensors.push(floatTensor(c, [...ref.shape], ref.toFloat32().map((v) => v * beta)));
    }
    added.push(node('Add', [mmOut, c], [out], {}, freshName(g, `${n.name || out}_bias`, taken)));
  }
  g.node.splice(at, 1, ...added);
  // The error is against the stored weight, in its own layout (alpha undone).
  const deqT = dequantizeTensor(q);
  let deq = transB ? deqT : transpose2d(deqT, N, K);
  if (alpha !== 1) deq = deq.map((v) => v / alpha);
  return { tensors, dequantized: deq };
}
