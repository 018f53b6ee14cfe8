/**
 * NumPy .npy and .npz files: the header parsed here, samples read by offset along the first axis. Arrays in
 * an .npz saved by np.savez (stored) are read in place; np.savez_compressed entries are inflated once into
 * memory as raw bytes (deflate cannot be read from the middle).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import type { SampleInput, SampleSource } from './dataset';
import { convert, countOf, dtypeOfInput, fitSample, identity, sampleTarget, type Affine } from './tensors';
import type { DatasetOptions, ModelInput, SampleDType } from './types';
import { checkMethod, entryDataOffset, inflateEntry, looksLikeZip, readZipDirectory, type ZipEntry } from './zip';

/** npy type codes (byte order and kind letter stripped of '<'/'|') that hold numbers: ONNX code and size. */
const npyTypes: Record<string, { elemType: number; bytes: number; name: string }> = {
  f4: { elemType: 1, bytes: 4, name: 'float32' },
  f8: { elemType: 11, bytes: 8, name: 'float64' },
  f2: { elemType: 10, bytes: 2, name: 'float16' },
  i8: { elemType: 7, bytes: 8, name: 'int64' },
  i4: { elemType: 6, bytes: 4, name: 'int32' },
  i2: { elemType: 5, bytes: 2, name: 'int16' },
  i1: { elemType: 3, bytes: 1, name: 'int8' },
  u1: { elemType: 2, bytes: 1, name: 'uint8' },
  b1: { elemType: 9, bytes: 1, name: 'bool' },
};

/** Typed views of npy element types, by ONNX code. */
const views: Record<number, new (buf: ArrayBuffer, offset: number, length: number) => Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array> = {
  1: Float32Array, 11: Float64Array, 10: Uint16Array, 7: BigInt64Array, 6: Int32Array, 5: Int16Array, 3: Int8Array, 2: Uint8Array, 9: Uint8Array,
};

/** Random access to the bytes an array lives in: a region of a file, or memory. */
interface Bytes {
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  readSync(offset: number, length: number): Uint8Array;
}

/** A region of a file, read on demand. */
function fileBytes(file: string, base: number, size: number): Bytes {
  const check = (offset: number, length: number) => {
    if (offset + length > size) throw new InputError(file, `truncated: wanted ${length} bytes at offset ${offset}, only ${size} are there`);
  };
  return {
    size,
    readSync(offset, length) {
      check(offset, length);
      const buf = new Uint8Array(length);
      const fd = fs.openSync(file, 'r');
      try {
        if (fs.readSync(fd, buf, 0, length, base + offset) !== length) throw new InputError(file, 'file ended early (was it changed while being read?)');
      } finally {
        fs.closeSync(fd);
      }
      return buf;
    },
    async read(offset, length) {
      check(offset, length);
      const buf = new Uint8Array(length);
      const fh = await fs.promises.open(file, 'r');
      try {
        const { bytesRead } = await fh.read(buf, 0, length, base + offset);
        if (bytesRead !== length) throw new InputError(file, 'file ended early (was it changed while being read?)');
      } finally {
        await fh.close();
      }
      return buf;
    },
  };
}

/** Bytes already in memory. */
function memoryBytes(buf: Uint8Array, file: string): Bytes {
  const get = (offset: number, length: number) => {
    if (offset + length > buf.length) throw new InputError(file, `truncated: wanted ${length} bytes at offset ${offset}, only ${buf.length} are there`);
    return buf.subarray(offset, offset + length);
  };
  return { size: buf.length, readSync: get, read: async (o, l) => get(o, l) };
}

/** An opened npy array: its element type, shape, and where its data starts. */
export interface NpyArray {
  /** For messages: the file, or `file.npz:key`. */
  where: string;
  elemType: number;
  shape: number[];
  dataOffset: number;
  bytes: Bytes;
}

/** Parses an npy header (format versions 1 to 3) and checks that the data is all there. */
function parseNpy(bytes: Bytes, where: string): NpyArray {
  const head = bytes.readSync(0, Math.min(bytes.size, 12));
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (head.length < 10 || magic.some((b, i) => head[i] !== b)) throw new InputError(where, 'not an .npy array (bad magic string)');
  const major = head[6];
  if (major < 1 || major > 3) throw new InputError(where, `.npy format version ${major} is not supported (1 to 3 are)`);
  const wide = major >= 2;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const headerLength = wide ? view.getUint32(8, true) : view.getUint16(8, true);
  const start = wide ? 12 : 10;
  const text = Buffer.from(bytes.readSync(start, headerLength)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new InputError(where, `.npy header is not understood (it must be a dict with 'descr', 'fortran_order' and 'shape'): ${text.trim().slice(0, 120)}`);
  }
  const type = npyTypes[descr.slice(1)];
  const order = descr[0];
  if (!type || !'<>|='.includes(order)) {
    throw new InputError(where, `non-numeric or unsupported dtype '${descr}' (numeric dtypes: ${Object.values(npyTypes).map((t) => t.name).join(', ')})`);
  }
  if (order === '>' && type.bytes > 1) throw new InputError(where, `big-endian dtype '${descr}'; save the array little-endian (arr.astype('<${descr.slice(1)}'))`);
  if (fortran === 'True') throw new InputError(where, 'array is in Fortran order; save it C-contiguous (np.ascontiguousarray)');
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new InputError(where, `.npy header has an invalid shape (${shapeText})`);
  const dataOffset = start + headerLength;
  const need = countOf(shape) * type.bytes;
  if (bytes.size < dataOffset + need) throw new InputError(where, `truncated: shape [${shape.join(', ')}] of ${type.name} needs ${need} bytes, the file has ${bytes.size - dataOffset}`);
  return { where, elemType: type.elemType, shape, dataOffset, bytes };
}

