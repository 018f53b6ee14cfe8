import type { Layer, LayerKind } from '../../model/layers';
import type { TensorRef } from '../../model/tensorRef';

/** A Keras layer of a layers model: name, class and config. */
export interface KerasLayerInfo {
  name: string;
  className: string;
  config: Record<string, unknown>;
}

/**
 * Keras layer classes that carry weights: their kind, the role of their main weight, and the axis of it that
 * indexes output channels (Keras kernels are [in, out] for Dense, [kh, kw, in, out] for Conv2D).
 */
const kerasRules: Record<string, { kind: LayerKind; main: string[]; outputAxis: (w: TensorRef) => number }> = {
  Dense: { kind: 'gemm', main: ['kernel'], outputAxis: () => 1 },
  Conv1D: { kind: 'conv', main: ['kernel'], outputAxis: () => 2 },
  Conv2D: { kind: 'conv', main: ['kernel'], outputAxis: () => 3 },
  Conv3D: { kind: 'conv', main: ['kernel'], outputAxis: () => 4 },
  // Transposed conv kernels are [kh, kw, out, in].
  Conv2DTranspose: { kind: 'convTranspose', main: ['kernel'], outputAxis: () => 2 },
  Conv3DTranspose: { kind: 'convTranspose', main: ['kernel'], outputAxis: () => 3 },
  // Depthwise kernels are [kh, kw, in, multiplier]: output channels follow the input channels.
  DepthwiseConv2D: { kind: 'conv', main: ['depthwise_kernel'], outputAxis: () => 2 },
  SeparableConv2D: { kind: 'conv', main: ['pointwise_kernel', 'depthwise_kernel'], outputAxis: () => 3 },
  BatchNormalization: { kind: 'batchNorm', main: ['gamma', 'moving_mean'], outputAxis: () => 0 },
  LayerNormalization: { kind: 'layerNorm', main: ['gamma', 'beta'], outputAxis: () => 0 },
  Embedding: { kind: 'embedding', main: ['embeddings'], outputAxis: () => 0 },
  LSTM: { kind: 'rnn', main: ['kernel'], outputAxis: () => 1 },
  GRU: { kind: 'rnn', main: ['kernel'], outputAxis: () => 1 },
  SimpleRNN: { kind: 'rnn', main: ['kernel'], outputAxis: () => 1 },
};

/** The role of a weight named `<layer>/<role>` (`dense_1/kernel`, `lstm/lstm_cell/recurrent_kernel`). */
function roleOf(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1).replace(/:\d+$/, '');
}

/** Maps the weights of a layers model to its Keras layers by name prefix (the longest layer name that prefixes the weight). */
export function kerasLayers(keras: KerasLayerInfo[], weights: Map<string, TensorRef>): Layer[] {
  const names = [...new Set(keras.map((l) => l.name))].sort((a, b) => b.length - a.length);
  const byLayer = new Map<string, Record<string, TensorRef>>();
  for (const [name, ref] of weights) {
    const owner = names.find((n) => name.startsWith(`${n}/`)) ?? (name.includes('/') ? name.slice(0, name.indexOf('/')) : name);
    const tensors = byLayer.get(owner) ?? {};
    let role = roleOf(name);
    while (tensors[role]) role = `${role}_`;
    tensors[role] = ref;
    byLayer.set(owner, tensors);
  }
  const classOf = new Map(keras.map((l) => [l.name, l.className]));
  const order = [...keras.map((l) => l.name), ...[...byLayer.keys()].filter((k) => !classOf.has(k))];
  const out: Layer[] = [];
  for (const name of new Set(order)) {
    const tensors = byLayer.get(name);
    if (!tensors) continue;
    const op = classOf.get(name) ?? 'Unknown';
    const rule = kerasRules[op];
    const mainRole = rule?.main.find((r) => tensors[r]) ?? Object.keys(tensors)[0];
    const weight = tensors[mainRole];
    out.push({
      name,
      op,
      kind: rule && rule.main.includes(mainRole) ? rule.kind : 'other',
      weight,
      ...(tensors.bias ? { bias: tensors.bias } : tensors.beta && op === 'BatchNormalization' ? { bias: tensors.beta } : {}),
      tensors,
      outputAxis: rule ? Math.min(rule.outputAxis(weight), Math.max(0, weight.shape.length - 1)) : 0,
    });
  }
  return out;
}

/** A GraphDef node as TF.js's model.json stores it. */
interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, { b?: boolean; list?: { s?: string[] } }>;
}

