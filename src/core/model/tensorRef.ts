import { InputError } from '../errors';
import { bfloat16ToFloat, dtypeBytes, dtypeName, halfToFloat } from './dtype';
import type { ExternalFiles } from './externalFiles';

/** Where a tensor's bytes live. */
export type TensorStorage =
  /** Little-endian bytes: a view into the model file's buffer (raw_data), never a copy. */
  | { kind: 'bytes'; bytes: Uint8Array }
  /** Values in a typed protobuf field (float_data, int32_data, int64_data, double_data, uint64_data). */
  | { kind: 'values'; values: ArrayLike<number> | ArrayLike<bigint> }
  /** A region of an external data file, read on demand. */
  | { kind: 'external'; file: string; offset: number; length: number; files: ExternalFiles };

/** Typed arrays a tensor can be read as. */
export type TensorData = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

const views: Record<number, { ctor: { new (buf: ArrayBufferLike, offset: number, length: number): TensorData; BYTES_PER_ELEMENT: number } }> = {
  1: { ctor: Float32Array }, 2: { ctor: Uint8Array }, 3: { ctor: Int8Array }, 4: { ctor: Uint16Array }, 5: { ctor: Int16Array },
  6: { ctor: Int32Array }, 7: { ctor: BigInt64Array }, 9: { ctor: Uint8Array }, 10: { ctor: Uint16Array }, 11: { ctor: Float64Array },
  12: { ctor: Uint32Array }, 13: { ctor: BigUint64Array }, 16: { ctor: Uint16Array },
  // Sub-byte and 8-bit float types are read as their packed bytes.
  17: { ctor: Uint8Array }, 18: { ctor: Uint8Array }, 19: { ctor: Uint8Array }, 20: { ctor: Uint8Array },
  21: { ctor: Uint8Array }, 22: { ctor: Uint8Array }, 23: { ctor: Uint8Array }, 24: { ctor: Uint8Array }, 25: { ctor: Uint8Array }, 26: { ctor: Uint8Array },
};

const subByte = new Set([21, 22, 23, 25, 26]);

/** Element types `chunks()` can convert to float32. */
const numericTypes = new Set([1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 21, 22]);

/**
 * A format-neutral reference to a tensor: element type, shape, and where its bytes live. Nothing is read
 * until `read()` (or `toFloat32()`/`chunks()`) is called, and reading raw bytes returns a view, not a copy,
 * whenever the bytes are aligned for the element type.
 */
export class TensorRef {
  constructor(
    /** The tensor's name in its graph. */
    readonly name: string,
    /** ONNX TensorProto.DataType code (TF.js dtypes map onto the same codes). */
    readonly dtype: number,
    readonly shape: number[],
    readonly storage: TensorStorage,
    /** The file the tensor belongs to, for error messages. */
    readonly source?: string,
  ) {}

  /** Element type name, e.g. 'float32'. */
  get dtypeName(): string {
    return dtypeName(this.dtype);
  }

  /** True when the values can be converted to numbers (not strings, complex or 8-bit floats). */
  get numeric(): boolean {
    return numericTypes.has(this.dtype);
  }

  /** Number of elements. */
  get count(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Bytes the elements take when packed. */
  get byteLength(): number {
    return dtypeBytes(this.dtype, this.count);
  }

  /** Checks, without reading data, that the stored size matches the shape; throws an InputError if not. */
  validate(): void {
    const s = this.storage;
    if (this.dtype === 8) return; // strings have no fixed size
    const have = s.kind === 'bytes' ? s.bytes.byteLength : s.kind === 'external' ? s.length : undefined;
    if (have !== undefined && have !== this.byteLength) {
      throw new InputError(this.source, `tensor '${this.name}' holds ${have} bytes, its shape [${this.shape}] of ${this.dtypeName} needs ${this.byteLength}`);
    }
    if (s.kind === 'values') {
      const need = subByte.has(this.dtype) ? this.byteLength : this.count;
      if (s.values.length !== need) throw new InputError(this.source, `tensor '${this.name}' holds ${s.values.length} values, its shape [${this.shape}] needs ${need}`);
    }
  }

  /** The raw little-endian bytes (raw_data or external); undefined for typed-field storage. */
  bytes(): Uint8Array | undefined {
    const s = this.storage;
    if (s.kind === 'bytes') return s.bytes;
    if (s.kind === 'external') return s.files.read(s.file, s.offset, s.length, this.name);
    return undefined;
  }

  /**
   * The values as a typed array of the element type: Float32Array for float32, Uint16Array of bit patterns
   * for float16 and bfloat16, BigInt64Array for int64, packed bytes for 4-bit types. A view, not a copy,
   * when the raw bytes are aligned.
   */
  read(): TensorData {
    const view = views[this.dtype];
    if (!view) throw new InputError(this.source, `tensor '${this.name}' has element type ${this.dtypeName}, which cannot be read as numbers`);
    const s = this.storage;
    const count = subByte.has(this.dtype) ? this.byteLength : this.count;
    if (s.kind === 'values') return typedFieldValues(this, s.values, count);
    const raw = this.bytes()!;
    const need = count * view.ctor.BYTES_PER_ELEMENT;
    if (raw.byteLength < need) throw new InputError(this.source, `tensor '${this.name}' holds ${raw.byteLength} bytes, its shape [${this.shape}] needs ${need}`);
    if (raw.byteOffset % view.ctor.BYTES_PER_ELEMENT === 0) return new view.ctor(raw.buffer, raw.byteOffset, count);
    // Unaligned within the file buffer: one copy is unavoidable for a typed view.
    // (Uint8Array's slice copies; a Buffer's slice would be a view.)
    const copy = Uint8Array.prototype.slice.call(raw, 0, need);
    return new view.ctor(copy.buffer, 0, count);
  }

  /** The values converted to float32 (float16, bfloat16, int4/uint4, integers and float64 included). */
  toFloat32(): Float32Array {
    const out = new Float32Array(this.count);
    let i = 0;
    for (const chunk of this.chunks(1 << 20)) {
      out.set(chunk, i);
      i += chunk.length;
    }
    return out;
  }

  /** int64/uint64 values as numbers; throws when one is beyond ±2^53 and would lose precision. */
  toNumbers(): number[] {
    const data = this.read();
    const out = new Array<number>(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (typeof v === 'bigint') {
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new InputError(this.source, `tensor '${this.name}' element ${i} (${v}) does not fit a JavaScript number`);
        }
        out[i] = Number(v);
      } else out[i] = v;
    }
    return out;
  }

