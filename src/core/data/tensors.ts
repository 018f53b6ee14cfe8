/** Element types, value conversion and sample shapes shared by every dataset source. */
import { InputError } from '../errors';
import { dtypeName, halfToFloat } from '../model/dtype';
import type { TensorData } from '../model/tensorRef';
import type { HostTensor, ModelInput, SampleDType } from './types';

/** How each element type a dataset can produce is stored and saturated. */
interface DTypeInfo {
  /** ONNX TensorProto.DataType code. */
  elemType: number;
  /** A zeroed array of n elements. */
  alloc: (n: number) => HostTensor['data'];
  /** Integer range values are rounded and clamped to; undefined for floating types. */
  range?: [number, number];
}

/** The element types a dataset can produce, with their ONNX codes and storage. */
export const sampleDTypes: Record<SampleDType, DTypeInfo> = {
  float32: { elemType: 1, alloc: (n) => new Float32Array(n) },
  float64: { elemType: 11, alloc: (n) => new Float64Array(n) },
  float16: { elemType: 10, alloc: (n) => new Uint16Array(n) },
  int64: { elemType: 7, alloc: (n) => new BigInt64Array(n), range: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER] },
  int32: { elemType: 6, alloc: (n) => new Int32Array(n), range: [-2147483648, 2147483647] },
  int8: { elemType: 3, alloc: (n) => new Int8Array(n), range: [-128, 127] },
  uint8: { elemType: 2, alloc: (n) => new Uint8Array(n), range: [0, 255] },
  bool: { elemType: 9, alloc: (n) => new Uint8Array(n), range: [0, 1] },
};

/** True for the floating-point element types (their image data is scaled to 0..1 by default). */
export function isFloat(dtype: SampleDType): boolean {
  return sampleDTypes[dtype].range === undefined;
}

/** The dataset element type for a model input; `where` names the file or spec in the error. */
export function dtypeOfInput(input: ModelInput, where: string | undefined): SampleDType {
  for (const [name, info] of Object.entries(sampleDTypes)) if (info.elemType === input.elemType) return name as SampleDType;
  throw new InputError(where, `input '${input.name}' has element type ${dtypeName(input.elemType)}, which a dataset cannot produce (it can produce ${Object.keys(sampleDTypes).join(', ')})`);
}

/** Checks a dtype name from a manifest or the user. */
export function parseDType(text: unknown, where: string, what: string): SampleDType {
  if (typeof text === 'string' && text in sampleDTypes) return text as SampleDType;
  throw new InputError(where, `${what}: unknown dtype ${JSON.stringify(text)} (one of ${Object.keys(sampleDTypes).join(', ')})`);
}

/** Converts a number to IEEE half-precision bits, rounding to nearest even. */
export function floatToHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal half: shift the mantissa (with its implicit bit) into place, rounding to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rest > mid || (rest === mid && half & 1) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa rolls into the exponent, which is exactly right (and gives Inf at the top).
  return sign | (rest > 0x1000 || (rest === 0x1000 && half & 1) ? half + 1 : half);
}

/** A writer of numbers into a fresh array of `dtype`: rounds and saturates integers, encodes float16. */
export function writerOf(dtype: SampleDType, n: number): { data: HostTensor['data']; set: (i: number, v: number) => void } {
  const info = sampleDTypes[dtype];
  const data = info.alloc(n);
  if (dtype === 'float16') {
    const d = data as Uint16Array;
    return { data, set: (i, v) => (d[i] = floatToHalf(v)) };
  }
  if (dtype === 'bool') {
    const d = data as Uint8Array;
    return { data, set: (i, v) => (d[i] = v !== 0 && !Number.isNaN(v) ? 1 : 0) };
  }
  if (!info.range) {
    const d = data as Float32Array;
    return { data, set: (i, v) => (d[i] = v) };
  }
  const [lo, hi] = info.range;
  // NaN becomes 0: an integer input has no way to say "not a number".
  const clamp = (v: number) => (Number.isNaN(v) ? 0 : Math.min(hi, Math.max(lo, Math.round(v))));
  if (dtype === 'int64') {
    const d = data as BigInt64Array;
    return { data, set: (i, v) => (d[i] = BigInt(clamp(v))) };
  }
  const d = data as Int32Array;
  return { data, set: (i, v) => (d[i] = clamp(v)) };
}

