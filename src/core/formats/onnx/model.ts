import * as fs from 'node:fs';
import type { GraphProto, ModelProto, NodeProto, TensorProto } from 'onnx-buf';
import { InputError } from '../../errors';
import { ExternalFiles } from '../../model/externalFiles';
import { dtypeBytes } from '../../model/dtype';
import type { Layer, LayerKind } from '../../model/layers';
import { TensorRef, type TensorStorage } from '../../model/tensorRef';
import { detectFormat } from '../detect';
import { decodeOnnx } from './read';

/** Where a weight is defined, so edits can find and replace it. */
export type WeightOrigin =
  | { kind: 'initializer'; graph: GraphProto; tensor: TensorProto; alsoInput: boolean }
  | { kind: 'constant'; graph: GraphProto; node: NodeProto; tensor: TensorProto };

/** A weight: its lazy reference, where it is defined, and the path of the (sub)graph it lives in. */
export interface Weight {
  ref: TensorRef;
  origin: WeightOrigin;
  /** '' for the main graph, else e.g. 'If_0/then_branch'. */
  scope: string;
}

/**
 * An ONNX model opened for reading: the decoded protobuf (kept whole, so writing it back loses nothing) and
 * lazy views of its weights and layers. Weight bytes stay in the file buffer or the external data files
 * until read.
 */
export class OnnxModel {
  private weightMap: Map<string, Weight> | undefined;
  private layerList: Layer[] | undefined;

  private constructor(
    /** The path the model was opened from. */
    readonly file: string,
    /** File size in bytes. */
    readonly fileBytes: number,
    readonly proto: ModelProto,
    /** The model's external data files. */
    readonly external: ExternalFiles,
  ) {}

  /**
   * Opens a model file: checks the format by content, decodes it, and checks that every external data
   * region exists, so a missing or short .data file is an error now rather than in the middle of a pass.
   */
  static open(file: string): OnnxModel {
    const format = detectFormat(file);
    if (format !== 'onnx') throw new InputError(file, 'this is a TensorFlow.js model, not an ONNX model');
    return OnnxModel.fromBytes(readModelBytes(file), file);
  }

  /** A model from bytes already in memory; `file` names it in errors and anchors external data. */
  static fromBytes(bytes: Uint8Array, file: string): OnnxModel {
    const proto = decodeOnnx(bytes, file);
    const model = new OnnxModel(file, bytes.byteLength, proto, new ExternalFiles(file));
    for (const w of model.weights().values()) {
      w.ref.validate();
      const s = w.ref.storage;
      if (s.kind === 'external') s.files.check(s.file, s.offset, s.length, w.ref.name);
    }
    return model;
  }

  /** The main graph. */
  get graph(): GraphProto {
    return this.proto.graph!;
  }

