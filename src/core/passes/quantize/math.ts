/**
 * Quantization arithmetic shared by every quantize mode: integer ranges, scale and zero point, rounding as
 * ONNX QuantizeLinear does it, per-tensor / per-axis / blocked quantization of a weight, int4 packing and SQNR.
 * Pure functions over typed arrays; no graph editing here.
 */

/** Integer types a weight or activation is stored as. */
export type QType = 'int8' | 'uint8' | 'int4' | 'uint4';

/** The ONNX TensorProto data type of a QType (INT8 3, UINT8 2, INT4 22, UINT4 21). */
export const qtypeDataType: Record<QType, number> = { int8: 3, uint8: 2, int4: 22, uint4: 21 };

/** How a quantizer chooses its range. */
export interface QuantSpec {
  type: QType;
  /** Zero point at the middle of the range (0 for signed types), with the range symmetric around zero. */
  symmetric: boolean;
  /**
   * Use one bit less of the range: 7-bit weights for the x86 U8S8 kernel without VNNI (it saturates on
   * full-range int8 weights; DESIGN.md section 4), [0, 127] for uint8.
   */
  reduceRange?: boolean;
}

/**
 * [qmin, qmax] of a type. Symmetric signed ranges are narrow ([-127, 127] for int8, [-7, 7] for int4) so that
 * +a and -a both round to representable values; reduced range halves it.
 */
export function qRange(spec: QuantSpec): [number, number] {
  const bits = spec.type === 'int8' || spec.type === 'uint8' ? 8 : 4;
  const signed = spec.type === 'int8' || spec.type === 'int4';
  const b = spec.reduceRange ? bits - 1 : bits;
  if (signed) {
    const hi = 2 ** (b - 1) - 1;
    return [spec.symmetric ? -hi : -hi - 1, hi];
  }
  return [0, 2 ** b - 1];
}

/** Rounds half to even, as ONNX QuantizeLinear specifies (2.5 -> 2, 3.5 -> 4, -2.5 -> -2). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; step back when that landed on an odd number from an exact half.
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** A scale and zero point. */
export interface ScaleZero {
  scale: number;
  zeroPoint: number;
}

/**
 * Scale and zero point covering [min, max] (widened to include 0, so that zero is exact, which padding and
 * Relu need). A constant-zero range gets scale 1. The scale is rounded to float32, as it is stored.
 */
export function scaleZeroPoint(min: number, max: number, spec: QuantSpec): ScaleZero {
  const [qmin, qmax] = qRange(spec);
  let lo = Math.min(min, 0);
  let hi = Math.max(max, 0);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError(`cannot quantize a range that is not finite: [${min}, ${max}]`);
  if (spec.symmetric) {
    const a = Math.max(-lo, hi);
    lo = -a;
    hi = a;
  }
  if (hi === lo) return { scale: 1, zeroPoint: spec.symmetric ? symmetricZero(spec, qmin, qmax) : qmin };
  const scale = Math.fround((hi - lo) / (qmax - qmin));
  if (spec.symmetric) return { scale, zeroPoint: symmetricZero(spec, qmin, qmax) };
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - lo / scale)));
  return { scale, zeroPoint };
}

function symmetricZero(spec: QuantSpec, qmin: number, qmax: number): number {
  return spec.type === 'uint8' || spec.type === 'uint4' ? Math.ceil((qmin + qmax) / 2) : 0;
}

/** q = saturate(roundHalfEven(x / scale) + zeroPoint), as QuantizeLinear computes it. */
export function quantizeValue(x: number, s: ScaleZero, qmin: number, qmax: number): number {
  return Math.min(qmax, Math.max(qmin, roundHalfEven(x / s.scale) + s.zeroPoint));
}

/** How a weight's elements share scales: one for the tensor, one per index of `axis`, or blocks along `axis`. */
export interface Granularity {
  /** Absent: per tensor. */
  axis?: number;
  /** With `axis`: consecutive runs of this many elements along the axis share a scale (ONNX blocked quantization). */
  blockSize?: number;
}

/**
 * A quantized tensor. `scales` and `zeroPoints` are laid out as ONNX wants them: a scalar (per tensor), a
 * vector along `axis` (per axis), or the tensor's shape with `shape[axis]` replaced by ceil(shape[axis] /
 * blockSize) (blocked, opset 21 DequantizeLinear).
 */
export interface QuantizedTensor {
  spec: QuantSpec;
  shape: number[];
  granularity: Granularity;
  /** Shape of `scales` and `zeroPoints` ([] per tensor). */
  scaleShape: number[];
  scales: Float32Array;
  zeroPoints: Int32Array;
  /** One integer per element, row-major, unpacked. */
  values: Int32Array;
}

