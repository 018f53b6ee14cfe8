/**
 * Best-effort static shape inference for ONNX graphs: seeds from declared types, then walks the nodes in
 * topological order with one rule per op family. Anything it cannot work out is left unknown, never an error.
 */
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from 'onnx-buf';
import { ExternalFiles } from '../../model/externalFiles';
import { tensorRefOf } from './model';
import { topologicalOrder } from './edit';
import { tensorCount, tensorShape } from './tensor';

/** One dimension: a size, a symbol carried from a declared dim_param, or null when unknown. */
export type Dim = number | string | null;

/** What is known of a value: its element type (TensorProto.DataType) and one entry per dimension. */
export interface ValueShape {
  dtype: number;
  shape: Dim[];
}

const FLOAT = 1;
const UINT8 = 2;
const INT64 = 7;
const BOOL = 9;

/** Small integer or float tensors worth keeping the values of: shapes, axes, pads, scales. */
const maxConstElements = 64;

/** What a rule sees of one node. */
interface Ctx {
  node: NodeProto;
  opset: number;
  /** The shape of input i, if known. */
  input(i: number): ValueShape | undefined;
  /** The values of input i, if it is a small known constant (possibly holding symbols). */
  value(i: number): Dim[] | undefined;
}

/** A rule's answer: per output, its shape and (for small integer results) its values. */
type Out = { shape?: ValueShape; value?: Dim[] } | undefined;
type Rule = (c: Ctx) => Out[];

/**
 * Infers the element type and shape of every value it can: graph inputs, initializers, declared value_info and
 * outputs, and node outputs by forward propagation. Values of unknown rank are absent from the map.
 */
export function inferShapes(model: ModelProto): Map<string, ValueShape> {
  const graph = model.graph;
  const shapes = new Map<string, ValueShape>();
  if (!graph) return shapes;
  const opset = Number(model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version ?? 21n);
  const values = new Map<string, Dim[]>();
  for (const vi of [...graph.valueInfo, ...graph.output, ...graph.input]) {
    const s = fromValueInfo(vi);
    if (s) shapes.set(vi.name, s);
  }
  for (const t of graph.initializer) {
    shapes.set(t.name, { dtype: t.dataType, shape: tensorShape(t) });
    const v = constValues(t);
    if (v) values.set(t.name, v);
  }
  for (const node of orderedNodes(graph)) {
    const rule = node.domain === '' || node.domain === 'ai.onnx' ? rules[node.opType] : undefined;
    if (!rule) continue;
    const ctx: Ctx = {
      node,
      opset,
      input: (i) => (node.input[i] ? shapes.get(node.input[i]) : undefined),
      value: (i) => (node.input[i] ? values.get(node.input[i]) : undefined),
    };
    let outs: Out[];
    try {
      outs = rule(ctx);
    } catch {
      // A malformed node (bad attribute, out-of-range axis) just leaves its outputs unknown.
      continue;
    }
    outs.forEach((o, i) => {
      const name = node.output[i];
      if (!name || !o) return;
      if (o.shape) shapes.set(name, merge(shapes.get(name), o.shape));
      if (o.value) values.set(name, o.value);
    });
  }
  return new Map([...shapes].map(([name, s]) => [name, { dtype: s.dtype, shape: [...s.shape] }]));
}

function orderedNodes(graph: GraphProto): NodeProto[] {
  try {
    return topologicalOrder(graph);
  } catch {
    return graph.node;
  }
}

function fromValueInfo(vi: ValueInfoProto): ValueShape | undefined {
  if (vi.type?.value.case !== 'tensorType') return undefined;
  const t = vi.type.value.value;
  if (!t.shape) return undefined;
  const shape = t.shape.dim.map((d): Dim => {
    if (d.value.case === 'dimValue') return Number(d.value.value);
    if (d.value.case === 'dimParam' && d.value.value !== '') return d.value.value;
    return null;
  });
  return { dtype: t.elemType, shape };
}

/** Values of a small inline int or float tensor; big or external tensors are weights, never shapes. */
function constValues(t: TensorProto): Dim[] | undefined {
  // Only small inline numeric constants (shapes, axes, pads, scales) matter for propagation.
  if (t.dataLocation === 1 || tensorCount(t) > maxConstElements || ![1, 6, 7, 11].includes(t.dataType)) return undefined;
  try {
    const ref = tensorRefOf(t, t.name, inlineOnly, '');
    ref.validate();
    return Array.from(ref.read() as ArrayLike<number | bigint>, Number);
  } catch {
    return undefined;
  }
}