  /** Opset version per domain ('ai.onnx' for the default domain). */
  get opsets(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of this.proto.opsetImport) out[o.domain || 'ai.onnx'] = Number(o.version);
    return out;
  }

  /**
   * Every weight, by name: initializers (also old-IR ones listed in graph.input), Constant node values, and
   * both in If/Loop/Scan subgraphs. Names in subgraphs can shadow outer names; the innermost is kept under
   * `scope/name` when it clashes.
   */
  weights(): Map<string, Weight> {
    if (this.weightMap) return this.weightMap;
    const map = new Map<string, Weight>();
    const add = (name: string, w: Weight) => map.set(map.has(name) ? `${w.scope}/${name}` : name, w);
    const visit = (g: GraphProto, scope: string) => {
      const inputs = new Set(g.input.map((v) => v.name));
      for (const t of g.initializer) add(t.name, { ref: this.tensorRef(t, t.name), origin: { kind: 'initializer', graph: g, tensor: t, alsoInput: inputs.has(t.name) }, scope });
      g.node.forEach((n, i) => {
        if (n.opType === 'Constant' && (!n.domain || n.domain === 'ai.onnx')) {
          const t = n.attribute.find((a) => a.name === 'value' && a.t)?.t;
          if (t && n.output[0]) add(n.output[0], { ref: this.tensorRef(t, n.output[0]), origin: { kind: 'constant', graph: g, node: n, tensor: t }, scope });
        }
        for (const a of n.attribute) {
          for (const sub of a.g ? [a.g, ...a.graphs] : a.graphs) visit(sub, `${scope ? scope + '/' : ''}${n.name || `${n.opType}_${i}`}/${a.name}`);
        }
      });
    };
    visit(this.graph, '');
    this.weightMap = map;
    return map;
  }

  /** Weight-bearing nodes grouped with their weights (main graph and subgraphs). */
  layers(): Layer[] {
    if (this.layerList) return this.layerList;
    const weights = this.weights();
    const layers: Layer[] = [];
    const names = new Set<string>();
    const dqs = new Map<TensorRef, NodeProto>();
    const visit = (g: GraphProto) => {
      const consumers = new Map<string, NodeProto[]>();
      const producers = new Map<string, NodeProto>();
      for (const n of g.node) {
        for (const i of n.input) consumers.set(i, [...(consumers.get(i) ?? []), n]);
        for (const o of n.output) producers.set(o, n);
      }
      const direct = (name: string) => (name ? weights.get(name)?.ref : undefined);
      // A weight stored quantized reaches its node through DequantizeLinear: the layer's weight is the integer initializer.
      const resolve = (name: string) => {
        const ref = direct(name);
        if (ref || !name) return ref;
        const p = producers.get(name);
        if (p?.opType !== 'DequantizeLinear' || (p.domain && p.domain !== 'ai.onnx' && p.domain !== 'com.microsoft')) return undefined;
        const x = direct(p.input[0]);
        if (x && direct(p.input[1])) dqs.set(x, p);
        return x;
      };
      g.node.forEach((n, index) => {
        const layer = n.opType === 'DequantizeLinear' ? layerOf(n, direct, consumers) : layerOf(n, resolve, consumers, (name) => reshapedWeight(name, producers, direct));
        if (layer) {
          let name = n.name || `${n.opType}_${index}`;
          while (names.has(name)) name += "'";
          names.add(name);
          const dq = layer.kind !== 'other' ? dqs.get(layer.weight) : undefined;
          const attr = (key: string) => dq?.attribute.find((a) => a.name === key)?.i;
          const quant = dq && { node: dq.name, scale: direct(dq.input[1])!, zeroPoint: direct(dq.input[2] ?? ''), axis: Number(attr('axis') ?? 1), blockSize: Number(attr('block_size') ?? 0) };
          layers.push({ ...layer, name, ...(quant ? { quant } : {}) });
        }
        for (const a of n.attribute) for (const sub of a.g ? [a.g, ...a.graphs] : a.graphs) visit(sub);
      });
    };
    visit(this.graph);
    // A weight that a recognised layer owns (through a Reshape, say) is not listed again under its Reshape.
    // A layer owns its tensors and, for those stored quantized, the scale and zero point of their DequantizeLinear.
    const dqParams = (t: TensorRef) => (dqs.get(t)?.input.slice(1).flatMap((n) => (n ? [weights.get(n)?.ref] : [])) ?? []).filter((r): r is TensorRef => !!r);
    const owned = new Set(layers.filter((l) => l.kind !== 'other').flatMap((l) => Object.values(l.tensors).flatMap((t) => [t, ...dqParams(t)])));
    // Quantization plumbing is not a layer: a Q/DQ of an activation holds only a scalar scale and zero point,
    // and a DQ of a layer's weight or bias shows through that layer.
    const plumbing = (l: Layer) => (l.op === 'QuantizeLinear' || l.op === 'DequantizeLinear') && Object.values(l.tensors).every((t) => owned.has(t) || t.count <= 1);
    this.layerList = layers.filter((l) => l.kind !== 'other' || !(Object.values(l.tensors).every((t) => owned.has(t)) || plumbing(l)));
    return this.layerList;
  }

  /**
   * Forgets the weights and layers read so far, after a pass edited the graph in place (added, removed or
   * reshaped initializers), so that writing and inspecting see the edited graph.
   */
  invalidate(): void {
    this.weightMap = undefined;
    this.layerList = undefined;
  }

  /** Releases the external data file handles. */
  close(): void {
    this.external.close();
  }

  private tensorRef(t: TensorProto, name: string): TensorRef {
    return tensorRefOf(t, name, this.external, this.file);
  }
}

