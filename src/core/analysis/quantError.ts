import { InputError } from '../errors';
import type { OnnxModel } from '../formats/onnx/model';
import type { Layer } from '../model/layers';
import { TensorRef } from '../model/tensorRef';
import { dequantizeTensor, sqnrDb, sqnrPerAxis, unpackInt4, type QType, type QuantizedTensor } from '../passes/quantize/math';

/** A quantized layer's weight error against its float original: element by element and per output channel. */
export interface LayerQuantError {
  layer: string;
  /** dequantized - original, in the original weight's shape; a TensorRef so heatmap tiles read it like a weight. */
  error: TensorRef;
  /** Axis of `error` that indexes output channels. */
  axis: number;
  sqnrDb: number;
  channelSqnrDb: number[];
  maxAbs: number;
  /** How the weight is stored, e.g. 'int8 per-channel' or 'MatMulNBits 4-bit block 32'. */
  format: string;
}

const qtypeOf: Record<number, QType | undefined> = { 3: 'int8', 2: 'uint8', 22: 'int4', 21: 'uint4' };

/** Integer codes of a quantized initializer, unpacked (4-bit types are two to a byte). */
function codes(ref: TensorRef): Int32Array {
  if (ref.dtype === 22 || ref.dtype === 21) return unpackInt4(ref.read() as Uint8Array, ref.count, ref.dtype === 22);
  return Int32Array.from(ref.read() as ArrayLike<number>);
}

/** Real values of a layer's weight as its model computes them: DequantizeLinear, MatMulNBits, or a float (e.g. fp16) initializer. */
export function effectiveWeight(model: OnnxModel, layer: Layer): { values: Float32Array; shape: number[]; format: string } {
  const q = layer.quant;
  if (q) {
    const type = qtypeOf[layer.weight.dtype];
    if (!type) throw new InputError(model.file, `layer '${layer.name}': DequantizeLinear of ${layer.weight.dtypeName} is not supported here`);
    const shape = [...layer.weight.shape];
    const axis = q.axis < 0 ? q.axis + shape.length : q.axis;
    const perTensor = q.scale.count === 1;
    const granularity = perTensor ? {} : q.blockSize > 0 ? { axis, blockSize: q.blockSize } : { axis };
    const t: QuantizedTensor = {
      spec: { type, symmetric: false },
      shape,
      granularity,
      scaleShape: [...q.scale.shape],
      scales: q.scale.toFloat32(),
      zeroPoints: q.zeroPoint ? codes(q.zeroPoint) : new Int32Array(q.scale.count),
      values: codes(layer.weight),
    };
    return { values: dequantizeTensor(t), shape, format: `${type} ${perTensor ? 'per-tensor' : q.blockSize > 0 ? `block ${q.blockSize}` : 'per-channel'}` };
  }
  if (layer.op === 'com.microsoft:MatMulNBits') return matMulNBitsWeight(model, layer);
  if (!layer.weight.numeric) throw new InputError(model.file, `layer '${layer.name}': weight '${layer.weight.name}' is ${layer.weight.dtypeName}`);
  return { values: layer.weight.toFloat32(), shape: [...layer.weight.shape], format: layer.weight.dtypeName };
}

/**
 * The [K, N] float weight of a com.microsoft MatMulNBits node (4 or 8 bits): B is [N, blocks, blockSize * bits
 * / 8] packed codes, scales [N * blocks], zero points packed the same way per column (default 2^(bits-1)),
 * and w[k][n] = (q - zp) * scale.
 */
