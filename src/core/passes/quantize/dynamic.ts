/**
 * Dynamic quantization: int8 weights stored, activations quantized at run time.
 *
 * Each MatMul (and Gemm, as MatMul + Add) with a constant weight becomes
 *   DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, x_zp[, w_zp]) -> Cast(float) -> Mul(x_scale * w_scale) [-> Add(bias)]
 * with the weight scales per output column (broadcast along N). Convs stay float: ConvInteger was measured
 * 1.03-3.1x slower than fp32 on the CPU EP (DESIGN.md section 4), so this mode is for MatMul-heavy models.
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
  addInitializers, defaultOpset, ensureOpset, finiteWeight, floatAttr, freshName, intAttr, isExcluded, keptFloat, nodeOfLayer,
  reportedLayers, reportParams, step, transpose2d, unknownExcludes, unquantizableWeight, usedNames, weightError,
} from './common';
import { dequantizeTensor, quantizeTensor, toBytes8, type QuantSpec } from './math';
import type { QuantizeOptions, QuantizeReport } from './params';

/** The reason a Conv is never quantized dynamically. */
export const convIntegerReason = 'ConvInteger measured 1.03-3.1x slower than fp32 (DESIGN.md section 4)';

/**
 * Rewrites MatMul and Gemm layers with constant weights into the dynamic int8 form (module comment), in
 * place. Weights are int8 symmetric by default (uint8 with zero points with `symmetric: false`), per output
 * column unless `perChannel` is false. Needs opset 11 (DynamicQuantizeLinear); a model whose opset cannot be
 * raised safely is left float, every layer saying why.
 */