/** Files from this size on are read into a SharedArrayBuffer, so workers can read their weights in place. */
const sharedFrom = 64 << 20;

/**
 * A file's bytes as a plain Uint8Array (never a Buffer, whose slice() does not copy), in shared memory when
 * the file is big enough for statistics to be split across workers.
 */
function readModelBytes(file: string): Uint8Array {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const bytes = new Uint8Array(size >= sharedFrom ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
    for (let done = 0; done < size; ) {
      const n = fs.readSync(fd, bytes, done, Math.min(size - done, 1 << 30), done);
      if (n === 0) throw new InputError(file, 'the file shrank while it was being read');
      done += n;
    }
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A lazy reference to a TensorProto's data: raw_data (a view), typed fields, or external data resolved in
 * `external` (the model's folder). `source` names the file in errors.
 */
export function tensorRefOf(t: TensorProto, name: string, external: ExternalFiles, source: string): TensorRef {
  const shape = t.dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw new InputError(source, `tensor '${name}' has an invalid dimension ${d}`);
    return n;
  });
  return new TensorRef(name, t.dataType, shape, storageOf(t, name, external, source), source);
}

function storageOf(t: TensorProto, name: string, external: ExternalFiles, source: string): TensorStorage {
  if (t.dataLocation === 1) {
    const kv = new Map(t.externalData.map((e) => [e.key, e.value]));
    const location = kv.get('location');
    if (!location) throw new InputError(source, `tensor '${name}' is marked external but has no location`);
    const file = external.resolve(location, name);
    const int = (key: string, fallback: number) => {
      const text = kv.get(key);
      if (text === undefined) return fallback;
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new InputError(source, `tensor '${name}' has an invalid external data ${key} '${text}'`);
      return Number(text);
    };
    const offset = int('offset', 0);
    const length = int('length', dtypeBytes(t.dataType, t.dims.reduce((a, d) => a * Number(d), 1)));
    return { kind: 'external', file, offset, length, files: external };
  }
  const fields = [t.floatData, t.int32Data, t.int64Data, t.doubleData, t.uint64Data];
  const values = t.rawData.byteLength > 0 ? undefined : fields.find((f) => f.length > 0);
  return values ? { kind: 'values', values } : { kind: 'bytes', bytes: t.rawData };
}

/** Input roles of weight-bearing ops: which input is the weight, the bias, and the others. */
const roles: Record<string, { kind: LayerKind; inputs: string[] }> = {
  Conv: { kind: 'conv', inputs: ['input', 'weight', 'bias'] },
  ConvTranspose: { kind: 'convTranspose', inputs: ['input', 'weight', 'bias'] },
  Gemm: { kind: 'gemm', inputs: ['input', 'weight', 'bias'] },
  LSTM: { kind: 'rnn', inputs: ['input', 'weight', 'recurrence', 'bias'] },
  GRU: { kind: 'rnn', inputs: ['input', 'weight', 'recurrence', 'bias'] },
  RNN: { kind: 'rnn', inputs: ['input', 'weight', 'recurrence', 'bias'] },
  BatchNormalization: { kind: 'batchNorm', inputs: ['input', 'weight', 'bias', 'mean', 'var'] },
  LayerNormalization: { kind: 'layerNorm', inputs: ['input', 'weight', 'bias'] },
  InstanceNormalization: { kind: 'layerNorm', inputs: ['input', 'weight', 'bias'] },
};

/** Groups a node with its weights, or returns undefined for nodes that hold none. */
/**
 * A weight that reaches its consumer through a Reshape by a constant shape (CNTK's mnist-8 feeds its
 * classifier's MatMul this way): the initializer, and the shape the consumer sees.
 */
function reshapedWeight(name: string, producers: Map<string, NodeProto>, weight: (name: string) => TensorRef | undefined): { ref: TensorRef; shape: number[] } | undefined {
  const p = producers.get(name);
  if (!p || p.opType !== 'Reshape' || (p.domain && p.domain !== 'ai.onnx')) return undefined;
  const ref = weight(p.input[0]);
  const target = weight(p.input[1]);
  if (!ref || !isParameter(ref) || !target || target.dtype !== 7) return undefined;
  const dims = target.toNumbers();
  const shape = dims.map((d, i) => (d === 0 ? ref.shape[i] : d));
  const known = shape.reduce((a, d) => (d > 0 ? a * d : a), 1);
  const inferred = shape.map((d) => (d === -1 ? ref.count / known : d));
  return inferred.reduce((a, b) => a * b, 1) === ref.count ? { ref, shape: inferred } : undefined;
}

function layerOf(
  n: NodeProto,
  weight: (name: string) => TensorRef | undefined,
  consumers: Map<string, NodeProto[]>,
  reshaped: (name: string) => { ref: TensorRef; shape: number[] } | undefined = () => undefined,
): Omit<Layer, 'name'> | undefined {
  if (n.domain && n.domain !== 'ai.onnx') return otherLayer(n, weight);
  if (n.opType === 'Constant') return undefined;
  const attrInt = (name: string) => Number(n.attribute.find((a) => a.name === name)?.i ?? 0);
  const rule = roles[n.opType];
  if (rule) {
    const tensors: Record<string, TensorRef> = {};
    rule.inputs.forEach((role, i) => {
      const ref = weight(n.input[i]);
      if (ref && role !== 'input') tensors[role] = ref;
    });
    if (!tensors.weight) return otherLayer(n, weight);
    const outputAxis = n.opType === 'Gemm' ? (attrInt('transB') ? 0 : 1) : n.opType === 'ConvTranspose' ? 1 : 0;
    return { op: n.opType, kind: rule.kind, weight: tensors.weight, bias: tensors.bias, tensors, outputAxis };
  }
  if (n.opType === 'MatMul') {
    const [a, b] = [weight(n.input[0]), weight(n.input[1])];
    if (!a && !b) {
      // B through a Reshape that keeps the output channels as the last axis: the initializer is the weight.
      const r = reshaped(n.input[1]);
      if (r && !weight(n.input[0]) && r.shape.at(-1) === r.ref.shape.at(-1)) {
        return { op: 'MatMul', kind: 'matmul', weight: r.ref, tensors: { weight: r.ref }, outputAxis: r.ref.shape.length - 1 };
      }
    }
    const w = b ?? a;
    if (!w || (a && b)) return otherLayer(n, weight);
    // PyTorch exports Linear as MatMul + Add(bias): take that bias into the layer.
    const next = consumers.get(n.output[0]);
    const add = next?.length === 1 && next[0].opType === 'Add' ? next[0] : undefined;
    const bias = add ? weight(add.input.find((i) => i !== n.output[0]) ?? '') : undefined;
    const tensors: Record<string, TensorRef> = { weight: w, ...(bias && bias.shape.length === 1 ? { bias } : {}) };
    return { op: 'MatMul', kind: 'matmul', weight: w, bias: tensors.bias, tensors, outputAxis: b ? w.shape.length - 1 : 0 };
  }
  if (n.opType === 'Gather') {
    const table = weight(n.input[0]);
    if (table && !weight(n.input[1])) return { op: 'Gather', kind: 'embedding', weight: table, tensors: { weight: table }, outputAxis: 0 };
  }
  return otherLayer(n, weight);
}

/** Any other node that consumes weights (Add with a constant, Mul by a scale, contrib ops): listed, not grouped. */
function otherLayer(n: NodeProto, weight: (name: string) => TensorRef | undefined): Omit<Layer, 'name'> | undefined {
  const tensors: Record<string, TensorRef> = {};
  n.input.forEach((name, i) => {
    const ref = weight(name);
    if (ref && isParameter(ref)) tensors[`input${i}`] = ref;
  });
  const refs = Object.values(tensors);
  if (refs.length === 0) return undefined;
  const main = refs.reduce((a, b) => (b.count > a.count ? b : a));
  return { op: n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType, kind: 'other', weight: main, tensors, outputAxis: 0 };
}

/** Element types that hold shapes, indices or masks rather than learned values. */
const nonParameterTypes = new Set([7, 8, 9, 13]);

/** True for tensors that count as parameters (not int64/bool/string shape, index or mask constants). */
export function isParameter(t: TensorRef): boolean {
  return !nonParameterTypes.has(t.dtype);
}
