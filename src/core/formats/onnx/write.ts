import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clearField, create, isFieldSet, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, StringStringEntryProtoSchema, TensorProtoSchema, type GraphProto, type ModelProto, type TensorProto } from 'onnx-buf';
import { writeFileAtomic } from '../../atomicWrite';
import { InputError } from '../../errors';
import { dtypeBytes } from '../../model/dtype';
import { toolName, version } from '../../version';
import type { TensorRef } from '../../model/tensorRef';
import type { OnnxModel } from './model';

/** ONNX's protobuf limit: a serialised ModelProto must stay under 2 GB. */
export const protobufLimit = 2 ** 31 - 1;

/** How to lay out weights when writing. */
export interface WriteOptions {
  /**
   * 'auto' (default): keep the source's external layout when it had one, else go external only when the
   * model would pass `threshold`. 'always': move every tensor of at least `minTensorBytes` to `<name>.data`.
   * 'never': inline everything (fails past the protobuf limit).
   */
  externalData?: 'auto' | 'always' | 'never';
  /** Serialised size above which 'auto' moves weights out (default: just under 2 GB). */
  threshold?: number;
  /** Tensors smaller than this stay inline when going external (default 1 KiB). */
  minTensorBytes?: number;
  /** Provenance recorded in metadata_props; omitted when not given. */
  provenance?: { sourceSha256: string; recipe?: string };
}

/** What was written. */
export interface WriteResult {
  file: string;
  bytes: number;
  /** The external data file, when there is one. */
  dataFile?: string;
  dataBytes?: number;
}

/** SHA-256 of a file (re-exported: the writer records it as provenance). */
export { sha256File } from '../../hash';

/** Sets (or replaces) Whittle's provenance entries in metadata_props. */
export function setProvenance(proto: ModelProto, p: NonNullable<WriteOptions['provenance']>): void {
  const entries: Record<string, string> = {
    'whittle.tool': toolName,
    'whittle.version': version,
    'whittle.source_sha256': p.sourceSha256,
    ...(p.recipe ? { 'whittle.recipe': p.recipe, 'whittle.recipe_sha256': createHash('sha256').update(p.recipe).digest('hex') } : {}),
  };
  proto.metadataProps = proto.metadataProps.filter((e) => !(e.key in entries));
  for (const [key, value] of Object.entries(entries)) proto.metadataProps.push(create(StringStringEntryProtoSchema, { key, value }));
}

/**
 * Writes a model losslessly: every field is re-encoded, unknown ones included. External data is written to
 * a data file beside the model (tensors aligned), each file goes to a temp name, is fsynced and renamed, and
 * the data file lands before the model that points at it. Never writes over the source model or its data.
 * The model's protobuf is edited in place only for external-data bookkeeping, and restored afterwards.
 */
export function writeOnnx(model: OnnxModel, outFile: string, opts: WriteOptions = {}): WriteResult {
  const out = path.resolve(outFile);
  const protected_ = new Set([path.resolve(model.file), ...[...model.weights().values()].flatMap((w) => (w.ref.storage.kind === 'external' ? [w.ref.storage.file] : []))]);
  if (protected_.has(out)) throw new InputError(outFile, 'refusing to write over the source model or its external data');
  if (opts.provenance) setProvenance(model.proto, opts.provenance);

  const tensors = allTensors(model.proto.graph!);
  const externals = [...model.weights().values()].filter((w) => w.ref.storage.kind === 'external');
  const mode = opts.externalData ?? 'auto';
  // Bookkeeping to restore: the proto stays as the caller had it.
  // ONNX is proto2: assigning a field marks it present even when empty, and onnxruntime then reads an empty
  // raw_data instead of int64_data. So presence is saved too, and a field that was absent is cleared again.
  const rawField = TensorProtoSchema.field.rawData;
  const locationField = TensorProtoSchema.field.dataLocation;
  const saved = tensors.map((t) => ({ t, rawData: t.rawData, externalData: t.externalData, dataLocation: t.dataLocation, hadRaw: isFieldSet(t, rawField), hadLocation: isFieldSet(t, locationField) }));
  try {
    let plan: Array<{ t: TensorProto; bytes: Uint8Array; offset: number }> | undefined;
    let dataName: string | undefined;
    // True when the source's external_data entries stay as they are (same file name, offsets, lengths).
    let unchangedEntries = false;
    const inlineSize = () => toBinarySize(model.proto);
    if (mode === 'always' || (mode === 'auto' && externals.length === 0 && inlineSize() > (opts.threshold ?? protobufLimit - (64 << 20)))) {
      dataName = `${path.basename(out)}.data`;
      plan = layout(model, tensors, opts.minTensorBytes ?? 1024);
    } else if (externals.length > 0 && mode !== 'never') {
      const kept = keepLayout(model, out, protected_);
      dataName = kept.dataName;
      plan = kept.plan;
      unchangedEntries = kept.unchanged;
    } else if (externals.length > 0) {
      // 'never': inline what was external.
      for (const w of externals) {
        const t = w.origin.tensor;
        t.rawData = w.ref.bytes()! as Uint8Array<ArrayBuffer>;
        t.externalData = [];
        t.dataLocation = 0;
      }
    }
    if (plan && dataName && !unchangedEntries) {
      for (const p of plan) {
        p.t.rawData = new Uint8Array(0);
        p.t.dataLocation = 1;
        p.t.externalData = [
          create(StringStringEntryProtoSchema, { key: 'location', value: dataName }),
          create(StringStringEntryProtoSchema, { key: 'offset', value: String(p.offset) }),
          create(StringStringEntryProtoSchema, { key: 'length', value: String(p.bytes.byteLength) }),
        ];
      }
    }
    const encoded = toBinary(ModelProtoSchema, model.proto, { writeUnknownFields: true });
    if (encoded.byteLength > protobufLimit) throw new InputError(outFile, `the model is ${encoded.byteLength} bytes, over ONNX's 2 GB protobuf limit; write it with external data`);
    const result: WriteResult = { file: out, bytes: encoded.byteLength };
    const dataFile = plan && dataName ? path.join(path.dirname(out), dataName) : undefined;
    if (dataFile && plan) {
      if (protected_.has(dataFile)) throw new InputError(dataFile, 'refusing to write over the source model or its external data');
      result.dataFile = dataFile;
      result.dataBytes = writeDataFile(dataFile, plan);
    }
    try {
      writeFileAtomic(out, [encoded]);
    } catch (err) {
      if (dataFile) fs.rmSync(dataFile, { force: true });
      throw err;
    }
    return result;
  } finally {
    for (const s of saved) {
      s.t.rawData = s.rawData;
      s.t.externalData = s.externalData;
      s.t.dataLocation = s.dataLocation;
      if (!s.hadRaw) clearField(s.t, rawField);
      if (!s.hadLocation) clearField(s.t, locationField);
    }
  }
}

