import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ModelInput } from '../../data/types';
import { InputError, ModelFormatError } from '../../errors';
import type { Layer } from '../../model/layers';
import { TensorRef } from '../../model/tensorRef';
import { graphLayers, kerasLayers, type KerasLayerInfo } from './layers';

/** Weight dtypes TF.js stores (tfjs-core's DataType), with the ONNX element type code each maps to. */
export const tfjsDtypes: Record<string, { code: number; bytes: number }> = {
  float32: { code: 1, bytes: 4 },
  int32: { code: 6, bytes: 4 },
  bool: { code: 9, bytes: 1 },
  complex64: { code: 14, bytes: 8 },
  string: { code: 8, bytes: 0 },
};

/** The stored forms TF.js's quantization field names: uint8/uint16 affine (value = q·scale + min), or float16. */
export type TfjsQuantDtype = 'uint8' | 'uint16' | 'float16';

/** A weight's `quantization` field in model.json. */
export interface TfjsQuantization {
  dtype: TfjsQuantDtype;
  min?: number;
  scale?: number;
  /** Written by the Python converter; informational. */
  original_dtype?: string;
}

/** One entry of a weightsManifest group's `weights`, as model.json has it. */
export interface TfjsWeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: TfjsQuantization;
  /** Other fields (group, ...) kept for the round trip. */
  [key: string]: unknown;
}

/** One group of weightsManifest: its shard paths and its weights, laid end to end over the concatenated shards. */
export interface TfjsWeightGroup {
  paths: string[];
  weights: TfjsWeightSpec[];
}

/** A weight: its values as a lazy TensorRef (dequantized float32 when stored quantized), its spec and its stored bytes. */
export interface TfjsWeight {
  /** Dequantized values: float32 for quantized weights, the stored dtype otherwise. */
  ref: TensorRef;
  spec: TfjsWeightSpec;
  /** Index of its weightsManifest group. */
  group: number;
  /** The bytes as stored in the shards (quantized form included), for lossless round trips. */
  stored: Uint8Array;
}

/** The parsed model.json. */
export interface TfjsModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology: Record<string, unknown>;
  weightsManifest: TfjsWeightGroup[];
  signature?: Record<string, unknown>;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: Record<string, unknown>;
  trainingConfig?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Bytes one element of a spec takes in the shards (0 for strings, which carry their own lengths). */
export function storedElementBytes(spec: TfjsWeightSpec, file: string): number {
  const q = spec.quantization;
  if (q) {
    if (q.dtype === 'uint8') return 1;
    if (q.dtype === 'uint16' || q.dtype === 'float16') return 2;
    throw new ModelFormatError(file, `weight '${spec.name}' has quantization dtype '${String(q.dtype)}'; TF.js knows uint8, uint16 and float16`);
  }
  const d = tfjsDtypes[spec.dtype];
  if (!d) throw new ModelFormatError(file, `weight '${spec.name}' has unknown dtype '${String(spec.dtype)}'; TF.js weights are float32, int32, bool, string or complex64`);
  return d.bytes;
}

/**
 * A TF.js model (model.json + weight shards) opened for reading: the JSON kept whole so writing it back loses
 * nothing, every weight (dequantized on read, stored bytes kept), and a layer view in the same shapes as ONNX's.
 */
export class TfjsModel {
  private layerList: Layer[] | undefined;
  private kerasInfo: KerasLayerInfo[] | undefined;

  private constructor(
    /** The path of model.json. */
    readonly file: string,
    /** model.json's size plus its shards' sizes. */
    readonly fileBytes: number,
    readonly json: TfjsModelJson,
    private readonly weightMap: Map<string, TfjsWeight>,
    /** The shard files read, resolved. */
    readonly shards: string[],
  ) {}

  /** Layers model (Keras topology) or graph model (GraphDef). */
  get kind(): 'layers' | 'graph' {
    return this.json.format === 'graph-model' || Array.isArray((this.json.modelTopology as { node?: unknown }).node) ? 'graph' : 'layers';
  }

