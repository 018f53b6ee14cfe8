import * as ort from 'onnxruntime-node';
import type { HostTensor, SampleDType } from '../data/types';
import { InputError } from '../errors';
import { halfToFloat } from '../model/dtype';
import type { TensorRef } from '../model/tensorRef';

/** ONNX element type codes to onnxruntime's type names (the types its JS API can carry). */
export const ortTypeOf: Record<number, SampleDType | 'int16' | 'uint16' | 'uint32' | 'uint64'> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64',
};

/** A host tensor as an onnxruntime tensor (no copy). */
export function toOrt(t: HostTensor): ort.Tensor {
  return new ort.Tensor(t.dtype, t.data as never, t.shape);
}

/** An onnxruntime tensor as a host tensor (no copy). */
export function fromOrt(t: ort.Tensor): HostTensor {
  return { dtype: t.type as SampleDType, shape: [...t.dims], data: t.data as HostTensor['data'] };
}

/** A weight as an onnxruntime tensor, for feeding weights as graph inputs. */
export function weightTensor(ref: TensorRef): ort.Tensor {
  const type = ortTypeOf[ref.dtype];
  if (!type) throw new InputError(ref.source, `weight '${ref.name}' has element type ${ref.dtypeName}, which onnxruntime's JS API cannot feed`);
  const data = ref.read();
  // onnxruntime-node rejects shared memory ("Invalid argument" at run()); big models are read into a SharedArrayBuffer.
  const owned = typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer ? data.slice() : data;
  return new ort.Tensor(type, owned as never, ref.shape);
}

/** Float32 values of any numeric output (float16 bits decoded), for metrics. */
export function outputFloats(t: ort.Tensor): Float32Array {
  const d = t.data;
  if (d instanceof Float32Array) return d;
  if (t.type === 'float16') {
    const bits = d as Uint16Array;
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]);
    return out;
  }
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Float32Array.from(d, Number);
  if (Array.isArray(d)) throw new Error(`output of type ${t.type} is not numeric`);
  return Float32Array.from(d as ArrayLike<number>);
}