/** Opens a .npy file's header; the data stays in the file. */
export function openNpy(file: string): NpyArray {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    throw new InputError(file, '.npy file is missing or unreadable');
  }
  return parseNpy(fileBytes(file, 0, size), file);
}

/** The arrays of an .npz archive by key (entry name without .npy), in archive order. */
export function openNpz(file: string): Map<string, NpyArray> {
  const arrays = new Map<string, NpyArray>();
  for (const entry of readZipDirectory(file)) {
    if (entry.name.endsWith('/')) continue;
    if (!entry.name.endsWith('.npy')) throw new InputError(file, `.npz entry '${entry.name}' is not an .npy array`);
    const key = entry.name.slice(0, -4);
    arrays.set(key, parseNpy(entryBytes(file, entry), `${file}:${key}`));
  }
  return arrays;
}

function entryBytes(file: string, entry: ZipEntry): Bytes {
  checkMethod(file, entry);
  if (entry.method === 0) return fileBytes(file, entryDataOffset(file, entry), entry.size);
  return memoryBytes(inflateEntry(file, entry), file);
}

/** One sample (index along the first axis) as a typed array of the array's element type. */
async function npySample(a: NpyArray, index: number) {
  const per = countOf(a.shape.slice(1));
  const type = Object.values(npyTypes).find((t) => t.elemType === a.elemType)!;
  const raw = await a.bytes.read(a.dataOffset + index * per * type.bytes, per * type.bytes);
  // Typed views need aligned offsets: a fresh copy when the bytes sit unaligned in memory.
  const aligned = raw.byteOffset % type.bytes === 0 ? raw : raw.slice();
  return new views[a.elemType](aligned.buffer as ArrayBuffer, aligned.byteOffset, per);
}

/** A model input fed from an array's first axis, each sample fitted to the input's shape and converted to its dtype. */
export function npyInput(input: ModelInput, a: NpyArray, o: { affine?: Affine; dtype?: SampleDType; shapes?: DatasetOptions['shapes'] } = {}): { input: SampleInput; count: number } {
  if (a.shape.length === 0) throw new InputError(a.where, 'a 0-d array has no sample axis; the first axis must count the samples');
  const shape = fitSample(a.shape.slice(1), sampleTarget(input, o.shapes, a.where), input, a.where);
  const dtype = o.dtype ?? dtypeOfInput(input, a.where);
  return {
    count: a.shape[0],
    input: {
      name: input.name,
      read: async (i) => ({ dtype, shape, data: convert(a.elemType, await npySample(a, i), dtype, o.affine ?? identity) }),
      where: () => a.where,
    },
  };
}

/** The sample count that per-sample inputs share, or an error naming both files. */
export function sameCount(parts: Array<{ input: SampleInput; count: number; where: string }>): number {
  const count = parts[0].count;
  const other = parts.find((p) => p.count !== count);
  if (other) throw new InputError(other.where, `has ${other.count} samples, ${parts[0].where} has ${count}`);
  return count;
}

/** The .npy form: one array whose first axis counts samples, for a single-input model. */
export async function openNpyFile(file: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  if (inputs.length !== 1) {
    throw new InputError(file, `an .npy file feeds single-input models only; this model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); use an .npz with one array per input name`);
  }
  const { input, count } = npyInput(inputs[0], openNpy(file), { shapes: opts.shapes });
  return { description: `npy ${path.basename(file)}`, count, inputs: [input], where: file };
}

/** The .npz form: one array per model input, keyed by input name (a lone array feeds a lone input). */
export async function openNpzFile(file: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  const arrays = openNpz(file);
  const pairs = npzPairs(file, arrays, inputs);
  const parts = pairs.map(([model, a]) => ({ ...npyInput(model, a, { shapes: opts.shapes }), where: a.where }));
  const count = sameCount(parts);
  return { description: `npz ${path.basename(file)}`, count, inputs: parts.map((p) => p.input), where: file };
}

/** Matches .npz keys to model inputs, loudly. */
function npzPairs(file: string, arrays: Map<string, NpyArray>, inputs: ModelInput[]): Array<[ModelInput, NpyArray]> {
  if (arrays.size === 0) throw new InputError(file, 'the dataset is empty: the .npz holds no arrays');
  if (arrays.size === 1 && inputs.length === 1) return [[inputs[0], [...arrays.values()][0]]];
  const names = inputs.map((i) => i.name);
  for (const key of arrays.keys()) {
    if (!names.includes(key)) throw new InputError(file, `array '${key}' is not an input of the model (its inputs: ${names.join(', ')})`);
  }
  return inputs.map((i) => {
    const a = arrays.get(i.name);
    if (!a) throw new InputError(file, `has no array for model input '${i.name}' (its arrays: ${[...arrays.keys()].join(', ')})`);
    return [i, a];
  });
}

/** For a manifest: the array an .npy file holds, or the one an .npz holds for `input` (by name, or its only array). */
export function arrayFor(file: string, input: ModelInput): NpyArray {
  const head = Buffer.alloc(4);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw new InputError(file, 'file is missing or unreadable');
  }
  try {
    fs.readSync(fd, head, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (!looksLikeZip(head)) return openNpy(file);
  const arrays = openNpz(file);
  const a = arrays.get(input.name) ?? (arrays.size === 1 ? [...arrays.values()][0] : undefined);
  if (!a) throw new InputError(file, `has no array named '${input.name}' (its arrays: ${[...arrays.keys()].join(', ')})`);
  return a;
}
