import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TensorProto } from 'onnx-buf';
import { InputError } from '../../errors';
import { bfloat16ToFloat, dtypeBytes, halfToFloat } from '../../model/dtype';

/** Shape of a tensor as plain numbers. */
export function tensorShape(t: TensorProto): number[] {
  return t.dims.map((d) => Number(d));
}

/** Number of elements in a tensor. */
export function tensorCount(t: TensorProto): number {
  return tensorShape(t).reduce((a, b) => a * b, 1);
}

/** Bytes the tensor's elements occupy, packed. */
export function tensorBytes(t: TensorProto): number {
  return dtypeBytes(t.dataType, tensorCount(t));
}

/** Where an external tensor's bytes live, from its external_data entries. */
export function externalLocation(t: TensorProto): { location: string; offset: number; length?: number } | undefined {
  if (t.dataLocation !== 1) return undefined;
  const kv = new Map(t.externalData.map((e) => [e.key, e.value]));
  const location = kv.get('location');
  if (!location) return undefined;
  const length = kv.get('length');
  return { location, offset: Number(kv.get('offset') ?? 0), length: length === undefined ? undefined : Number(length) };
}

/** Raw little-endian bytes of a tensor stored as raw_data or in an external file; undefined for typed fields. */
function rawBytes(t: TensorProto, modelDir: string): Uint8Array | undefined {
  const ext = externalLocation(t);
  if (ext) {
    const file = path.resolve(modelDir, ext.location);
    if (path.relative(modelDir, file).startsWith('..')) throw new InputError(file, `external data for '${t.name}' points outside the model folder`);
    const length = ext.length ?? tensorBytes(t);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      throw new InputError(file, `missing external data file for tensor '${t.name}'`);
    }
    try {
      const buf = Buffer.alloc(length);
      const got = fs.readSync(fd, buf, 0, length, ext.offset);
      if (got !== length) throw new InputError(file, `external data for '${t.name}' is truncated (wanted ${length} bytes at offset ${ext.offset}, got ${got})`);
      return buf;
    } finally {
      fs.closeSync(fd);
    }
  }
  return t.rawData.byteLength > 0 ? t.rawData : undefined;
}

/**
 * A tensor's values as numbers, for statistics. Returns undefined for element types that have no numeric
 * meaning here (string, complex, sub-byte floats).
 */
export function tensorValues(t: TensorProto, modelDir: string): ArrayLike<number> | undefined {
  const count = tensorCount(t);
  const raw = rawBytes(t, modelDir);
  if (raw) {
    const need = tensorBytes(t);
    if (raw.byteLength < need) throw new InputError(undefined, `tensor '${t.name}' has ${raw.byteLength} bytes of data, its shape needs ${need}`);
    // Copy into an aligned buffer: raw_data views into the file can start at any byte offset.
    const buf = Uint8Array.prototype.slice.call(raw, 0, need).buffer;
    switch (t.dataType) {
      case 1: return new Float32Array(buf);
      case 2: return new Uint8Array(buf);
      case 3: return new Int8Array(buf);
      case 4: return new Uint16Array(buf);
      case 5: return new Int16Array(buf);
      case 6: return new Int32Array(buf);
      case 7: return Float64Array.from(new BigInt64Array(buf), Number);
      case 9: return new Uint8Array(buf);
      case 10: return Float64Array.from(new Uint16Array(buf), halfToFloat);
      case 11: return new Float64Array(buf);
      case 12: return new Uint32Array(buf);
      case 13: return Float64Array.from(new BigUint64Array(buf), Number);
      case 16: return Float64Array.from(new Uint16Array(buf), bfloat16ToFloat);
      case 21:
      case 22: {
        const bytes = new Uint8Array(buf);
        const out = new Float64Array(count);
        for (let i = 0; i < count; i++) {
          const nib = (bytes[i >> 1] >> ((i & 1) * 4)) & 0xf;
          out[i] = t.dataType === 22 && nib > 7 ? nib - 16 : nib;
        }
        return out;
      }
      default: return undefined;
    }
  }
  switch (t.dataType) {
    case 1: return Float32Array.from(t.floatData);
    case 11: return Float64Array.from(t.doubleData);
    case 7: return Float64Array.from(t.int64Data, Number);
    case 13: return Float64Array.from(t.uint64Data, Number);
    case 10: return Float64Array.from(t.int32Data, halfToFloat);
    case 16: return Float64Array.from(t.int32Data, bfloat16ToFloat);
    case 2: case 3: case 4: case 5: case 6: case 9: return Int32Array.from(t.int32Data);
    default: return undefined;
  }
}