  /**
   * The values as float32, in chunks of at most `size` elements, for statistics over big tensors without a
   * full-size copy: aligned float32 bytes are yielded as views, anything else is copied or converted one chunk
   * at a time (external data is read from its file a chunk at a time). A chunk is valid until the next one.
   * `start` and `end` select an element range, so that workers can share one big tensor.
   */
  *chunks(size = 1 << 20, start = 0, end = this.count): Generator<Float32Array> {
    const n = Math.min(end, this.count);
    const s = this.storage;
    const view = views[this.dtype];
    if (s.kind === 'values' || subByte.has(this.dtype) || !view) {
      const data = this.read();
      if (data instanceof Float32Array) {
        for (let i = start; i < n; i += size) yield data.subarray(i, Math.min(n, i + size));
        return;
      }
      const out = new Float32Array(Math.max(0, Math.min(size, n - start)));
      const convert = converter(this.dtype, data, this);
      for (let i = start; i < n; i += size) {
        const len = Math.min(size, n - i);
        for (let j = 0; j < len; j++) out[j] = convert(i + j);
        yield len === out.length ? out : out.subarray(0, len);
      }
      return;
    }
    const bpe = view.ctor.BYTES_PER_ELEMENT;
    if (s.kind === 'bytes' && s.bytes.byteLength < this.count * bpe) {
      throw new InputError(this.source, `tensor '${this.name}' holds ${s.bytes.byteLength} bytes, its shape [${this.shape}] needs ${this.count * bpe}`);
    }
    if (s.kind === 'bytes' && this.dtype === 1 && s.bytes.byteOffset % 4 === 0) {
      const all = new Float32Array(s.bytes.buffer, s.bytes.byteOffset, this.count);
      for (let i = start; i < n; i += size) yield all.subarray(i, Math.min(n, i + size));
      return;
    }
    const scratch = new Uint8Array(Math.max(0, Math.min(size, n - start)) * bpe);
    const out = this.dtype === 1 ? undefined : new Float32Array(Math.max(0, Math.min(size, n - start)));
    for (let i = start; i < n; i += size) {
      const len = Math.min(size, n - i);
      const piece = scratch.subarray(0, len * bpe);
      if (s.kind === 'bytes') piece.set(s.bytes.subarray(i * bpe, (i + len) * bpe));
      else s.files.readInto(s.file, s.offset + i * bpe, piece, this.name);
      const typed = new view.ctor(scratch.buffer, 0, len);
      if (!out) {
        yield typed as Float32Array;
        continue;
      }
      const convert = converter(this.dtype, typed, this);
      for (let j = 0; j < len; j++) out[j] = convert(j);
      yield len === out.length ? out : out.subarray(0, len);
    }
  }
}

function converter(dtype: number, data: TensorData, t: TensorRef): (i: number) => number {
  switch (dtype) {
    case 10: return (i) => halfToFloat((data as Uint16Array)[i]);
    case 16: return (i) => bfloat16ToFloat((data as Uint16Array)[i]);
    case 21: return (i) => ((data as Uint8Array)[i >> 1] >> ((i & 1) * 4)) & 0xf;
    case 22: return (i) => {
      const nib = ((data as Uint8Array)[i >> 1] >> ((i & 1) * 4)) & 0xf;
      return nib > 7 ? nib - 16 : nib;
    };
    case 7:
    case 13: return (i) => Number((data as BigInt64Array)[i]);
    case 1: case 2: case 3: case 4: case 5: case 6: case 9: case 11: case 12:
      return (i) => (data as Float64Array)[i];
    default:
      throw new InputError(t.source, `tensor '${t.name}' has element type ${dtypeName(dtype)}, which cannot be converted to float32`);
  }
}

/** Values from a typed protobuf field, in the element type's typed array (ONNX packs fp16/bf16 bits and small ints into int32_data). */
function typedFieldValues(t: TensorRef, values: ArrayLike<number> | ArrayLike<bigint>, count: number): TensorData {
  if (values.length < count) throw new InputError(t.source, `tensor '${t.name}' holds ${values.length} values, its shape [${t.shape}] needs ${count}`);
  const v = values as ArrayLike<number>;
  switch (t.dtype) {
    case 1: return Float32Array.from(v);
    case 11: return Float64Array.from(v);
    case 7: return BigInt64Array.from(values as ArrayLike<bigint>);
    case 13: return BigUint64Array.from(values as ArrayLike<bigint>);
    case 12: return Uint32Array.from(values as ArrayLike<bigint>, Number);
    case 10: case 16: case 4: return Uint16Array.from(v);
    case 5: return Int16Array.from(v);
    case 6: return Int32Array.from(v);
    case 3: return Int8Array.from(v);
    default: return Uint8Array.from(v); // uint8, bool, 8-bit floats, packed 4-bit pairs
  }
}