/**
 * GraphDef ops that carry weights: kind, which inputs are which roles, and the output-channel axis of the
 * main weight (TF filters are [kh, kw, in, out]; depthwise [kh, kw, in, mult]; MatMul [in, out] unless transposed).
 */
const graphRules: Record<string, { kind: LayerKind; roles: string[]; outputAxis: (n: GraphNode) => number }> = {
  Conv2D: { kind: 'conv', roles: ['input', 'weight'], outputAxis: () => 3 },
  _FusedConv2D: { kind: 'conv', roles: ['input', 'weight', 'bias', 'extra'], outputAxis: () => 3 },
  Conv3D: { kind: 'conv', roles: ['input', 'weight'], outputAxis: () => 4 },
  DepthwiseConv2dNative: { kind: 'conv', roles: ['input', 'weight'], outputAxis: () => 2 },
  FusedDepthwiseConv2dNative: { kind: 'conv', roles: ['input', 'weight', 'bias', 'extra'], outputAxis: () => 2 },
  Conv2DBackpropInput: { kind: 'convTranspose', roles: ['outputShape', 'weight', 'input'], outputAxis: () => 2 },
  MatMul: { kind: 'matmul', roles: ['input', 'weight'], outputAxis: (n) => (n.attr?.transpose_b?.b ? 0 : 1) },
  _FusedMatMul: { kind: 'matmul', roles: ['input', 'weight', 'bias', 'extra'], outputAxis: (n) => (n.attr?.transpose_b?.b ? 0 : 1) },
  BatchMatMul: { kind: 'matmul', roles: ['input', 'weight'], outputAxis: (n) => (n.attr?.adj_y?.b ? 0 : 1) },
  BatchMatMulV2: { kind: 'matmul', roles: ['input', 'weight'], outputAxis: (n) => (n.attr?.adj_y?.b ? 0 : 1) },
  FusedBatchNorm: { kind: 'batchNorm', roles: ['input', 'weight', 'bias', 'mean', 'var'], outputAxis: () => 0 },
  FusedBatchNormV3: { kind: 'batchNorm', roles: ['input', 'weight', 'bias', 'mean', 'var'], outputAxis: () => 0 },
};

/** True for float weights (quantized ones read as float32). */
function isFloat(t: TensorRef): boolean {
  return t.dtype === 1 || t.dtype === 10 || t.dtype === 11 || t.dtype === 16;
}

/** Maps the weights of a graph model to the GraphDef nodes that consume them (through Identity nodes). */
export function graphLayers(topology: Record<string, unknown>, weights: Map<string, TensorRef>): Layer[] {
  const nodes = ((topology as { node?: GraphNode[] }).node ?? []).filter((n) => n && typeof n.name === 'string');
  const byName = new Map(nodes.map((n) => [n.name, n]));
  // A weight reaches a node as its Const node's name, possibly through Identity nodes.
  const weightOf = (input: string): TensorRef | undefined => {
    let name = input.replace(/^\^/, '').replace(/:0$/, '');
    for (let hops = 0; hops < 8; hops++) {
      const w = weights.get(name);
      if (w) return w;
      const n = byName.get(name);
      if (!n || n.op !== 'Identity' || !n.input?.[0]) return undefined;
      name = n.input[0].replace(/:0$/, '');
    }
    return undefined;
  };
  const out: Layer[] = [];
  for (const n of nodes) {
    if (n.op === 'Const' || n.op === 'Identity') continue;
    const inputs = (n.input ?? []).filter((i) => !i.startsWith('^'));
    const rule = graphRules[n.op];
    const tensors: Record<string, TensorRef> = {};
    inputs.forEach((i, k) => {
      const w = weightOf(i);
      // int32/bool constants are shapes, axes and indices, not parameters (as ONNX's int64 ones).
      if (w && isFloat(w)) tensors[rule?.roles[k] && rule.roles[k] !== 'input' ? (rule.roles[k] === 'extra' ? `extra${k}` : rule.roles[k]) : `input${k}`] = w;
    });
    const refs = Object.values(tensors);
    if (!refs.length) continue;
    const isLayer = rule && tensors.weight;
    const weight = isLayer ? tensors.weight : refs.reduce((a, b) => (b.count > a.count ? b : a));
    out.push({
      name: n.name,
      op: n.op,
      kind: isLayer ? rule.kind : 'other',
      weight,
      ...(tensors.bias ? { bias: tensors.bias } : {}),
      tensors,
      outputAxis: isLayer ? Math.min(rule.outputAxis(n), Math.max(0, weight.shape.length - 1)) : 0,
    });
  }
  return out;
}
