/**
 * Quantization-aware training: weight fake-quant. Each Conv, Gemm and MatMul weight gets QuantizeLinear→
 * DequantizeLinear per output channel, symmetric (zero point 0), int8 with qmax 127 or 4-bit with qmax 7 (stored in
 * int8). The scale is computed in the graph from the current weights at every step, s = max|W|/qmax per channel, so
 * it follows the weights as they train and is treated as a constant by the gradient (straight-through estimator; with
 * max scales nothing clips, so the clip mask passes every element). Activations can be fake-quantized too
 * (insertActivationFakeQuant): uint8 asymmetric QuantizeLinear→DequantizeLinear on the data input of each of those
 * layers, with constant ranges from the static quantize pass's calibration; the STE rule zeroes the gradient of
 * values the range clips. Scales are not learned (no LSQ).
 */
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, type GraphProto, type ModelProto, type NodeProto } from 'onnx-buf';
import { InputError } from '../errors';
import { int64Tensor, node } from '../formats/onnx/build';
import { inferShapes } from '../formats/onnx/shapes';
import type { OnnxModel } from '../formats/onnx/model';
import { activationSpec, chooseRange, collectStats } from '../passes/quantize/calibrate';
import { scaleZeroPoint, type ScaleZero } from '../passes/quantize/math';

/** One fake-quantized weight. */
export interface FakeQuantLayer {
  /** The Conv/Gemm/MatMul node. */
  node: string;
  /** The value fake-quantized (the weight, or the Reshape of it that the node reads). */
  value: string;
  /** Channel axis of the per-channel scale. */
  axis: number;
  qmax: number;
}

/** Options for insertWeightFakeQuant. */
export interface FakeQuantOptions {
  bits: 8 | 4;
  /** Only these nodes (by name); default every Conv, Gemm and MatMul with a constant weight. */
  nodes?: string[];
  /** Leave these out (node or weight names, or op types). */
  exclude?: string[];
  /** Activation fake-quant: uint8 scale and zero point per tensor (the data input of a fake-quantized layer). */
  activations?: Record<string, { scale: number; zeroPoint: number }>;
}