/** External data is never consulted for constants; this stands in where a model's files would be. */
const inlineOnly = new ExternalFiles('.');

/** A declared shape is kept wherever the rule knows less. */
function merge(seed: ValueShape | undefined, got: ValueShape): ValueShape {
  if (!seed || seed.shape.length !== got.shape.length) return got;
  const shape = got.shape.map((d, i) => {
    const s = seed.shape[i];
    if (typeof d === 'number') return d;
    if (typeof s === 'number') return s;
    return d ?? s;
  });
  return { dtype: got.dtype || seed.dtype, shape };
}

// --- attributes -----------------------------------------------------------------------------------------------

function attr(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute.find((a) => a.name === name);
}

function attrInt(n: NodeProto, name: string, fallback: number): number {
  const a = attr(n, name);
  return a ? Number(a.i) : fallback;
}

function attrInts(n: NodeProto, name: string): number[] | undefined {
  const a = attr(n, name);
  return a ? a.ints.map(Number) : undefined;
}

function attrString(n: NodeProto, name: string, fallback: string): string {
  const a = attr(n, name);
  return a ? new TextDecoder().decode(a.s) : fallback;
}

// --- dimension helpers ----------------------------------------------------------------------------------------

function known(shape: Dim[]): shape is number[] {
  return shape.every((d) => typeof d === 'number');
}

function product(dims: Dim[]): Dim {
  return known(dims) ? dims.reduce((a, b) => a * b, 1) : null;
}

function axis(a: number, rank: number): number {
  const x = a < 0 ? a + rank : a;
  if (x < 0 || x >= rank) throw new Error(`axis ${a} out of range for rank ${rank}`);
  return x;
}

/** Numpy broadcasting of one dimension; a symbol against a size above 1 must be that size. */
function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === b) return a;
  if (typeof a === 'number' && a > 1) return a;
  if (typeof b === 'number' && b > 1) return b;
  return null;
}

function broadcast(shapes: Dim[][]): Dim[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const j = i - (rank - s.length);
      if (j >= 0) d = broadcastDim(d, s[j]);
    }
    out.push(d);
  }
  return out;
}

/** Integer-valued constants only: symbols and unknowns make the whole list unusable. */
function numbers(v: Dim[] | undefined): number[] | undefined {
  return v && known(v) ? v : undefined;
}

// --- rules, one per op family ---------------------------------------------------------------------------------

const same: Rule = (c) => {
  const x = c.input(0);
  return [x && { shape: x, value: c.node.opType === 'Identity' ? c.value(0) : undefined }];
};

const dropout: Rule = (c) => {
  const x = c.input(0);
  return [x && { shape: x }, x && { shape: { dtype: BOOL, shape: x.shape } }];
};

const cast: Rule = (c) => {
  const x = c.input(0);
  return [x && { shape: { dtype: attrInt(c.node, 'to', 0), shape: x.shape }, value: c.value(0) }];
};

const quantize: Rule = (c) => {
  const x = c.input(0);
  // The zero point fixes the output type; without one it is output_dtype (opset 21) or uint8.
  const dtype = c.input(2)?.dtype || attrInt(c.node, 'output_dtype', 0) || UINT8;
  return [x && { shape: { dtype, shape: x.shape } }];
};

const dequantize: Rule = (c) => {
  const x = c.input(0);
  // Since opset 19 the output takes the scale's type (float16, bfloat16); before, it is always float.
  return [x && { shape: { dtype: c.input(1)?.dtype ?? FLOAT, shape: x.shape } }];
};

const elementwise: Rule = (c) => {
  const ins = c.node.input.map((_, i) => c.input(i));
  if (ins.length === 0 || ins.some((s) => !s)) return [];
  const op = c.node.opType;
  const dtype = ['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual'].includes(op) ? BOOL : op === 'Where' ? ins[1]!.dtype : ins[0]!.dtype;
  return [{ shape: { dtype, shape: broadcast(ins.map((s) => s!.shape)) } }];
};

