import * as path from 'node:path';
import { writeFileAtomic } from '../../atomicWrite';
import { InputError } from '../../errors';
import { sha256File } from '../../hash';
import { sqnrDb } from '../../passes/quantize/math';
import { floatToHalf } from '../../data/tensors';
import { version } from '../../version';
import { dequantize, type TfjsModel, type TfjsQuantization, type TfjsWeightSpec } from './read';

/** The stored forms TF.js loaders understand for float weights: float32, float16, or uint8/uint16 affine per tensor. */
export type TfjsEncoding = 'float32' | 'float16' | 'uint8' | 'uint16';

/** TF.js's own default shard size (the Python converter's 4 MB). */
export const defaultShardBytes = 4 * 1024 * 1024;

/** How to write a TF.js model. */
export interface TfjsWriteOptions {
  /** Bytes per shard file (default 4 MB); weights are laid end to end and may span shards, as TF.js allows. */
  shardBytes?: number;
  /** Stored form per weight name; weights not named keep their stored bytes (or float32 when their values change). */
  encodings?: Record<string, TfjsEncoding>;
  /** New float values per weight name (a pass's output); others keep the source's. */
  values?: Map<string, Float32Array>;
  /** Shard file name prefix (default 'group1-shard'). */
  shardPrefix?: string;
}

/** One written weight: its stored form, bytes, and the error of that form against the float values it encodes. */
export interface TfjsWrittenWeight {
  name: string;
  encoding: TfjsEncoding | 'kept';
  bytes: number;
  /** SQNR (dB) of the dequantized stored values against the values given; Infinity when exact. */
  sqnrDb?: number;
}

/** What writeTfjs wrote. */
export interface TfjsWriteResult {
  file: string;
  shards: Array<{ file: string; bytes: number }>;
  weights: TfjsWrittenWeight[];
}

/**
 * Writes a TF.js model: shards first, then model.json, each atomically. The model's JSON is kept whole but
 * for its weightsManifest (one group) and a `whittle` provenance entry. Never writes over the source's
 * model.json or shards.
 */
export function writeTfjs(model: TfjsModel, outFile: string, opts: TfjsWriteOptions = {}): TfjsWriteResult {
  const out = path.resolve(outFile);
  const dir = path.dirname(out);
  const shardBytes = opts.shardBytes ?? defaultShardBytes;
  if (!Number.isSafeInteger(shardBytes) || shardBytes < 1) throw new InputError(undefined, `shard size must be a positive whole number of bytes, not ${shardBytes}`);
  const { specs, data: all, weights: written } = encodeTfjs(model, opts);
  const total = all.byteLength;
  const count = Math.max(1, Math.ceil(total / shardBytes));
  const prefix = opts.shardPrefix ?? 'group1-shard';
  const names = Array.from({ length: count }, (_, i) => `${prefix}${i + 1}of${count}.bin`);
  const source = new Set([path.resolve(model.file), ...model.shards.map((s) => path.resolve(s))]);
  for (const f of [out, ...names.map((n) => path.join(dir, n))]) {
    if (source.has(f)) throw new InputError(f, 'writing here would overwrite the source model; choose another output folder');
  }
  const shards = names.map((n, i) => {
    const file = path.join(dir, n);
    const bytes = all.subarray(i * shardBytes, Math.min(total, (i + 1) * shardBytes));
    writeFileAtomic(file, bytes);
    return { file, bytes: bytes.byteLength };
  });
  const json = {
    ...model.json,
    weightsManifest: [{ paths: names, weights: specs }],
    whittle: { tool: 'whittle', version, source: path.basename(model.file), sourceSha256: sha256File(model.file) },
  };
  writeFileAtomic(out, JSON.stringify(json));
  return { file: out, shards, weights: written };
}

/** The weights of a model in their stored forms, as one buffer in manifest order, with their specs (what tfjs's io.fromMemory takes). */
export interface TfjsEncoded {
  specs: TfjsWeightSpec[];
  data: Uint8Array;
  weights: TfjsWrittenWeight[];
}

/** Encodes every weight per `opts.encodings` and `opts.values` (others keep their stored bytes), without writing. */
export function encodeTfjs(model: TfjsModel, opts: Pick<TfjsWriteOptions, 'encodings' | 'values'> = {}): TfjsEncoded {
  const known = new Set(model.weights().keys());
  for (const name of [...Object.keys(opts.encodings ?? {}), ...(opts.values?.keys() ?? [])]) {
    if (!known.has(name)) throw new InputError(model.file, `no weight named '${name}'`);
  }
  const specs: TfjsWeightSpec[] = [];
  const parts: Uint8Array[] = [];
  const written: TfjsWrittenWeight[] = [];
  for (const w of model.weights().values()) {
    const encoding = opts.encodings?.[w.spec.name];
    const values = opts.values?.get(w.spec.name);
    if (!encoding && !values) {
      specs.push(w.spec);
      parts.push(w.stored);
      written.push({ name: w.spec.name, encoding: 'kept', bytes: w.stored.byteLength });
      continue;
    }
    if (w.spec.dtype !== 'float32') throw new InputError(model.file, `weight '${w.spec.name}' is ${w.spec.dtype}; only float32 weights can be re-encoded`);
    const src = values ?? w.ref.toFloat32();
    if (src.length !== w.ref.count) throw new InputError(model.file, `new values for '${w.spec.name}' have ${src.length} elements, its shape needs ${w.ref.count}`);
    const enc = encodeWeight(src, encoding ?? 'float32');
    const { quantization: _old, ...rest } = w.spec;
    void _old;
    specs.push({ ...rest, ...(enc.quantization ? { quantization: enc.quantization } : {}) });
    parts.push(enc.bytes);
    const back = enc.quantization ? dequantize(enc.bytes, enc.quantization, 'float32') : src;
    written.push({ name: w.spec.name, encoding: encoding ?? 'float32', bytes: enc.bytes.byteLength, sqnrDb: enc.quantization ? sqnrDb(src, back) : Infinity });
  }

  const total = parts.reduce((a, p) => a + p.byteLength, 0);
  const data = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.byteLength;
  }
  return { specs, data, weights: written };
}

/** Encodes float values in one of TF.js's stored forms. */
export function encodeWeight(values: Float32Array, encoding: TfjsEncoding): { bytes: Uint8Array; quantization?: TfjsQuantization } {
  if (encoding === 'float32') return { bytes: new Uint8Array(Float32Array.from(values).buffer) };
  if (encoding === 'float16') {
    const half = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) half[i] = floatToHalf(values[i]);
    return { bytes: new Uint8Array(half.buffer), quantization: { dtype: 'float16' } };
  }
  // Affine per tensor, as tensorflowjs_converter does it: the range is widened to hold 0, and min is nudged
  // so that 0 is exactly representable (pruned zeros stay zeros).
  const qmax = encoding === 'uint8' ? 255 : 65535;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let scale = (hi - lo) / qmax;
  if (!(scale > 0) || !Number.isFinite(scale)) scale = 1;
  const zero = Math.round(-lo / scale);
  const min = -zero * scale;
  const q = encoding === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) q[i] = Math.max(0, Math.min(qmax, Math.round((values[i] - min) / scale)));
  return { bytes: new Uint8Array(q.buffer), quantization: { dtype: encoding, min, scale } };
}