  /** Opens model.json and reads its shards, checking that every shard exists, stays in the model's folder and has the right size. */
  static open(file: string): TfjsModel {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InputError(file, code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? String(err)})`);
    }
    let json: TfjsModelJson;
    try {
      json = JSON.parse(text) as TfjsModelJson;
    } catch (err) {
      throw new ModelFormatError(file, `malformed JSON: ${(err as Error).message}`);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ModelFormatError(file, 'model.json must hold a JSON object');
    if (!json.modelTopology || typeof json.modelTopology !== 'object') throw new ModelFormatError(file, 'no modelTopology: not a TF.js model.json');
    const manifest = json.weightsManifest ?? [];
    if (!Array.isArray(manifest)) throw new ModelFormatError(file, 'weightsManifest must be a list of groups');
    const dir = path.dirname(path.resolve(file));
    const weights = new Map<string, TfjsWeight>();
    const shards: string[] = [];
    let fileBytes = Buffer.byteLength(text);
    manifest.forEach((group, g) => {
      if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) throw new ModelFormatError(file, `weightsManifest group ${g} needs 'paths' and 'weights' lists`);
      const parts: Buffer[] = [];
      const files = group.paths.map((p) => shardPath(file, dir, p));
      for (const f of files) {
        let data: Buffer;
        try {
          data = fs.readFileSync(f);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new InputError(f, code === 'ENOENT' ? `weight shard listed in ${path.basename(file)} is missing` : `cannot read weight shard (${code ?? String(err)})`);
        }
        parts.push(data);
        shards.push(f);
        fileBytes += data.byteLength;
      }
      const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      const last = files[files.length - 1] ?? file;
      let offset = 0;
      for (const spec of group.weights) {
        checkSpec(spec, file);
        const count = spec.shape.reduce((a, b) => a * b, 1);
        const per = storedElementBytes(spec, file);
        let length = per * count;
        if (spec.dtype === 'string' && !spec.quantization) length = stringBytes(buf, offset, count, spec, last, files);
        if (offset + length > buf.byteLength) {
          throw new InputError(last, `weight shards hold ${buf.byteLength} bytes, but the weights listed in ${path.basename(file)} need ${need(group.weights, file, offset, length)} (truncated or wrong shard?)`);
        }
        const stored = buf.subarray(offset, offset + length);
        offset += length;
        if (weights.has(spec.name)) throw new ModelFormatError(file, `weight '${spec.name}' is listed twice in weightsManifest`);
        weights.set(spec.name, { ref: refOf(spec, stored, file), spec, group: g, stored });
      }
      if (offset !== buf.byteLength) {
        throw new InputError(last, `weight shards hold ${buf.byteLength} bytes, but the weights listed in ${path.basename(file)} take ${offset} (wrong shard?)`);
      }
    });
    return new TfjsModel(file, fileBytes, json, weights, shards);
  }

  /** Every weight by name, in manifest order. */
  weights(): Map<string, TfjsWeight> {
    return this.weightMap;
  }

  /** Weight-bearing layers: Keras layers for layers models, GraphDef nodes for graph models. */
  layers(): Layer[] {
    if (this.layerList) return this.layerList;
    const byName = new Map([...this.weightMap].map(([k, w]) => [k, w.ref]));
    this.layerList = this.kind === 'graph' ? graphLayers(this.json.modelTopology, byName) : kerasLayers(this.keras(), byName);
    return this.layerList;
  }

  /** The Keras layers of a layers model (nested models flattened), with their class and config. */
  keras(): KerasLayerInfo[] {
    this.kerasInfo ??= collectKeras(this.json.modelTopology, this.file);
    return this.kerasInfo;
  }

  /** The model's inputs as datasets need them (layers: InputLayers; graph: signature inputs or Placeholders). */
  inputs(): ModelInput[] {
    return this.kind === 'graph' ? graphInputs(this.json) : layersInputs(this.keras(), this.json.modelTopology);
  }

  /** Output names: Keras output layer names (layers), or signature outputs / graph sinks (graph). */
  outputs(): string[] {
    if (this.kind === 'graph') {
      const sig = (this.json.signature as { outputs?: Record<string, { name?: string }> } | undefined)?.outputs;
      if (sig) return Object.values(sig).map((o, i) => o.name ?? `output_${i}`);
      return [];
    }
    const cfg = modelConfig(this.json.modelTopology);
    const outs = (cfg?.config as { output_layers?: unknown[] } | undefined)?.output_layers;
    if (Array.isArray(outs)) return outs.map((o) => (Array.isArray(o) ? String(o[0]) : String(o)));
    const layers = this.keras();
    return layers.length ? [layers[layers.length - 1].name] : [];
  }

  /** The weight specs of every group, flattened in manifest order, as tfjs's io loaders take them. */
  weightSpecs(): TfjsWeightSpec[] {
    return this.json.weightsManifest.flatMap((g) => g.weights);
  }

  /** The stored bytes of every weight, concatenated in weightSpecs() order, as tfjs's io loaders take them. */
  weightData(): ArrayBuffer {
    const all = [...this.weightMap.values()];
    const total = all.reduce((a, w) => a + w.stored.byteLength, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const w of all) {
      out.set(w.stored, o);
      o += w.stored.byteLength;
    }
    return out.buffer;
  }
}

/** Resolves a shard path against model.json's folder; it must stay inside that folder. */
function shardPath(file: string, dir: string, p: unknown): string {
  if (typeof p !== 'string' || !p) throw new ModelFormatError(file, `weightsManifest has a shard path that is not a string: ${JSON.stringify(p)}`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p)) throw new InputError(file, `shard path '${p}' is a URL; only files beside model.json can be read`);
  const resolved = path.resolve(dir, p);
  const rel = path.relative(dir, resolved);
  if (path.isAbsolute(p) || rel.startsWith('..') || path.isAbsolute(rel)) throw new InputError(file, `shard path '${p}' leaves the model's folder`);
  return resolved;
}