const matmul: Rule = (c) => {
  const a = c.input(0);
  const b = c.input(1);
  if (!a || !b || a.shape.length === 0 || b.shape.length === 0) return [];
  const as = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
  const bs = b.shape.length === 1 ? [b.shape[0], 1] : b.shape;
  const batch = broadcast([as.slice(0, -2), bs.slice(0, -2)]);
  const shape = [...batch, ...(a.shape.length === 1 ? [] : [as[as.length - 2]]), ...(b.shape.length === 1 ? [] : [bs[bs.length - 1]])];
  return [{ shape: { dtype: a.dtype, shape } }];
};

const gemm: Rule = (c) => {
  const a = c.input(0);
  const b = c.input(1);
  if (!a || !b || a.shape.length !== 2 || b.shape.length !== 2) return [];
  const m = attrInt(c.node, 'transA', 0) ? a.shape[1] : a.shape[0];
  const n = attrInt(c.node, 'transB', 0) ? b.shape[0] : b.shape[1];
  return [{ shape: { dtype: a.dtype, shape: [m, n] } }];
};

/** Output size of one spatial axis of a convolution or pooling window. */
function windowOut(size: Dim, k: Dim, stride: number, dilation: number, padBegin: number, padEnd: number, autoPad: string, ceilMode: boolean): Dim {
  if (typeof size !== 'number') return null;
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(size / stride);
  if (typeof k !== 'number') return null;
  const span = (k - 1) * dilation + 1;
  if (autoPad === 'VALID') return Math.floor((size - span) / stride) + 1;
  const room = size + padBegin + padEnd - span;
  if (!ceilMode) return Math.floor(room / stride) + 1;
  const out = Math.ceil(room / stride) + 1;
  // onnxruntime (and onnx since 1.16) drops a last window that would start inside the end padding.
  return (out - 1) * stride >= size + padBegin ? out - 1 : out;
}

function windowAttrs(n: NodeProto, rank: number) {
  return {
    strides: attrInts(n, 'strides') ?? Array<number>(rank).fill(1),
    dilations: attrInts(n, 'dilations') ?? Array<number>(rank).fill(1),
    pads: attrInts(n, 'pads') ?? Array<number>(2 * rank).fill(0),
    autoPad: attrString(n, 'auto_pad', 'NOTSET'),
    ceilMode: attrInt(n, 'ceil_mode', 0) === 1,
  };
}

const convPool: Rule = (c) => {
  const x = c.input(0);
  if (!x || x.shape.length < 3) return [];
  const rank = x.shape.length - 2;
  const w = c.node.opType === 'Conv' ? c.input(1) : undefined;
  const kernel: Dim[] = attrInts(c.node, 'kernel_shape') ?? w?.shape.slice(2) ?? Array<Dim>(rank).fill(null);
  const { strides, dilations, pads, autoPad, ceilMode } = windowAttrs(c.node, rank);
  const spatial = x.shape.slice(2).map((d, i) => windowOut(d, kernel[i], strides[i], dilations[i], pads[i], pads[i + rank], autoPad, ceilMode));
  const channels = c.node.opType === 'Conv' ? (w?.shape[0] ?? null) : x.shape[1];
  const shape = [x.shape[0], channels, ...spatial];
  // MaxPool's optional second output holds int64 indices of the same shape.
  return [{ shape: { dtype: x.dtype, shape } }, { shape: { dtype: INT64, shape } }];
};

const convTranspose: Rule = (c) => {
  const x = c.input(0);
  const w = c.input(1);
  if (!x || x.shape.length < 3) return [];
  const rank = x.shape.length - 2;
  const group = attrInt(c.node, 'group', 1);
  const wOut = w?.shape[1];
  const channels = typeof wOut === 'number' ? wOut * group : null;
  const given = attrInts(c.node, 'output_shape');
  if (given) return [{ shape: { dtype: x.dtype, shape: [x.shape[0], channels, ...given.slice(-rank)] } }];
  const kernel: Dim[] = attrInts(c.node, 'kernel_shape') ?? w?.shape.slice(2) ?? Array<Dim>(rank).fill(null);
  const { strides, dilations, pads, autoPad } = windowAttrs(c.node, rank);
  const outputPadding = attrInts(c.node, 'output_padding') ?? Array<number>(rank).fill(0);
  const spatial = x.shape.slice(2).map((d, i): Dim => {
    const k = kernel[i];
    if (typeof d !== 'number') return null;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return d * strides[i];
    if (typeof k !== 'number') return null;
    const [begin, end] = autoPad === 'VALID' ? [0, 0] : [pads[i], pads[i + rank]];
    return strides[i] * (d - 1) + outputPadding[i] + (k - 1) * dilations[i] + 1 - begin - end;
  });
  return [{ shape: { dtype: x.dtype, shape: [x.shape[0], channels, ...spatial] } }];
};

