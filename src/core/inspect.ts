import * as path from 'node:path';
import type { AttributeProto, GraphProto, NodeProto, TensorProto, TypeProto, ValueInfoProto } from 'onnx-buf';
import { tensorStats } from './analysis/stats';
import { detectFormat, type ModelFormat } from './formats/detect';
import { readOnnxFile } from './formats/onnx/read';
import { tensorBytes, tensorCount, tensorShape, tensorValues } from './formats/onnx/tensor';
import { NotImplementedError } from './errors';
import { dtypeName } from './model/dtype';

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
}

/** A node that consumes weights. */
export interface LayerInfo {
  name: string;
  op: string;
  weights: WeightInfo[];
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
  /** Node count by op type (domain-qualified for non-default domains), subgraphs included. */
  opCounts: Record<string, number>;
  nodes: number;
  layers: LayerInfo[];
  warnings: string[];
}

/** Reads a model file and summarises it. Throws InputError for files that are not readable models. */
export function inspectModel(file: string): ModelSummary {
  const format = detectFormat(file);
  if (format !== 'onnx') throw new NotImplementedError('Reading TensorFlow.js models');
  const { proto, bytes: fileBytes } = readOnnxFile(file);
  const graph = proto.graph!;
  const modelDir = path.dirname(path.resolve(file));
  const warnings: string[] = [];

  // Weights: initializers and Constant nodes, in the main graph and in If/Loop/Scan subgraphs. Shape, index
  // and mask tensors (int64, bool, string) are constants, not parameters.
  const weights = new Map<string, TensorProto>();
  const opCounts: Record<string, number> = {};
  let nodes = 0;
  const visit = (g: GraphProto): void => {
    for (const t of g.initializer) if (isParameter(t)) weights.set(t.name, t);
    for (const n of g.node) {
      nodes++;
      const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      opCounts[op] = (opCounts[op] ?? 0) + 1;
      if (n.opType === 'Constant' && !n.domain) {
        const value = n.attribute.find((a) => a.name === 'value' && a.t)?.t;
        if (value && n.output[0] && isParameter(value)) weights.set(n.output[0], value);
      }
      for (const sub of subgraphs(n)) visit(sub);
    }
  };
  visit(graph);

  const weightInfo = new Map<string, WeightInfo>();
  const describe = (name: string, t: TensorProto): WeightInfo => {
    let info = weightInfo.get(name);
    if (info) return info;
    const values = tensorValues(t, modelDir);
    const stats = values && values.length > 0 ? tensorStats(values) : undefined;
    if (stats && stats.nonFinite > 0) warnings.push(`${name}: ${stats.nonFinite} NaN or infinite values`);
    const finite = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? null : v);
    info = {
      name,
      shape: tensorShape(t),
      dtype: dtypeName(t.dataType),
      params: tensorCount(t),
      bytes: tensorBytes(t),
      sparsity: stats?.sparsity ?? 0,
      min: finite(stats?.min),
      max: finite(stats?.max),
      mean: finite(stats?.mean),
      std: finite(stats?.std),
    };
    weightInfo.set(name, info);
    return info;
  };

  const layers: LayerInfo[] = [];
  const layersOf = (g: GraphProto): void => {
    for (const n of g.node) {
      if (n.opType !== 'Constant') {
        const ws = n.input.filter((i) => i && weights.has(i)).map((i) => describe(i, weights.get(i)!));
        if (ws.length > 0) layers.push({ name: n.name || `${n.opType}_${layers.length}`, op: n.opType, weights: ws });
      }
      for (const sub of subgraphs(n)) layersOf(sub);
    }
  };
  layersOf(graph);

  let params = 0;
  let bytes = 0;
  for (const [name, t] of weights) {
    const info = describe(name, t);
    params += info.params;
    bytes += info.bytes;
  }

  // Old IR versions list initializers among graph.input too; those are weights, not inputs.
  const initNames = new Set(graph.initializer.map((t) => t.name));
  const opsets: Record<string, number> = {};
  for (const o of proto.opsetImport) opsets[o.domain || 'ai.onnx'] = Number(o.version);

  return {
    format,
    file,
    fileBytes,
    irVersion: Number(proto.irVersion),
    opsets,
    producer: [proto.producerName, proto.producerVersion].filter(Boolean).join(' '),
    inputs: graph.input.filter((v) => !initNames.has(v.name)).map(ioInfo),
    outputs: graph.output.map(ioInfo),
    params,
    bytes,
    opCounts,
    nodes,
    layers,
    warnings,
  };
}

/** Element types that hold shapes, indices or masks rather than learned values. */
const nonParameterTypes = new Set([7, 8, 9, 13]);

function isParameter(t: TensorProto): boolean {
  return !nonParameterTypes.has(t.dataType);
}

function subgraphs(n: NodeProto): GraphProto[] {
  return n.attribute.flatMap((a: AttributeProto) => [...(a.g ? [a.g] : []), ...a.graphs]);
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