function checkSpec(spec: TfjsWeightSpec, file: string): void {
  if (!spec || typeof spec.name !== 'string') throw new ModelFormatError(file, 'a weight in weightsManifest has no name');
  if (!Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ModelFormatError(file, `weight '${spec.name}' has shape ${JSON.stringify(spec.shape)}; want a list of non-negative whole numbers`);
  }
  storedElementBytes(spec, file);
  const q = spec.quantization;
  if (q && (q.dtype === 'uint8' || q.dtype === 'uint16') && !(Number.isFinite(q.min) && Number.isFinite(q.scale))) {
    throw new ModelFormatError(file, `weight '${spec.name}' is ${q.dtype}-quantized without a finite min and scale`);
  }
}

/** Bytes of a string tensor: each element is a uint32 little-endian length and its bytes. */
function stringBytes(buf: Buffer, start: number, count: number, spec: TfjsWeightSpec, last: string, files: string[]): number {
  let o = start;
  for (let i = 0; i < count; i++) {
    if (o + 4 > buf.byteLength) throw new InputError(last, `weight shards end inside string weight '${spec.name}' (${files.length} shard(s), ${buf.byteLength} bytes)`);
    o += 4 + buf.readUInt32LE(o);
  }
  return o - start;
}

/** What a group needs in all, for the error message: fixed-size weights summed (strings past the break count 0). */
function need(specs: TfjsWeightSpec[], file: string, offset: number, length: number): number {
  let total = 0;
  for (const s of specs) total += storedElementBytes(s, file) * s.shape.reduce((a, b) => a * b, 1);
  return Math.max(total, offset + length);
}

/** A TensorRef over a weight's values: stored dtypes as views, quantized forms dequantized to float32 (as tfjs-core's decodeWeights does). */
function refOf(spec: TfjsWeightSpec, stored: Uint8Array, file: string): TensorRef {
  const q = spec.quantization;
  if (!q) return new TensorRef(spec.name, tfjsDtypes[spec.dtype].code, spec.shape, { kind: 'bytes', bytes: stored }, file);
  return new TensorRef(spec.name, spec.dtype === 'int32' ? 6 : 1, spec.shape, { kind: 'values', values: dequantize(stored, q, spec.dtype) }, file);
}