const globalPool: Rule = (c) => {
  const x = c.input(0);
  return [x && x.shape.length >= 2 ? { shape: { dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] } } : undefined];
};

const flatten: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const rank = x.shape.length;
  let a = attrInt(c.node, 'axis', 1);
  if (a < 0) a += rank;
  return [{ shape: { dtype: x.dtype, shape: [product(x.shape.slice(0, a)), product(x.shape.slice(a))] } }];
};

const reshape: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const target = c.opset < 5 ? attrInts(c.node, 'shape') : c.value(1);
  if (!target) {
    // The values are unknown but a known shape-input length still gives the rank.
    const len = c.input(1)?.shape[0];
    return [typeof len === 'number' ? { shape: { dtype: x.dtype, shape: Array<Dim>(len).fill(null) } } : undefined];
  }
  const allowZero = attrInt(c.node, 'allowzero', 0) === 1;
  const shape: Dim[] = target.map((d, i) => (d === 0 && !allowZero ? (x.shape[i] ?? null) : d));
  const hole = shape.indexOf(-1);
  if (hole >= 0) shape[hole] = inferredDim(x.shape, shape.filter((_, i) => i !== hole));
  return [{ shape: { dtype: x.dtype, shape }, value: c.value(0) }];
};

/** The size a -1 in Reshape stands for: equal factors (symbols too) cancel, so ['N', 12] from ['N', 3, 4] works. */
function inferredDim(from: Dim[], others: Dim[]): Dim {
  const rest = [...from];
  let divisor = 1;
  for (const d of others) {
    const k = d === null ? -1 : rest.indexOf(d);
    if (k >= 0) rest.splice(k, 1);
    else if (typeof d === 'number') divisor *= d;
    else return null;
  }
  const total = product(rest);
  return typeof total === 'number' && divisor !== 0 && total % divisor === 0 ? total / divisor : null;
}

const transpose: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const perm = attrInts(c.node, 'perm') ?? x.shape.map((_, i) => x.shape.length - 1 - i);
  return [{ shape: { dtype: x.dtype, shape: perm.map((p) => x.shape[p]) } }];
};

const concat: Rule = (c) => {
  const ins = c.node.input.map((_, i) => c.input(i));
  if (ins.length === 0 || ins.some((s) => !s)) return [];
  const shapes = ins.map((s) => s!.shape);
  const rank = shapes[0].length;
  if (shapes.some((s) => s.length !== rank)) return [];
  const a = axis(attrInt(c.node, 'axis', 0), rank);
  const shape = shapes[0].map((_, i) => {
    const column = shapes.map((s) => s[i]);
    if (i === a) return known(column) ? column.reduce((sum, d) => sum + d, 0) : null;
    return column.find((d) => typeof d === 'number') ?? column[0];
  });
  const parts = c.node.input.map((_, i) => c.value(i));
  const value = rank === 1 && parts.every((p) => p) ? parts.flatMap((p) => p!) : undefined;
  return [{ shape: { dtype: ins[0]!.dtype, shape }, value }];
};

/** Axes from the attribute (older opsets) or from a constant input (newer); null when not known. */
function axesOf(c: Ctx, inputFrom: number, inputIndex = 1): number[] | undefined | null {
  if (c.opset < inputFrom) return attrInts(c.node, 'axes');
  if (!c.node.input[inputIndex]) return undefined;
  return numbers(c.value(inputIndex)) ?? null;
}

const squeeze: Rule = (c) => {
  const x = c.input(0);
  const axes = axesOf(c, 13);
  if (!x || axes === null) return [];
  let shape: Dim[];
  if (axes) {
    const drop = new Set(axes.map((a) => axis(a, x.shape.length)));
    shape = x.shape.filter((_, i) => !drop.has(i));
  } else {
    if (!known(x.shape)) return [];
    shape = x.shape.filter((d) => d !== 1);
  }
  return [{ shape: { dtype: x.dtype, shape }, value: c.value(0) }];
};

