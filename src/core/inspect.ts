import type { Layer } from './model/layers';
import { channelLayout } from './analysis/histogram';
import type { TypeProto, ValueInfoProto } from 'onnx-buf';
import { weightStats, type ParallelOptions } from './analysis/parallelStats';
import { detectFormat, type ModelFormat } from './formats/detect';
import { isParameter, OnnxModel } from './formats/onnx/model';
import { TfjsModel } from './formats/tfjs/read';
import { dtypeName } from './model/dtype';
import type { TensorRef } from './model/tensorRef';

/** A graph input or output: name, element type and shape (a dimension is a number, a symbol, or null). */
export interface IoInfo {
  name: string;
  dtype: string;
  shape: Array<number | string | null> | null;
}

/** One weight tensor of a layer, with the figures of the CLI contract. */
export interface WeightInfo {
  name: string;
  shape: number[];
  dtype: string;
  params: number;
  bytes: number;
  sparsity: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  std: number | null;
  /** TF.js: how the weight is stored when that is not its dtype (uint8 or uint16 affine, float16); the figures are of the dequantized values. */
  stored?: string;
}

/** A node that consumes weights. */
export interface LayerInfo {
  name: string;
  op: string;
  /** conv, gemm, matmul, rnn, embedding, batchNorm, layerNorm, convTranspose, or other. */
  kind: string;
  weights: WeightInfo[];
  /**
   * The main weight as the heatmap draws it: output channels (rows) by everything else (columns), for the
   * values the model computes with (a MatMulNBits weight is its [K, N] matrix, not its packed bytes).
   */
  matrix: { rows: number; cols: number };
}

/** What `whittle inspect` reports (DESIGN.md section 7), plus a few extras (file, fileBytes, opCounts, nodes). */
export interface ModelSummary {
  format: ModelFormat;
  file: string;
  fileBytes: number;
  irVersion: number;
  opsets: Record<string, number>;
  producer: string;
  inputs: IoInfo[];
  outputs: IoInfo[];
  /** Weight elements, counting each tensor once; int64/bool/string constants (shapes, indices) are not counted. */
  params: number;
  /** Bytes of weight data, packed. */
  bytes: number;
  /** Bytes of weights kept in external data files. */
  externalBytes: number;
  /** Node count by op type (domain-qualified for non-default domains), subgraphs included. */
  opCounts: Record<string, number>;
  nodes: number;
  layers: LayerInfo[];
  warnings: string[];
  /** TF.js: layers or graph model, and the shard files read. */
  tfjs?: { kind: 'layers' | 'graph'; shards: string[] };
}

/** Reads a model file and summarises it. Throws InputError for files that are not readable models. */
export async function inspectModel(file: string, opts: ParallelOptions = {}): Promise<ModelSummary> {
  if (detectFormat(file) === 'tfjs') return summariseTfjs(TfjsModel.open(file), opts);
  const model = OnnxModel.open(file);
  try {
    return await summarise(model, opts);
  } finally {
    model.close();
  }
}

/** Summarises an opened ONNX model: structure, and statistics of every weight (split across cores when big). */
export async function summarise(model: OnnxModel, opts: ParallelOptions = {}): Promise<ModelSummary> {
  const graph = model.graph;
  const warnings: string[] = [];
  const infos = new Map<TensorRef, WeightInfo>();
  const allStats = await weightStats([...model.layers().flatMap((l) => Object.values(l.tensors)), ...[...model.weights().values()].map((w) => w.ref)], opts);
  const describe = (ref: TensorRef): WeightInfo => {
    let info = infos.get(ref);
    if (info) return info;
    // Element types with no numeric reading (strings, complex, 8-bit floats) have a shape and a size only.
    const stats = allStats.get(ref);
    if (stats && stats.nonFinite > 0) warnings.push(`${ref.name}: ${stats.nonFinite} NaN or infinite values`);
    const finite = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? null : v);
    info = {
      name: ref.name,
      shape: ref.shape,
      dtype: ref.dtypeName,
      params: ref.count,
      bytes: ref.byteLength,
      sparsity: stats?.sparsity ?? 0,
      min: finite(stats?.min),
      max: finite(stats?.max),
      mean: finite(stats?.mean),
      std: finite(stats?.std),
    };
    infos.set(ref, info);
    return info;
  };

  const layers: LayerInfo[] = model.layers().map((l) => ({ name: l.name, op: l.op, kind: l.kind, weights: Object.values(l.tensors).map(describe), matrix: matrixOf(l, model) }));
  let params = 0;
  let bytes = 0;
  let externalBytes = 0;
  for (const w of model.weights().values()) {
    if (!isParameter(w.ref)) continue;
    const info = describe(w.ref);
    params += info.params;
    bytes += info.bytes;
    if (w.ref.storage.kind === 'external') externalBytes += info.bytes;
  }

  const opCounts: Record<string, number> = {};
  let nodes = 0;
  const count = (g: typeof graph) => {
    for (const n of g.node) {
      nodes++;
      const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      opCounts[op] = (opCounts[op] ?? 0) + 1;
      for (const a of n.attribute) for (const sub of a.g ? [a.g, ...a.graphs] : a.graphs) count(sub);
    }
  };
  count(graph);

  // Old IR versions list initializers among graph.input too; those are weights, not inputs.
  const initNames = new Set(graph.initializer.map((t) => t.name));
  return {
    format: 'onnx',
    file: model.file,
    fileBytes: model.fileBytes,
    irVersion: Number(model.proto.irVersion),
    opsets: model.opsets,
    producer: [model.proto.producerName, model.proto.producerVersion].filter(Boolean).join(' '),
    inputs: graph.input.filter((v) => !initNames.has(v.name)).map(ioInfo),
    outputs: graph.output.map(ioInfo),
    params,
    bytes,
    externalBytes,
    opCounts,
    nodes,
    layers,
    warnings,
  };
}