/** Dequantizes stored bytes the way tfjs-core does: q·scale + min (rounded for int32 weights), or float16 bits to float32. */
export function dequantize(stored: Uint8Array, q: TfjsQuantization, dtype: string): Float32Array | Int32Array {
  const n = q.dtype === 'uint8' ? stored.byteLength : stored.byteLength / 2;
  const copy = Uint8Array.prototype.slice.call(stored);
  const src = q.dtype === 'uint8' ? copy : new Uint16Array(copy.buffer, 0, n);
  if (q.dtype === 'float16') {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = halfBitsToFloat(src[i]);
    return out;
  }
  const out = dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  const scale = q.scale!;
  const min = q.min!;
  if (dtype === 'int32') for (let i = 0; i < n; i++) out[i] = Math.round(src[i] * scale + min);
  else for (let i = 0; i < n; i++) out[i] = src[i] * scale + min;
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits to float32, exact (subnormals and infinities included). */
export function halfBitsToFloat(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let frac = h & 0x3ff;
  if (exp === 0) {
    if (frac === 0) {
      u32[0] = sign;
      return f32[0];
    }
    // Subnormal: normalise.
    let e = -1;
    do {
      e++;
      frac <<= 1;
    } while ((frac & 0x400) === 0);
    u32[0] = sign | ((127 - 15 - e) << 23) | ((frac & 0x3ff) << 13);
    return f32[0];
  }
  if (exp === 31) {
    u32[0] = sign | 0x7f800000 | (frac << 13);
    return f32[0];
  }
  u32[0] = sign | ((exp - 15 + 127) << 23) | (frac << 13);
  return f32[0];
}

/** The Keras model config inside modelTopology (TF.js saves it directly; the Python converter under model_config). */
function modelConfig(topology: Record<string, unknown>): { class_name?: string; config?: unknown } | undefined {
  const t = (topology.model_config ?? topology) as { class_name?: string; config?: unknown };
  return t && typeof t === 'object' ? t : undefined;
}

/** Every Keras layer of a layers model, nested models flattened (their own layers listed after them). */
function collectKeras(topology: Record<string, unknown>, file: string): KerasLayerInfo[] {
  const out: KerasLayerInfo[] = [];
  const visit = (m: { class_name?: string; config?: unknown }) => {
    const cfg = m.config as { layers?: unknown } | unknown[] | undefined;
    const layers = Array.isArray(cfg) ? cfg : (cfg as { layers?: unknown })?.layers;
    if (!Array.isArray(layers)) throw new ModelFormatError(file, `modelTopology ${m.class_name ?? 'model'} has no layers list`);
    for (const l of layers as Array<{ class_name?: string; name?: string; config?: Record<string, unknown> }>) {
      const name = l.name ?? (l.config?.name as string | undefined);
      if (!name || !l.class_name) throw new ModelFormatError(file, 'a layer in modelTopology has no name or class_name');
      out.push({ name, className: l.class_name, config: l.config ?? {} });
      if (['Model', 'Functional', 'Sequential'].includes(l.class_name)) visit(l);
    }
  };
  const m = modelConfig(topology);
  if (!m) throw new ModelFormatError(file, 'modelTopology is not a Keras model config');
  visit(m);
  return out;
}

function layersInputs(keras: KerasLayerInfo[], topology: Record<string, unknown>): ModelInput[] {
  const cfg = modelConfig(topology);
  const named = (cfg?.config as { input_layers?: unknown[] } | undefined)?.input_layers;
  const names = Array.isArray(named) ? named.map((i) => (Array.isArray(i) ? String(i[0]) : String(i))) : undefined;
  let inputs = keras.filter((l) => l.className === 'InputLayer');
  if (names) inputs = names.map((n) => keras.find((l) => l.name === n)).filter((l): l is KerasLayerInfo => !!l);
  if (!inputs.length && keras.length) {
    // A Sequential model without an InputLayer: the first layer carries batch_input_shape.
    inputs = [keras[0]];
  }
  return inputs.map((l) => {
    const c = l.config;
    const shape = (c.batch_input_shape ?? c.batchInputShape ?? c.batch_shape) as Array<number | null> | undefined;
    return { name: l.name, elemType: tfDtypeCode(String(c.dtype ?? 'float32')), shape: shape ? shape.map((d) => (d === null || d < 0 ? null : d)) : [null] };
  });
}

function graphInputs(json: TfjsModelJson): ModelInput[] {
  const sig = (json.signature as { inputs?: Record<string, { name?: string; dtype?: string; tensorShape?: { dim?: Array<{ size?: string | number }> } }> } | undefined)?.inputs;
  const dims = (d?: Array<{ size?: string | number }>) => (d ?? []).map((x) => (Number(x.size ?? -1) < 0 ? null : Number(x.size)));
  if (sig) return Object.values(sig).map((i, k) => ({ name: (i.name ?? `input_${k}`).replace(/:0$/, ''), elemType: tfDtypeCode(i.dtype ?? 'DT_FLOAT'), shape: dims(i.tensorShape?.dim) }));
  const nodes = ((json.modelTopology as { node?: Array<{ name: string; op: string; attr?: Record<string, { type?: string; shape?: { dim?: Array<{ size?: string }> } }> }> }).node ?? []);
  return nodes.filter((n) => n.op === 'Placeholder').map((n) => ({ name: n.name, elemType: tfDtypeCode(n.attr?.dtype?.type ?? 'DT_FLOAT'), shape: dims(n.attr?.shape?.shape?.dim) }));
}

/** ONNX element type of a TF dtype name ('float32' or 'DT_FLOAT' forms). */
function tfDtypeCode(d: string): number {
  const k = d.replace(/^DT_/, '').toLowerCase();
  return ({ float: 1, float32: 1, int32: 6, int64: 7, bool: 9, string: 8, uint8: 2, int8: 3, half: 10, float16: 10 } as Record<string, number>)[k] ?? 1;
}