const unsqueeze: Rule = (c) => {
  const x = c.input(0);
  const axes = axesOf(c, 13);
  if (!x || !axes) return [];
  const rank = x.shape.length + axes.length;
  const ones = new Set(axes.map((a) => axis(a, rank)));
  const rest = [...x.shape];
  const shape = Array.from({ length: rank }, (_, i) => (ones.has(i) ? 1 : (rest.shift() ?? null)));
  return [{ shape: { dtype: x.dtype, shape }, value: c.value(0) }];
};

const gather: Rule = (c) => {
  const data = c.input(0);
  const indices = c.input(1);
  if (!data || !indices) return [];
  const a = axis(attrInt(c.node, 'axis', 0), data.shape.length);
  const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  // Gathering from a shape vector is how exporters pick single dimensions out of Shape.
  const vec = c.value(0);
  const at = numbers(c.value(1));
  const value = data.shape.length === 1 && vec && at ? at.map((i) => vec[i < 0 ? i + vec.length : i] ?? null) : undefined;
  return [{ shape: { dtype: data.dtype, shape }, value }];
};

const reduce: Rule = (c) => {
  const x = c.input(0);
  const axes = axesOf(c, c.node.opType === 'ReduceSum' ? 13 : 18);
  if (!x || axes === null) return [];
  const keep = attrInt(c.node, 'keepdims', 1) === 1;
  if (!axes?.length && attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return [{ shape: x }];
  const all = !axes?.length;
  const reduced = new Set((axes ?? []).map((a) => axis(a, x.shape.length)));
  const shape = x.shape.flatMap((d, i) => (all || reduced.has(i) ? (keep ? [1] : []) : [d]));
  return [{ shape: { dtype: x.dtype, shape } }];
};

const shapeOp: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const rank = x.shape.length;
  const clampAxis = (a: number) => Math.min(Math.max(a < 0 ? a + rank : a, 0), rank);
  const dims = x.shape.slice(clampAxis(attrInt(c.node, 'start', 0)), clampAxis(attrInt(c.node, 'end', rank)));
  return [{ shape: { dtype: INT64, shape: [dims.length] }, value: dims }];
};

const pad: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const rank = x.shape.length;
  const pads = c.opset < 11 ? (attrInts(c.node, 'pads') ?? attrInts(c.node, 'paddings')) : numbers(c.value(1));
  const axes = c.node.input[3] ? numbers(c.value(3)) : x.shape.map((_, i) => i);
  if (!pads || !axes || pads.length !== 2 * axes.length) return [];
  const shape = [...x.shape];
  axes.forEach((a, i) => {
    const j = axis(a, rank);
    const d = shape[j];
    shape[j] = typeof d === 'number' ? d + pads[i] + pads[i + axes.length] : null;
  });
  return [{ shape: { dtype: x.dtype, shape } }];
};

const resize: Rule = (c) => {
  const x = c.input(0);
  if (!x || attr(c.node, 'axes')) return [];
  const policy = attrString(c.node, 'keep_aspect_ratio_policy', 'stretch');
  const scaleInput = c.node.opType === 'Upsample' || c.opset < 11 ? 1 : 2;
  const scales = c.opset < 9 ? attr(c.node, 'scales')?.floats : numbers(c.value(scaleInput));
  const sizes = c.node.opType === 'Resize' && c.opset >= 11 ? numbers(c.value(3)) : undefined;
  if (sizes?.length === x.shape.length && policy === 'stretch') return [{ shape: { dtype: x.dtype, shape: sizes } }];
  if (!scales || scales.length !== x.shape.length) return [];
  // onnxruntime multiplies in float32 and truncates.
  const shape = x.shape.map((d, i) => (typeof d === 'number' ? Math.floor(Math.fround(Math.fround(scales[i]) * d)) : scales[i] === 1 ? d : null));
  return [{ shape: { dtype: x.dtype, shape } }];
};

/** Output length of a numpy-style slice over a dimension of size `d`. */
function sliceLength(d: number, start: number, end: number, step: number): { from: number; len: number } {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  if (step > 0) {
    const from = clamp(start < 0 ? start + d : start, 0, d);
    const to = clamp(end < 0 ? end + d : end, 0, d);
    return { from, len: Math.max(0, Math.ceil((to - from) / step)) };
  }
  const from = clamp(start < 0 ? start + d : start, 0, d - 1);
  const to = clamp(end < 0 ? end + d : end, -1, d - 1);
  return { from, len: Math.max(0, Math.ceil((from - to) / -step)) };
}