/** Summarises a TF.js model in the same shape: Keras layers or GraphDef nodes, weights with their stored form. */
export async function summariseTfjs(model: TfjsModel, opts: ParallelOptions = {}): Promise<ModelSummary> {
  const warnings: string[] = [];
  const weights = [...model.weights().values()];
  const allStats = await weightStats(weights.map((w) => w.ref), opts);
  const infos = new Map<TensorRef, WeightInfo>();
  const finite = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? null : v);
  for (const w of weights) {
    const stats = allStats.get(w.ref);
    if (stats && stats.nonFinite > 0) warnings.push(`${w.ref.name}: ${stats.nonFinite} NaN or infinite values`);
    const q = w.spec.quantization;
    infos.set(w.ref, {
      name: w.ref.name,
      shape: w.ref.shape,
      dtype: w.spec.dtype,
      params: w.ref.count,
      bytes: w.stored.byteLength,
      sparsity: stats?.sparsity ?? 0,
      min: finite(stats?.min),
      max: finite(stats?.max),
      mean: finite(stats?.mean),
      std: finite(stats?.std),
      ...(q ? { stored: q.dtype === 'float16' ? 'float16' : `${q.dtype} affine` } : {}),
    });
  }
  const layers: LayerInfo[] = model.layers().map((l) => ({ name: l.name, op: l.op, kind: l.kind, weights: Object.values(l.tensors).map((t) => infos.get(t)!), matrix: matrixOf(l) }));
  const opCounts: Record<string, number> = {};
  let nodes = 0;
  if (model.kind === 'graph') {
    for (const n of ((model.json.modelTopology as { node?: Array<{ op: string }> }).node ?? [])) {
      nodes++;
      opCounts[n.op] = (opCounts[n.op] ?? 0) + 1;
    }
  } else {
    for (const l of model.keras()) {
      nodes++;
      opCounts[l.className] = (opCounts[l.className] ?? 0) + 1;
    }
  }
  const topo = model.json.modelTopology as { keras_version?: string; versions?: { producer?: number } };
  const producer = [model.json.generatedBy, model.json.convertedBy, topo.keras_version].filter(Boolean).join(', ');
  const io = (i: { name: string; elemType: number; shape: Array<number | string | null> }): IoInfo => ({ name: i.name, dtype: dtypeName(i.elemType), shape: i.shape });
  // As for ONNX, integer and bool constants (shapes, axes, indices) are not parameters.
  const numeric = weights.filter((w) => [1, 10, 11, 16].includes(w.ref.dtype));
  const bytes = weights.reduce((a, w) => a + w.stored.byteLength, 0);
  return {
    format: 'tfjs',
    file: model.file,
    fileBytes: model.fileBytes,
    irVersion: 0,
    opsets: {},
    producer,
    inputs: model.inputs().map(io),
    outputs: model.outputs().map((name) => ({ name, dtype: 'float32', shape: null })),
    params: numeric.reduce((a, w) => a + w.ref.count, 0),
    bytes,
    externalBytes: bytes,
    opCounts,
    nodes,
    layers,
    warnings,
    tfjs: { kind: model.kind, shards: model.shards },
  };
}

function ioInfo(v: ValueInfoProto): IoInfo {
  const tensor = tensorType(v.type);
  if (!tensor) return { name: v.name, dtype: typeCase(v.type), shape: null };
  const shape = tensor.shape
    ? tensor.shape.dim.map((d) =>
        d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
      )
    : null;
  return { name: v.name, dtype: dtypeName(tensor.elemType), shape };
}

function tensorType(t: TypeProto | undefined) {
  return t?.value.case === 'tensorType' ? t.value.value : undefined;
}

function typeCase(t: TypeProto | undefined): string {
  return t?.value.case ?? 'unknown';
}

/** A layer's main weight as rows (output channels) by columns (the rest); MatMulNBits from its K and N. */
function matrixOf(l: Layer, model?: OnnxModel): { rows: number; cols: number } {
  if (l.op === 'com.microsoft:MatMulNBits' && model) {
    const node = model.graph.node.find((n) => n.name === l.name);
    const attr = (k: string) => Number(node?.attribute.find((a) => a.name === k)?.i ?? 0);
    if (attr('K') && attr('N')) return { rows: attr('N'), cols: attr('K') };
  }
  const lay = channelLayout(l.weight.shape, l.outputAxis);
  return { rows: lay.channels, cols: Math.max(1, lay.outer * lay.inner) };
}
