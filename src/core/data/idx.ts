/** MNIST-style idx files (optionally gzipped): the images-file source form, and idx inputs and labels for manifests. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { InputError } from '../errors';
import type { SampleInput, SampleSource } from './dataset';
import { convert, countOf, dtypeOfInput, fitSample, identity, sampleTarget, type Affine } from './tensors';
import type { DatasetOptions, ModelInput, SampleDType } from './types';

/** idx element types by their magic-number type byte: size, ONNX code, and a big-endian reader. */
const idxTypes: Record<number, { name: string; bytes: number; elemType: number; make: (n: number) => Int8Array | Int16Array | Int32Array | Float32Array | Float64Array | undefined; get: (v: DataView, o: number) => number }> = {
  0x08: { name: 'ubyte', bytes: 1, elemType: 2, make: () => undefined, get: (v, o) => v.getUint8(o) },
  0x09: { name: 'sbyte', bytes: 1, elemType: 3, make: (n) => new Int8Array(n), get: (v, o) => v.getInt8(o) },
  0x0b: { name: 'short', bytes: 2, elemType: 5, make: (n) => new Int16Array(n), get: (v, o) => v.getInt16(o) },
  0x0c: { name: 'int', bytes: 4, elemType: 6, make: (n) => new Int32Array(n), get: (v, o) => v.getInt32(o) },
  0x0d: { name: 'float', bytes: 4, elemType: 1, make: (n) => new Float32Array(n), get: (v, o) => v.getFloat32(o) },
  0x0e: { name: 'double', bytes: 8, elemType: 11, make: (n) => new Float64Array(n), get: (v, o) => v.getFloat64(o) },
};

/** An idx file read into memory (idx data sets are small; gzipped ones must be inflated whole anyway). */
export interface IdxFile {
  file: string;
  /** The magic number's type byte. */
  type: number;
  dims: number[];
  bytes: Uint8Array;
  /** Where the data starts in `bytes`. */
  offset: number;
}

/** True when bytes start like an idx file or a gzip stream (the caller's name check decides which). */
export function looksLikeIdx(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0 && head[1] === 0 && head[2] in idxTypes && head[3] >= 1;
}

/** Reads an idx file (gzipped or not, told apart by content), checking its magic number and size. */
export function readIdx(file: string, kind: 'images' | 'labels'): IdxFile {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new InputError(file, `idx ${kind} file is missing or unreadable`);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (err) {
      throw new InputError(file, `corrupt gzip stream: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const expected = kind === 'images' ? '0x00000803 (ubyte, 3 dims)' : '0x00000801 (ubyte, 1 dim)';
  if (!looksLikeIdx(bytes)) {
    const magic = bytes.length >= 4 ? `0x${Buffer.from(bytes.subarray(0, 4)).toString('hex')}` : `${bytes.length} bytes`;
    throw new InputError(file, `not an idx file: bad magic number ${magic}, expected ${expected}`);
  }
  const ndims = bytes[3];
  if ((kind === 'labels') !== (ndims === 1) || (kind === 'images' && ndims < 2)) {
    throw new InputError(file, `an idx ${kind} file with ${ndims} dims; expected ${expected}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offset = 4 + 4 * ndims;
  if (bytes.length < offset) throw new InputError(file, 'idx header is truncated');
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i));
  const type = idxTypes[bytes[2]];
  const need = offset + countOf(dims) * type.bytes;
  if (bytes.length !== need) throw new InputError(file, `idx data is ${bytes.length - offset} bytes, dims [${dims.join(', ')}] of ${type.name} need ${need - offset}${bytes.length < need ? ' (truncated)' : ''}`);
  return { file, type: bytes[2], dims, bytes, offset };
}

/** Values of samples [start, start + count) in the file's element type (a view for ubyte; big-endian decoded otherwise). */
function idxValues(idx: IdxFile, start: number, count: number) {
  const type = idxTypes[idx.type];
  const from = idx.offset + start * type.bytes;
  const out = type.make(count);
  if (!out) return idx.bytes.subarray(from, from + count);
  const view = new DataView(idx.bytes.buffer, idx.bytes.byteOffset, idx.bytes.byteLength);
  for (let i = 0; i < count; i++) out[i] = type.get(view, from + i * type.bytes);
  return out;
}

/** Class labels from an idx labels file. */
export function idxLabels(file: string): Int32Array {
  const idx = readIdx(file, 'labels');
  if (idx.type === 0x0d || idx.type === 0x0e) throw new InputError(file, 'idx labels must be integers, this file holds floating-point values');
  return Int32Array.from(idxValues(idx, 0, idx.dims[0]));
}

/**
 * A model input fed from an idx images file: each sample is the file's per-item block (e.g. 28x28), reshaped
 * to the model input ([1,1,28,28] or [1,784]) and converted to its dtype; raw values unless `affine` says otherwise.
 */
export function idxInput(input: ModelInput, file: string, o: { affine?: Affine; dtype?: SampleDType; shapes?: DatasetOptions['shapes'] } = {}): { input: SampleInput; count: number } {
  const idx = readIdx(file, 'images');
  const natural = idx.dims.slice(1);
  const shape = fitSample(natural, sampleTarget(input, o.shapes, file), input, file);
  const dtype = o.dtype ?? dtypeOfInput(input, file);
  const per = countOf(natural);
  const elemType = idxTypes[idx.type].elemType;
  return {
    count: idx.dims[0],
    input: {
      name: input.name,
      read: async (i) => ({ dtype, shape, data: convert(elemType, idxValues(idx, i * per, per), dtype, o.affine ?? identity) }),
      where: () => file,
    },
  };
}

/** The labels file that goes with an images file: `X-images-idx3-ubyte[.gz]` -> `X-labels-idx1-ubyte[.gz]`, gzipped or not. */
export function labelsBeside(imagesFile: string): { candidates: string[]; found?: string } {
  const dir = path.dirname(imagesFile);
  const base = path.basename(imagesFile);
  const named = base.replace(/images([-.])idx3/i, 'labels$1idx1');
  if (named === base) return { candidates: [] };
  const plain = named.replace(/\.gz$/i, '');
  const candidates = [named, named === plain ? `${plain}.gz` : plain].map((n) => path.join(dir, n));
  return { candidates, found: candidates.find((f) => fs.existsSync(f)) };
}

/** The idx form: an images file for a single-input model, with its labels file found beside it. */
export async function openIdx(file: string, inputs: ModelInput[], opts: DatasetOptions): Promise<SampleSource> {
  if (inputs.length !== 1) {
    throw new InputError(file, `an idx images file feeds single-input models only; this model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); describe them in a *.dataset.json manifest`);
  }
  const { input, count } = idxInput(inputs[0], file, { shapes: opts.shapes });
  const beside = labelsBeside(file);
  const warnings: string[] = [];
  let labels: Int32Array | undefined;
  if (beside.found) {
    labels = idxLabels(beside.found);
    if (labels.length !== count) throw new InputError(beside.found, `has ${labels.length} labels, ${path.basename(file)} has ${count} images`);
  } else {
    warnings.push(`no labels file beside ${file} (looked for ${beside.candidates.map((c) => path.basename(c)).join(' and ') || 'a *-labels-idx1-ubyte file'}); the samples are unlabelled`);
  }
  return { description: `mnist idx ${path.basename(file)}`, count, inputs: [input], labels, warnings, where: file };
}