/** Reads element i of typed data of ONNX type `elemType` as a number (float16 bits decoded, int64 via Number). */
export function readerOf(elemType: number, data: TensorData | HostTensor['data']): (i: number) => number {
  if (elemType === 10) return (i) => halfToFloat((data as Uint16Array)[i]);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return (i) => Number(data[i]);
  const d = data as Float64Array;
  return (i) => d[i];
}

/** An affine map applied to every value: v * scale, then (v - mean) / std. */
export interface Affine {
  scale: number;
  mean: number;
  std: number;
}

/** The identity map. */
export const identity: Affine = { scale: 1, mean: 0, std: 1 };

/**
 * Converts typed data of ONNX type `elemType` to `dtype`, applying `affine`. Same-type data with the identity
 * map is copied exactly (int64 keeps every bit, float16 keeps its bits).
 */
export function convert(elemType: number, src: TensorData | HostTensor['data'], dtype: SampleDType, affine: Affine = identity): HostTensor['data'] {
  const n = src.length;
  const plain = affine.scale === 1 && affine.mean === 0 && affine.std === 1;
  if (plain && sampleDTypes[dtype].elemType === elemType) {
    const out = sampleDTypes[dtype].alloc(n);
    (out as Float32Array).set(src as Float32Array);
    return out;
  }
  const read = readerOf(elemType, src);
  const w = writerOf(dtype, n);
  if (plain) for (let i = 0; i < n; i++) w.set(i, read(i));
  else for (let i = 0; i < n; i++) w.set(i, (read(i) * affine.scale - affine.mean) / affine.std);
  return w.data;
}

/** True when a model dimension is unknown: a symbol, null, or a negative number (onnxruntime's -1). */
export function isSymbolic(d: number | string | null): boolean {
  return typeof d !== 'number' || d < 0;
}

/**
 * True when the model input's first axis is where samples stack: a symbolic first dim, or a fixed 1. A fixed 1
 * still stacks: the runtime decides whether the batch can be made dynamic, or runs one sample at a time.
 */
export function hasBatchAxis(shape: Array<number | string | null>): boolean {
  return shape.length >= 1 && (isSymbolic(shape[0]) || shape[0] === 1);
}

/**
 * The model input's shape for one sample: the batch axis becomes 1, other dims are the model's or those given
 * with `--shape`, and unknown dims stay undefined.
 */
export function sampleTarget(input: ModelInput, shapes: Record<string, number[]> | undefined, where: string | undefined): Array<number | undefined> {
  const given = shapes?.[input.name];
  const model = input.shape;
  if (given) {
    if (given.length !== model.length || given.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new InputError(where, `--shape for input '${input.name}' is [${given.join('x')}], the model's input has rank ${model.length} ([${model.map(dimText).join(', ')}])`);
    }
    model.forEach((d, i) => {
      if (i > 0 && !isSymbolic(d) && d !== given[i]) {
        throw new InputError(where, `--shape for input '${input.name}' gives dim ${i} as ${given[i]}, the model fixes it at ${d}`);
      }
    });
  }
  return model.map((d, i) => (i === 0 && hasBatchAxis(model) ? 1 : given ? given[i] : isSymbolic(d) ? undefined : (d as number)));
}

/** A model dimension as text for messages. */
export function dimText(d: number | string | null | undefined): string {
  return d === null || d === undefined ? '?' : String(d);
}

/** Product of dims. */
export function countOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The shape one sample of `natural` shape takes for a model input whose per-sample target is `target`:
 * the natural shape when it lines up with the target (a missing leading 1 is added), otherwise a reshape to
 * the target when the element counts agree (e.g. 28x28 pixels into [1, 784]). Throws naming `where` if neither.
 * `batched` lets a sample fill a symbolic batch axis with more than one (a TensorProto that is already a batch).
 */
export function fitSample(natural: number[], target: Array<number | undefined>, input: ModelInput, where: string, batched = false): number[] {
  const lined = natural.length === target.length ? natural : natural.length === target.length - 1 ? [1, ...natural] : undefined;
  const free = (i: number) => batched && i === 0 && isSymbolic(input.shape[0]);
  if (lined && lined.every((d, i) => target[i] === undefined || target[i] === d || free(i))) return lined;
  const count = countOf(natural);
  const unknown = target.filter((d) => d === undefined).length;
  const known = countOf(target.filter((d): d is number => d !== undefined));
  if (unknown === 0 && known === count) return target as number[];
  if (unknown === 1 && known > 0 && count % known === 0) return target.map((d) => d ?? count / known);
  throw new InputError(where, `a sample has shape [${natural.join(', ')}], which does not fit input '${input.name}' of shape [${input.shape.map(dimText).join(', ')}]`);
}