const slice: Rule = (c) => {
  const x = c.input(0);
  if (!x) return [];
  const rank = x.shape.length;
  const fromAttrs = c.opset < 10;
  const starts = fromAttrs ? attrInts(c.node, 'starts') : numbers(c.value(1));
  const ends = fromAttrs ? attrInts(c.node, 'ends') : numbers(c.value(2));
  const axes = (fromAttrs ? attrInts(c.node, 'axes') : c.node.input[3] ? numbers(c.value(3)) : undefined) ?? starts?.map((_, i) => i);
  const steps = (!fromAttrs && c.node.input[4] ? numbers(c.value(4)) : undefined) ?? starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps) return [];
  const shape = [...x.shape];
  const vec = rank === 1 ? c.value(0) : undefined;
  let value: Dim[] | undefined;
  axes.forEach((a, i) => {
    const j = axis(a, rank);
    const d = shape[j];
    if (typeof d !== 'number') {
      // A symbolic dimension survives only a slice that keeps all of it.
      const whole = steps[i] === 1 && (starts[i] === 0 || starts[i] <= -Number.MAX_SAFE_INTEGER) && ends[i] >= Number.MAX_SAFE_INTEGER;
      shape[j] = whole ? d : null;
      return;
    }
    const { from, len } = sliceLength(d, starts[i], ends[i], steps[i]);
    shape[j] = len;
    if (vec) value = Array.from({ length: len }, (_, k) => vec[from + k * steps[i]] ?? null);
  });
  return [{ shape: { dtype: x.dtype, shape }, value }];
};

/** ConstantOfShape: the shape is input 0's values; the element type is that of `value` (float32 when absent). */
const constantOfShape: Rule = (c) => {
  const dims = c.value(0);
  if (!dims) return [];
  const t = attr(c.node, 'value')?.t;
  return [{ shape: { dtype: t?.dataType ?? FLOAT, shape: dims } }];
};

const constant: Rule = (c) => {
  const n = c.node;
  const t = attr(n, 'value')?.t;
  if (t) return [{ shape: { dtype: t.dataType, shape: tensorShape(t) }, value: constValues(t) }];
  const scalar = (dtype: number, v: number) => [{ shape: { dtype, shape: [] }, value: [v] }];
  const list = (dtype: number, v: number[]) => [{ shape: { dtype, shape: [v.length] }, value: v.length <= maxConstElements ? v : undefined }];
  const a = n.attribute[0];
  switch (a?.name) {
    case 'value_int': return scalar(INT64, Number(a.i));
    case 'value_float': return scalar(FLOAT, a.f);
    case 'value_ints': return list(INT64, a.ints.map(Number));
    case 'value_floats': return list(FLOAT, a.floats);
    default: return [];
  }
};

/** Op type to rule, for the default ONNX domain. */
const rules: Record<string, Rule> = {
  ...Object.fromEntries(
    [
      'Relu', 'Sigmoid', 'Tanh', 'LeakyRelu', 'Clip', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Erf', 'Softmax', 'LogSoftmax',
      'Identity', 'BatchNormalization', 'LayerNormalization', 'InstanceNormalization', 'Reciprocal', 'Floor', 'Ceil',
      'HardSigmoid', 'Elu', 'Selu', 'PRelu', 'Softplus', 'HardSwish', 'Gelu', 'Not', 'Sign', 'Round', 'LRN',
    ].map((op) => [op, same]),
  ),
  ...Object.fromEntries(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'Where', 'Sum', 'Mean', 'And', 'Or'].map((op) => [op, elementwise])),
  ...Object.fromEntries(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2'].map((op) => [op, reduce])),
  Dropout: dropout,
  Cast: cast,
  QuantizeLinear: quantize,
  DequantizeLinear: dequantize,
  MatMul: matmul,
  Gemm: gemm,
  Conv: convPool,
  MaxPool: convPool,
  AveragePool: convPool,
  LpPool: convPool,
  ConvTranspose: convTranspose,
  GlobalAveragePool: globalPool,
  GlobalMaxPool: globalPool,
  Flatten: flatten,
  Reshape: reshape,
  Transpose: transpose,
  Concat: concat,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Gather: gather,
  Shape: shapeOp,
  Pad: pad,
  Resize: resize,
  Upsample: resize,
  Slice: slice,
  Constant: constant,
  ConstantOfShape: constantOfShape,
};