/** Every TensorProto of a graph: initializers and Constant values, subgraphs included. */
function allTensors(g: GraphProto): TensorProto[] {
  const out: TensorProto[] = [...g.initializer];
  for (const n of g.node) {
    for (const a of n.attribute) {
      if (a.t && n.opType === 'Constant') out.push(a.t);
      for (const sub of a.g ? [a.g, ...a.graphs] : a.graphs) out.push(...allTensors(sub));
    }
  }
  return out;
}

function toBinarySize(proto: ModelProto): number {
  return toBinary(ModelProtoSchema, proto, { writeUnknownFields: true }).byteLength;
}

/** Alignment: 64 bytes for every tensor, 64 KiB (the mmap allocation granularity) for tensors of 1 MiB or more. */
function align(offset: number, size: number): number {
  const a = size >= 1 << 20 ? 1 << 16 : 64;
  return Math.ceil(offset / a) * a;
}

/** A fresh layout: every weight of at least `minBytes` goes to the data file, aligned, in graph order. */
function layout(model: OnnxModel, tensors: TensorProto[], minBytes: number) {
  const byTensor = new Map([...model.weights().values()].map((w) => [w.origin.tensor, w.ref]));
  const plan: Array<{ t: TensorProto; bytes: Uint8Array; offset: number }> = [];
  let offset = 0;
  for (const t of tensors) {
    const ref = byTensor.get(t);
    const size = ref ? ref.byteLength : dtypeBytes(t.dataType, t.dims.reduce((a, d) => a * Number(d), 1));
    // Shape, index and mask tensors (int64, bool, string) stay inline: ORT's shape inference must read them at load.
    if (size < minBytes || [7, 8, 9].includes(t.dataType)) continue;
    const bytes = ref?.bytes() ?? rawFromTyped(ref);
    if (!bytes) continue;
    offset = align(offset, bytes.byteLength);
    plan.push({ t, bytes, offset });
    offset += bytes.byteLength;
  }
  return plan;
}

/** Little-endian bytes of a tensor held in typed protobuf fields. */
function rawFromTyped(ref: TensorRef | undefined): Uint8Array | undefined {
  if (!ref) return undefined;
  const data = ref.read();
  return new Uint8Array(data.buffer, data.byteOffset, ref.byteLength);
}

/**
 * Keeps the source's external layout: same location names, offsets and lengths, so the model bytes can stay
 * identical. Falls back to a fresh layout in `<name>.data` when that would overwrite the source's data.
 */
function keepLayout(model: OnnxModel, out: string, protected_: Set<string>) {
  const externals = [...model.weights().values()].filter((w) => w.ref.storage.kind === 'external');
  const locations = new Set(externals.map((w) => (w.ref.storage.kind === 'external' ? path.basename(w.ref.storage.file) : '')));
  const dir = path.dirname(out);
  const target = locations.size === 1 ? path.join(dir, [...locations][0]) : undefined;
  if (target && !protected_.has(target)) {
    const plan = externals.map((w) => {
      const s = w.ref.storage as Extract<typeof w.ref.storage, { kind: 'external' }>;
      return { t: w.origin.tensor, bytes: w.ref.bytes()!, offset: s.offset };
    });
    return { dataName: [...locations][0], plan, unchanged: true };
  }
  // Writing beside the source (or the source used several files): one new data file, fresh offsets.
  let offset = 0;
  const plan = externals.map((w) => {
    const bytes = w.ref.bytes()!;
    offset = align(offset, bytes.byteLength);
    const p = { t: w.origin.tensor, bytes, offset };
    offset += bytes.byteLength;
    return p;
  });
  return { dataName: `${path.basename(out)}.data`, plan, unchanged: false };
}

function writeDataFile(file: string, plan: Array<{ bytes: Uint8Array; offset: number }>): number {
  const sorted = [...plan].sort((a, b) => a.offset - b.offset);
  const parts: Uint8Array[] = [];
  let pos = 0;
  for (const p of sorted) {
    if (p.offset < pos) throw new Error(`external data regions overlap at offset ${p.offset}`);
    if (p.offset > pos) parts.push(new Uint8Array(p.offset - pos));
    parts.push(p.bytes);
    pos = p.offset + p.bytes.byteLength;
  }
  writeFileAtomic(file, parts);
  return pos;
}