/** Returns a copy of the model with weight fake-quant inserted, at opset >= 13 (per-channel QuantizeLinear). */
export function insertWeightFakeQuant(source: ModelProto, o: FakeQuantOptions): { proto: ModelProto; layers: FakeQuantLayer[] } {
  if (o.bits !== 8 && o.bits !== 4) throw new InputError(undefined, `QAT bits must be 8 or 4, not ${String(o.bits)}`);
  const qmax = o.bits === 8 ? 127 : 7;
  const src = source.graph!;
  const opset = Number(source.opsetImport.find((x) => x.domain === '' || x.domain === 'ai.onnx')?.version ?? 0);
  const g: GraphProto = { ...src, node: [...src.node], initializer: [...src.initializer] };
  const floats = new Set(src.initializer.filter((t) => t.dataType === 1).map((t) => t.name));
  const producer = new Map<string, NodeProto>();
  for (const n of src.node) for (const out of n.output) producer.set(out, n);
  // A weight is a float initializer, or a Reshape/Identity of one (mnist-8 reshapes its MatMul weight).
  const isConstWeight = (v: string): boolean => floats.has(v) || (['Reshape', 'Identity'].includes(producer.get(v)?.opType ?? '') && floats.has(producer.get(v)!.input[0]));
  const shapes = inferShapes(source);
  const layers: FakeQuantLayer[] = [];
  const out: NodeProto[] = [];
  for (const n of src.node) {
    const v = n.input[1];
    const excluded = !!o.exclude && (o.exclude.includes(n.name) || o.exclude.includes(n.opType) || o.exclude.includes(v) || o.exclude.includes(producer.get(v)?.input[0] ?? ''));
    const wanted = ['Conv', 'Gemm', 'MatMul'].includes(n.opType) && (!n.domain || n.domain === 'ai.onnx') && !!v && isConstWeight(v) && (!o.nodes || o.nodes.includes(n.name)) && !excluded;
    if (!wanted) {
      out.push(n);
      continue;
    }
    const dims = shapes.get(v)?.shape ?? src.initializer.find((t) => t.name === v)?.dims.map(Number);
    if (!dims || dims.some((d) => typeof d !== 'number')) throw new InputError(undefined, `QAT: the weight '${v}' of ${n.opType} node '${n.name}' needs a static shape`);
    const rank = dims.length;
    const transB = Number(n.attribute.find((a) => a.name === 'transB')?.i ?? 0);
    const axis = n.opType === 'Conv' ? 0 : n.opType === 'Gemm' ? (transB ? 0 : 1) : rank - 1;
    const channels = dims[axis] as number;
    const p = `${v}_whittle_fq`;
    const others = [...Array(rank).keys()].filter((a) => a !== axis);
    g.initializer.push(create(TensorProtoSchema, { name: `${p}/qmax`, dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(qmax).buffer) }));
    g.initializer.push(create(TensorProtoSchema, { name: `${p}/tiny`, dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(1e-12).buffer) }));
    g.initializer.push(create(TensorProtoSchema, { name: `${p}/zp`, dims: [BigInt(channels)], dataType: 3, rawData: new Uint8Array(channels) }));
    const reduce =
      opset >= 18
        ? (g.initializer.push(int64Tensor(`${p}/axes`, [others.length], others)), node('ReduceMax', [`${p}/abs`, `${p}/axes`], [`${p}/max`], { keepdims: 0 }, `${p}/ReduceMax`))
        : node('ReduceMax', [`${p}/abs`], [`${p}/max`], { axes: others, keepdims: 0 }, `${p}/ReduceMax`);
    out.push(
      node('Abs', [v], [`${p}/abs`], {}, `${p}/Abs`),
      reduce,
      node('Div', [`${p}/max`, `${p}/qmax`], [`${p}/s0`], {}, `${p}/Div`),
      node('Max', [`${p}/s0`, `${p}/tiny`], [`${p}/scale`], {}, `${p}/Max`),
      node('QuantizeLinear', [v, `${p}/scale`, `${p}/zp`], [`${p}/q`], { axis }, `${p}/QuantizeLinear`),
      node('DequantizeLinear', [`${p}/q`, `${p}/scale`, `${p}/zp`], [`${p}/w`], { axis }, `${p}/DequantizeLinear`),
    );
    out.push({ ...n, input: [n.input[0], `${p}/w`, ...n.input.slice(2)] });
    layers.push({ node: n.name, value: v, axis, qmax });
  }
  g.node = out;
  if (o.activations) {
    // uint8 Q/DQ on each fake-quantized layer's data input, with the calibrated constant scale and zero point.
    const done = new Map<string, string>();
    g.node = g.node.flatMap((n) => {
      const x = n.input[0];
      const q = o.activations![x];
      if (!layers.some((l) => l.node === n.name) || !q) return [n];
      const p = `${x}_whittle_afq`;
      if (done.has(x)) return [{ ...n, input: [done.get(x)!, ...n.input.slice(1)] }];
      done.set(x, `${p}/x`);
      g.initializer.push(create(TensorProtoSchema, { name: `${p}/scale`, dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(q.scale).buffer) }));
      g.initializer.push(create(TensorProtoSchema, { name: `${p}/zp`, dims: [], dataType: 2, rawData: Uint8Array.of(q.zeroPoint) }));
      return [
        node('QuantizeLinear', [x, `${p}/scale`, `${p}/zp`], [`${p}/q`], {}, `${p}/QuantizeLinear`),
        node('DequantizeLinear', [`${p}/q`, `${p}/scale`, `${p}/zp`], [`${p}/x`], {}, `${p}/DequantizeLinear`),
        { ...n, input: [`${p}/x`, ...n.input.slice(1)] },
      ];
    });
  }
  const opsetImport = source.opsetImport.map((x) => (x.domain === '' || x.domain === 'ai.onnx' ? { ...x, version: BigInt(Math.max(Number(x.version), 13)) } : x));
  return { proto: { ...source, opsetImport, graph: g }, layers };
}

/**
 * Activation ranges for QAT as the static quantize pass calibrates them (minmax over `data`, uint8 asymmetric): one
 * scale and zero point per data input of the layers insertWeightFakeQuant would fake-quantize with these options.
 */
export async function calibrateActivations(model: OnnxModel, o: FakeQuantOptions, data: string, ctx: { signal?: AbortSignal; warnings: string[]; seed?: number; limit?: number }): Promise<Record<string, ScaleZero>> {
  const layers = insertWeightFakeQuant(model.proto, { ...o, activations: undefined }).layers;
  const tensors = [...new Set(layers.map((l) => model.graph.node.find((n) => n.name === l.node)!.input[0]))];
  const cal = await collectStats(model, tensors.map((tensor) => ({ tensor })), { data, seed: ctx.seed, limit: ctx.limit }, { signal: ctx.signal, warnings: ctx.warnings });
  return Object.fromEntries(
    tensors.map((t) => {
      const [lo, hi] = chooseRange(cal.stats.get(t)!, 'minmax');
      return [t, scaleZeroPoint(lo, hi, activationSpec)];
    }),
  );
}