export async function quantizeDynamic(model: OnnxModel, p: QuantizeOptions, ctx: PassContext): Promise<QuantizeReport> {
  const report: QuantizeReport = { pass: 'quantize', params: reportParams(p), mode: 'dynamic', layers: [], errors: [] };
  const unknown = unknownExcludes(model, p.exclude);
  if (unknown.length) ctx.warnings.push(`--exclude names no layer, op type or weight of this model: ${unknown.join(', ')}`);
  const symmetric = p.symmetric ?? true;
  const spec: QuantSpec = { type: symmetric ? 'int8' : 'uint8', symmetric };
  const g = model.graph;
  const weightOf = new Map<TensorRef, Weight>([...model.weights().values()].map((w) => [w.ref, w]));
  const layers = reportedLayers(model);
  const from = defaultOpset(model);
  let opsetProblem: string | undefined;
  const taken = usedNames(g);
  const tensors: TensorProto[] = [];
  /** DynamicQuantizeLinear outputs per activation, shared by the MatMuls that read it (Q, K, V projections). */
  const quantizedInputs = new Map<string, string[]>();
  let done = 0;
  for (const layer of layers) {
    step(ctx, done++, layers.length, `quantizing ${layer.name}`);
    const why = reasonToSkip(layer);
    if (why) {
      report.layers.push(keptFloat(layer, why));
      continue;
    }
    if (opsetProblem === undefined && from < 11) {
      opsetProblem = ensureOpset(model, 11) ?? '';
      if (!opsetProblem) ctx.warnings.push(`raised the model's opset from ${from} to 11 for DynamicQuantizeLinear (every op in it means the same at 11)`);
    }
    if (opsetProblem) {
      report.layers.push(keptFloat(layer, `DynamicQuantizeLinear needs opset 11, and ${opsetProblem}`));
      continue;
    }
    const n = nodeOfLayer(model, layer)!;
    const w = weightOf.get(layer.weight)!;
    const values = finiteWeight(model, w);
    const isGemm = n.opType === 'Gemm';
    const transB = isGemm && intAttr(n, 'transB', 0) === 1;
    const alpha = isGemm ? floatAttr(n, 'alpha', 1) : 1;
    const shape = layer.weight.shape;
    const N = transB ? shape[0] : shape[shape.length - 1];
    const K = layer.weight.count / N;
    let wkn = transB ? transpose2d(values, N, K) : values;
    if (alpha !== 1) wkn = wkn.map((v) => v * alpha);
    const q = quantizeTensor(wkn, [K, N], spec, p.perChannel ? { axis: 1 } : {});

    const base = layer.weight.name;
    const a = n.input[0];
    let aq = quantizedInputs.get(a);
    const added: NodeProto[] = [];
    if (!aq) {
      aq = [freshName(g, `${a}_quantized`, taken), freshName(g, `${a}_scale`, taken), freshName(g, `${a}_zero_point`, taken)];
      added.push(node('DynamicQuantizeLinear', [a], aq, {}, freshName(g, `${a}_DynamicQuantizeLinear`, taken)));
      quantizedInputs.set(a, aq);
    }
    const wq = freshName(g, `${base}_quantized`, taken);
    const ws = freshName(g, `${base}_scale`, taken);
    tensors.push(
      create(TensorProtoSchema, { name: wq, dims: [BigInt(K), BigInt(N)], dataType: spec.type === 'int8' ? 3 : 2, rawData: toBytes8(q.values, spec.type as 'int8' | 'uint8') as Uint8Array<ArrayBuffer> }),
      floatTensor(ws, q.scaleShape, q.scales),
    );
    const mmInputs = [aq[0], wq, aq[2]];
    if (!symmetric) {
      const wz = freshName(g, `${base}_zero_point`, taken);
      tensors.push(create(TensorProtoSchema, { name: wz, dims: q.scaleShape.map(BigInt), dataType: 2, rawData: toBytes8(q.zeroPoints, 'uint8') as Uint8Array<ArrayBuffer> }));
      mmInputs.push(wz);
    }
    const out = n.output[0];
    const prefix = n.name || out;
    const [mmOut, castOut, scale] = [freshName(g, `${out}_int32`, taken), freshName(g, `${out}_float`, taken), freshName(g, `${out}_scale`, taken)];
    const bias = isGemm && n.input[2] ? n.input[2] : undefined;
    const mulOut = bias ? freshName(g, `${out}_matmul`, taken) : out;
    added.push(
      node('MatMulInteger', mmInputs, [mmOut], {}, freshName(g, `${prefix}_MatMulInteger`, taken)),
      node('Cast', [mmOut], [castOut], { to: 1 }, freshName(g, `${prefix}_Cast`, taken)),
      node('Mul', [aq[1], ws], [scale], {}, freshName(g, `${prefix}_scale_Mul`, taken)),
      node('Mul', [castOut, scale], [mulOut], {}, freshName(g, `${prefix}_Mul`, taken)),
    );
    if (bias) {
      let c = bias;
      const beta = floatAttr(n, 'beta', 1);
      if (beta !== 1) {
        const ref = [...weightOf.keys()].find((r) => r.name === bias)!;
        c = freshName(g, `${bias}_beta`, taken);
        tensors.push(floatTensor(c, [...ref.shape], ref.toFloat32().map((v) => v * beta)));
      }
      added.push(node('Add', [mulOut, c], [out], {}, freshName(g, `${prefix}_bias`, taken)));
    }
    g.node.splice(g.node.indexOf(n), 1, ...added);

    let deq = dequantizeTensor(q);
    if (alpha !== 1) deq = deq.map((v) => v / alpha);
    if (transB) deq = transpose2d(deq, K, N);
    const e = weightError(layer.name, base, [...shape], values, deq, layer.outputAxis);
    report.errors.push(e.error);
    report.layers.push({ layer: layer.name, op: layer.op, weight: base, shape: [...shape], format: 'dynamic', bits: 8, granularity: p.perChannel ? 'per-channel' : 'per-tensor', symmetric, sqnrDb: e.sqnr });
  }
  addInitializers(model, tensors);
  // Float weights (and Reshapes of them) that only the replaced nodes read.
  if (report.layers.some((l) => l.format === 'dynamic')) removeDeadNodes(g);
  step(ctx, layers.length, layers.length, 'weights quantized');
  return report;

  function reasonToSkip(layer: Layer): string | undefined {
    if (layer.kind === 'conv' || layer.kind === 'convTranspose') return convIntegerReason;
    if (layer.kind !== 'matmul' && layer.kind !== 'gemm') return `${layer.op} is not quantized dynamically (MatMul and Gemm are)`;
    if (isExcluded(layer, p.exclude)) return 'excluded by --exclude';
    const bad = unquantizableWeight(weightOf.get(layer.weight));
    if (bad) return bad;
    const n = nodeOfLayer(model, layer);
    if (!n) return 'its node is inside a subgraph, which this pass does not edit';
    const shape = layer.weight.shape;
    if (n.opType === 'MatMul') {
      if (n.input[0] === layer.weight.name) return 'its weight is the left operand; MatMulInteger quantizes the activation on the left';
      if (layer.outputAxis !== shape.length - 1 || (n.input[1] === layer.weight.name && shape.length !== 2)) return 'its weight is not a [K, N] matrix';
      return undefined;
    }
    if (intAttr(n, 'transA', 0)) return 'Gemm with transA is not rewritten';
    if (n.input[1] !== layer.weight.name || shape.length !== 2) return 'its weight is not the constant B input';
    const c = n.input[2];
    if (c && floatAttr(n, 'beta', 1) !== 1 && ![...weightOf.keys()].some((r) => r.name === c)) return 'Gemm with beta != 1 and a computed C is not rewritten';
    return undefined;
  }
}