function matMulNBitsWeight(model: OnnxModel, layer: Layer): { values: Float32Array; shape: number[]; format: string } {
  const node = model.graph.node.find((n) => n.name === layer.name);
  if (!node) throw new InputError(model.file, `no node named '${layer.name}'`);
  const attr = (k: string) => Number(node.attribute.find((a) => a.name === k)?.i ?? 0);
  const [K, N, bits, block] = [attr('K'), attr('N'), attr('bits') || 4, attr('block_size')];
  if ((bits !== 4 && bits !== 8) || !K || !N || !block) throw new InputError(model.file, `layer '${layer.name}': MatMulNBits with bits ${bits}, K ${K}, N ${N}, block_size ${block} is not supported here`);
  const ref = (i: number) => (node.input[i] ? model.weights().get(node.input[i])?.ref : undefined);
  const [b, scales, zp] = [ref(1), ref(2), ref(3)];
  if (!b || !scales) throw new InputError(model.file, `layer '${layer.name}': MatMulNBits B and scales must be initializers`);
  const blocks = Math.ceil(K / block);
  const unpack = (bytes: Uint8Array, count: number) => (bits === 4 ? unpackInt4(bytes, count, false) : Int32Array.from(bytes.subarray(0, count)));
  const q = unpack(b.read() as Uint8Array, N * blocks * block);
  const s = scales.toFloat32();
  // Zero points are packed per column, each column's run rounded up to whole bytes.
  const zpStride = bits === 4 ? Math.ceil(blocks / 2) * 2 : blocks;
  const zeros = zp && zp.dtype === 2 ? unpack(zp.read() as Uint8Array, N * zpStride) : undefined;
  const mid = 2 ** (bits - 1);
  const values = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const bi = Math.floor(k / block);
      const z = zeros ? zeros[n * zpStride + bi] : mid;
      values[k * N + n] = (q[(n * blocks + bi) * block + (k % block)] - z) * s[n * blocks + bi];
    }
  }
  return { values, shape: [K, N], format: `MatMulNBits ${bits}-bit block ${block}` };
}

/**
 * The weight error of `layerName` in a quantized (or fp16) model against the same layer of its float source:
 * dequantized - original per element, with SQNR per output channel. Layers are matched by name; the shapes
 * must agree element for element.
 */
export function layerQuantError(quantized: OnnxModel, source: OnnxModel, layerName: string): LayerQuantError {
  const layer = quantized.layers().find((l) => l.name === layerName);
  if (!layer) throw new InputError(quantized.file, `no layer named '${layerName}'`);
  const original = source.layers().find((l) => l.name === layerName);
  if (!original) throw new InputError(source.file, `the source model has no layer named '${layerName}' to compare with`);
  const ref = original.weight.toFloat32();
  const got = effectiveWeight(quantized, layer);
  if (got.values.length !== ref.length) throw new InputError(quantized.file, `layer '${layerName}' has ${got.values.length} weights here and ${ref.length} in the source`);
  const error = new Float32Array(ref.length);
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    error[i] = got.values[i] - ref[i];
    maxAbs = Math.max(maxAbs, Math.abs(error[i]));
  }
  const shape = [...original.weight.shape];
  const axis = original.outputAxis;
  const channel = sqnrPerAxis(ref, got.values, shape, axis);
  const finite = (x: number) => (Number.isFinite(x) ? x : 999);
  return {
    layer: layerName,
    error: new TensorRef(`${original.weight.name} error`, 1, shape, { kind: 'values', values: error }, quantized.file),
    axis,
    sqnrDb: finite(sqnrDb(ref, got.values)),
    channelSqnrDb: [...channel].map(finite),
    maxAbs,
    format: got.format,
  };
}

/** The last few layer errors computed, so that the tiles of one heatmap compute it once. */
const recent: Array<{ key: string; value: LayerQuantError }> = [];

/** layerQuantError, remembered for the latest 4 (model, source, layer) triples. */
export function cachedQuantError(quantized: OnnxModel, source: OnnxModel, layerName: string): LayerQuantError {
  const key = `${quantized.file}\n${source.file}\n${layerName}`;
  const hit = recent.find((r) => r.key === key);
  if (hit) return hit.value;
  const value = layerQuantError(quantized, source, layerName);
  recent.unshift({ key, value });
  recent.length = Math.min(recent.length, 4);
  return value;
}