/** Row-major strides of a shape. */
function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** For each element, the index of its scale; and the scale tensor's shape. */
export function scaleIndex(shape: readonly number[], g: Granularity): { index: Int32Array; scaleShape: number[] } {
  const count = shape.reduce((a, b) => a * b, 1);
  const index = new Int32Array(count);
  if (g.axis === undefined) return { index, scaleShape: [] };
  const axis = g.axis < 0 ? g.axis + shape.length : g.axis;
  if (axis < 0 || axis >= shape.length) throw new RangeError(`axis ${g.axis} is out of range for shape [${shape.join(',')}]`);
  const st = strides(shape);
  if (!g.blockSize) {
    for (let i = 0; i < count; i++) index[i] = Math.floor(i / st[axis]) % shape[axis];
    return { index, scaleShape: [shape[axis]] };
  }
  const scaleShape = shape.map((d, i) => (i === axis ? Math.ceil(d / g.blockSize!) : d));
  const sst = strides(scaleShape);
  for (let i = 0; i < count; i++) {
    let rest = i;
    let j = 0;
    for (let d = 0; d < shape.length; d++) {
      const c = Math.floor(rest / st[d]);
      rest -= c * st[d];
      j += (d === axis ? Math.floor(c / g.blockSize) : c) * sst[d];
    }
    index[i] = j;
  }
  return { index, scaleShape };
}

/**
 * Quantizes a float weight with min/max ranges per group (tensor, axis index or block). NaN or infinite
 * values are an error for the caller to name the weight in; this throws a RangeError.
 */
export function quantizeTensor(values: Float32Array, shape: readonly number[], spec: QuantSpec, g: Granularity = {}): QuantizedTensor {
  const { index, scaleShape } = scaleIndex(shape, g);
  const groups = scaleShape.reduce((a, b) => a * b, 1);
  const min = new Float64Array(groups).fill(Infinity);
  const max = new Float64Array(groups).fill(-Infinity);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new RangeError(`element ${i} is ${v}`);
    const k = index[i];
    if (v < min[k]) min[k] = v;
    if (v > max[k]) max[k] = v;
  }
  const [qmin, qmax] = qRange(spec);
  const scales = new Float32Array(groups);
  const zeroPoints = new Int32Array(groups);
  const sz: ScaleZero[] = [];
  for (let k = 0; k < groups; k++) {
    sz[k] = min[k] === Infinity ? { scale: 1, zeroPoint: 0 } : scaleZeroPoint(min[k], max[k], spec);
    scales[k] = sz[k].scale;
    zeroPoints[k] = sz[k].zeroPoint;
  }
  const q = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) q[i] = quantizeValue(values[i], sz[index[i]], qmin, qmax);
  return { spec, shape: [...shape], granularity: g, scaleShape, scales, zeroPoints, values: q };
}

/** x = (q - zeroPoint) * scale, element by element (DequantizeLinear). */
export function dequantizeTensor(t: QuantizedTensor): Float32Array {
  const { index } = scaleIndex(t.shape, t.granularity);
  const out = new Float32Array(t.values.length);
  for (let i = 0; i < out.length; i++) out[i] = (t.values[i] - t.zeroPoints[index[i]]) * t.scales[index[i]];
  return out;
}

/** Integers as the bytes of an ONNX int8/uint8 tensor. */
export function toBytes8(values: Int32Array, type: 'int8' | 'uint8'): Uint8Array {
  return type === 'int8' ? new Uint8Array(Int8Array.from(values).buffer) : Uint8Array.from(values);
}

/**
 * Packs 4-bit integers two to a byte, the first element in the low nibble (ONNX INT4/UINT4 raw_data, and
 * MatMulNBits' B). Signed values are stored in two's complement.
 */
export function packInt4(values: Int32Array | ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(values.length / 2));
  for (let i = 0; i < values.length; i++) out[i >> 1] |= (values[i] & 0x0f) << ((i & 1) * 4);
  return out;
}

/** The inverse of packInt4 for `count` elements. */
export function unpackInt4(bytes: Uint8Array, count: number, signed: boolean): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const n = (bytes[i >> 1] >> ((i & 1) * 4)) & 0x0f;
    out[i] = signed && n > 7 ? n - 16 : n;
  }
  return out;
}

/**
 * Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - test)^2). Infinity when equal;
 * -Infinity when the reference is all zeros and the test is not.
 */
export function sqnrDb(ref: ArrayLike<number>, test: ArrayLike<number>): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < ref.length; i++) {
    signal += ref[i] * ref[i];
    const d = ref[i] - test[i];
    noise += d * d;
  }
  if (noise === 0) return Infinity;
  return 10 * Math.log10(signal / noise);
}

/** SQNR per index of `axis` (per output channel of a weight). */
export function sqnrPerAxis(ref: Float32Array, test: Float32Array, shape: readonly number[], axis: number): Float64Array {
  const { index, scaleShape } = scaleIndex(shape, { axis });
  const signal = new Float64Array(scaleShape[0]);
  const noise = new Float64Array(scaleShape[0]);
  for (let i = 0; i < ref.length; i++) {
    signal[index[i]] += ref[i] * ref[i];
    const d = ref[i] - test[i];
    noise[index[i]] += d * d;
  }
  return signal.map((s, k) => (noise[k] === 0 ? Infinity : 10 * Math.log10(s / noise[k])));
}
