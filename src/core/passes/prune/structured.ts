/**
 * Structured channel pruning: dependency groups (the channels that must go together, after Torch-Pruning's
 * DepGraph), per-channel importance, and physical shrinking of every tensor the removed channels touch, so
 * the file, the parameter count and the latency really drop.
 *
 * The finder gives every output channel of a Conv, Gemm or MatMul an element id and follows it through the
 * graph: pass-through ops carry an activation's element map unchanged, residual Adds union the maps of their
 * branches element by element, Concat concatenates them, Flatten expands each channel into a block of H*W
 * features. Every tensor axis indexed by channels (weights, biases, BN statistics, per-channel constants, the
 * next layer's inputs) is recorded as a slice with its element map. A group is the set of producers whose
 * elements were coupled; its channels are the union-find classes of those elements. Anything the finder
 * cannot follow (Transpose, an unknown Reshape, a channel-mixing op, a model output) blocks the elements it
 * touches, and their group is skipped with the reason.
 */
import type * as ort from 'onnxruntime-node';
import type { GraphProto, NodeProto } from 'onnx-buf';
import { CancelledError } from '../../../protocol/rpc';
import { openDataset } from '../../data';
import { InputError } from '../../errors';
import { int64Tensor } from '../../formats/onnx/build';
import { outerScopeNames, replaceTensorData, subgraphs, topologicalOrder } from '../../formats/onnx/edit';
import type { OnnxModel } from '../../formats/onnx/model';
import { inferShapes, type ValueShape } from '../../formats/onnx/shapes';
import { modelInputs, openSession } from '../../runtime/session';
import { outputFloats, toOrt } from '../../runtime/tensors';
import type { Calibration, PassContext } from '../pass';
import type { LayerPruneSummary, PruneMask, PruneOptions, PruneReport } from './unstructured';

/** What a member slice is to the layer that reads it. */
export type MemberRole = 'out' | 'in' | 'bias' | 'bn' | 'bnParam' | 'depthwise' | 'const';

/** One tensor axis that shrinks with a group's channels. */
export interface GroupMember {
  /** Initializer (or constant value) name. */
  tensor: string;
  axis: number;
  /** Index along `axis` of this group's first channel (non-zero behind a Concat). */
  offset: number;
  /** How many of the group's channels this member holds. */
  count: number;
  /** Indices per channel along `axis`: H*W for a Gemm/MatMul fed by a Flatten, else 1. */
  block: number;
  role: MemberRole;
  /** The node that reads the tensor. */
  node: string;
}

/** A dependency group: channels that must be removed together, across every member. */
export interface ChannelGroup {
  id: number;
  /** Number of coupled channels (removal units). */
  channels: number;
  /** Nodes whose output channels these are (Conv, Gemm, MatMul). */
  producers: string[];
  /** Nodes touched in any way (producers, consumers, BN, depthwise convs). */
  nodes: string[];
  members: GroupMember[];
  /** Activations that carry the channels. */
  values: string[];
  prunable: boolean;
  /** Why not prunable: the first reasons, in one line. */
  reason?: string;
  /** Every reason, for tests and tools. */
  reasons: string[];
}

/** A tracked activation: the element id of each channel, its channel axis, and indices per channel. */
interface Track {
  map: Int32Array;
  axis: number;
  rank: number;
  block: number;
}

/** A tensor axis indexed by channels, with the element id of each channel along it. */
interface Slice {
  tensor: string;
  axis: number;
  map: Int32Array;
  block: number;
  role: MemberRole;
  node: string;
}

/** The output channels of one producer node: elements first .. first+count-1. */
interface Producer {
  node: string;
  value: string;
  first: number;
  count: number;
  /** Axis of `value` holding the channels. */
  axis: number;
}

class UnionFind {
  readonly parent: number[] = [];
  make(): number {
    this.parent.push(this.parent.length);
    return this.parent.length - 1;
  }
  find(i: number): number {
    const p = this.parent;
    while (p[i] !== i) {
      p[i] = p[p[i]];
      i = p[i];
    }
    return i;
  }
  /** Joins two classes; the smaller id stays the root, so roots follow creation order. */
  union(a: number, b: number): void {
    const [ra, rb] = [this.find(a), this.find(b)];
    if (ra === rb) return;
    if (ra < rb) this.parent[rb] = ra;
    else this.parent[ra] = rb;
  }
}

/** Ops that keep every channel where it is (element-wise on one activation, or pooling over space). */
const passThrough = new Set([
  'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip', 'HardSigmoid', 'HardSwish', 'Elu', 'Selu', 'Celu', 'Softplus', 'Softsign',
  'ThresholdedRelu', 'Gelu', 'Mish', 'Erf', 'Abs', 'Neg', 'Exp', 'Sqrt', 'Dropout', 'Identity', 'Cast',
  'MaxPool', 'AveragePool', 'LpPool', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool',
]);

/** Element-wise ops over several inputs (broadcasting): tracked inputs share their channels. */
const elementwise = new Set(['Add', 'Sub', 'Mul', 'Div', 'Sum', 'Max', 'Min', 'Mean', 'PRelu', 'Pow']);

const intAttr = (n: NodeProto, name: string, fallback: number): number => {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
};
const nodeName = (n: NodeProto): string => n.name || n.output[0] || n.opType;

/**
 * The channel dependency graph of a model's main graph: its groups (with why each is or is not prunable),
 * and what `shrink` needs to remove channels from them.
 */
export class ChannelGraph {
  readonly groups: ChannelGroup[] = [];
  private readonly uf = new UnionFind();
  /** Why each blocked element cannot be removed (every reason, so a report names them all). */
  private readonly blocked = new Map<number, string[]>();
  private readonly producers: Producer[] = [];
  /** Producer index of each element. */
  private readonly producerOf: number[] = [];
  private readonly slices: Slice[] = [];
  private readonly tracks = new Map<string, Track>();
  private readonly depthwise: Array<{ node: NodeProto; weight: string }> = [];
  private readonly flattenReshapes: Array<{ node: NodeProto; value: string; first: number }> = [];
  private readonly shapes: Map<string, ValueShape>;
  private readonly consts = new Set<string>();
  private readonly readers = new Map<string, Set<string>>();
  /** Group id of each element root, and each group's channel roots in order. */
  private groupOfRoot = new Map<number, number>();
  private unitsOf: number[][] = [];
  private slicesOf: Slice[][] = [];

  constructor(private readonly model: OnnxModel) {
    this.shapes = inferShapes(model.proto);
    this.build(model.graph);
    this.finish();
  }

  // --- building ------------------------------------------------------------------------------------------------

  private dims(name: string): number[] | undefined {
    const s = this.shapes.get(name);
    return s && s.shape.every((d) => typeof d === 'number') ? (s.shape as number[]) : undefined;
  }

  private rankOf(name: string): number | undefined {
    return this.shapes.get(name)?.shape.length;
  }

  /** Small integer constants (Reshape targets, Pad amounts), from initializers or Constant nodes. */
  private intValues(name: string): number[] | undefined {
    const ref = this.model.weights().get(name)?.ref;
    if (!ref || ref.count > 64) return undefined;
    try {
      return ref.toNumbers();
    } catch {
      return undefined;
    }
  }

  private block(elements: Iterable<number>, reason: string): void {
    for (const e of elements) {
      const list = this.blocked.get(e);
      if (!list) this.blocked.set(e, [reason]);
      else if (!list.includes(reason)) list.push(reason);
    }
  }

  private blockValue(value: string, reason: string): void {
    const t = this.tracks.get(value);
    if (t) this.block(t.map, reason);
  }

  private newProducer(node: string, value: string, count: number, axis: number): Int32Array {
    const map = new Int32Array(count);
    const index = this.producers.length;
    for (let c = 0; c < count; c++) {
      map[c] = this.uf.make();
      this.producerOf.push(index);
    }
    this.producers.push({ node, value, first: map[0] ?? this.uf.parent.length, count, axis });
    return map;
  }

  private slice(tensor: string, axis: number, map: Int32Array, block: number, role: MemberRole, node: string): void {
    this.slices.push({ tensor, axis, map, block, role, node });
  }

  /** The data inputs of the graph: non-initializer inputs of rank >= 2 (old-IR exports declare rank-1 parameters as inputs too). */
  private markConstants(g: GraphProto, order: NodeProto[]): void {
    const inits = new Set(g.initializer.map((t) => t.name));
    for (const t of inits) this.consts.add(t);
    for (const v of g.input) if (!inits.has(v.name) && (this.rankOf(v.name) ?? 2) <= 1) this.consts.add(v.name);
    for (const n of order) {
      const ins = n.input.filter((i) => i !== '');
      if (n.opType === 'Constant' || (subgraphs(n).length === 0 && ins.length > 0 && ins.every((i) => this.consts.has(i)))) {
        for (const o of n.output) if (o) this.consts.add(o);
      }
    }
  }

  private build(g: GraphProto): void {
    const order = topologicalOrder(g);
    this.markConstants(g, order);
    for (const n of order) for (const i of n.input) if (i) this.readers.set(i, new Set([...(this.readers.get(i) ?? []), nodeName(n)]));
    for (const n of order) {
      if (n.output.every((o) => this.consts.has(o))) continue;
      const handled = new Set<number>();
      if (!n.domain || n.domain === 'ai.onnx') this.visit(n, handled);
      n.input.forEach((v, i) => {
        if (!handled.has(i) && this.tracks.has(v)) {
          this.blockValue(v, `${n.opType} node '${nodeName(n)}' reads the channels of '${v}' in a way that is not traced`);
        }
      });
      for (const sub of subgraphs(n)) {
        for (const v of outerScopeNames(sub)) this.blockValue(v, `a subgraph of ${n.opType} node '${nodeName(n)}' reads '${v}'`);
      }
    }
    for (const o of g.output) this.blockValue(o.name, `its channels reach the model output '${o.name}'`);
  }

  private visit(n: NodeProto, handled: Set<number>): void {
    const op = n.opType;
    const x = this.tracks.get(n.input[0]);
    const name = nodeName(n);
    if (op === 'Conv') return this.conv(n, handled);
    if (op === 'Gemm' || op === 'MatMul') return this.dense(n, handled);
    if (op === 'BatchNormalization' || op === 'InstanceNormalization') {
      if (!x || x.block !== 1 || x.axis !== 1) return;
      handled.add(0);
      n.input.slice(1).forEach((p, i) => {
        if (!p) return;
        handled.add(i + 1);
        this.slice(p, 0, x.map, 1, i === 0 ? 'bn' : i === 1 ? 'bias' : 'bnParam', name);
      });
      this.tracks.set(n.output[0], x);
      return;
    }
    if (passThrough.has(op)) {
      if (!x) return;
      handled.add(0);
      this.tracks.set(n.output[0], x);
      return;
    }
    if (op === 'Softmax' || op === 'LogSoftmax') {
      if (!x) return;
      const a = intAttr(n, 'axis', this.opset() >= 13 ? -1 : 1);
      if ((a < 0 ? a + x.rank : a) === x.axis) return;
      handled.add(0);
      this.tracks.set(n.output[0], x);
      return;
    }
    if (op === 'Pad') return this.pad(n, handled);
    if (elementwise.has(op)) return this.elementwise(n, handled);
    if (op === 'Concat') return this.concat(n, handled);
    if (op === 'Flatten') {
      if (!x || x.axis !== 1 || intAttr(n, 'axis', 1) !== 1) return;
      const d = this.dims(n.input[0]);
      if (!d) return this.blockValue(n.input[0], `the spatial size before Flatten '${name}' is unknown`);
      handled.add(0);
      this.tracks.set(n.output[0], { map: x.map, axis: 1, rank: 2, block: x.block * d.slice(2).reduce((a, b) => a * b, 1) });
      return;
    }
    if (op === 'Reshape') return this.reshape(n, handled);
    if (op === 'Transpose' && x) {
      this.blockValue(n.input[0], `Transpose '${name}' (perm [${n.attribute.find((a) => a.name === 'perm')?.ints.join(',') ?? ''}]) moves the channels; not traced`);
    }
  }

  private opset(): number {
    return this.model.opsets['ai.onnx'] ?? 13;
  }

  private conv(n: NodeProto, handled: Set<number>): void {
    const name = nodeName(n);
    const [xName, wName, bName] = n.input;
    const w = this.dims(wName);
    const x = this.tracks.get(xName);
    if (!w || !this.consts.has(wName)) {
      if (x) this.blockValue(xName, `Conv '${name}' has a computed or unknown-shape weight`);
      return;
    }
    const group = intAttr(n, 'group', 1);
    const out = w[0];
    const rank = this.rankOf(n.output[0]) ?? w.length;
    const hasBias = !!bName && this.consts.has(bName);
    if (x && (x.axis !== 1 || x.block !== 1)) return;
    if (x) handled.add(0);
    handled.add(1);
    if (bName) handled.add(2);
    if (group === 1) {
      if (x) this.slice(wName, 1, x.map, 1, 'in', name);
      const map = this.newProducer(name, n.output[0], out, 1);
      this.slice(wName, 0, map, 1, 'out', name);
      if (hasBias) this.slice(bName, 0, map, 1, 'bias', name);
      this.tracks.set(n.output[0], { map, axis: 1, rank, block: 1 });
      return;
    }
    if (x && w[1] === 1 && group === out && x.map.length === out) {
      // Depthwise: channel c in, channel c out; the weight's rows and the group count follow the input channels.
      this.slice(wName, 0, x.map, 1, 'depthwise', name);
      if (hasBias) this.slice(bName, 0, x.map, 1, 'bias', name);
      this.depthwise.push({ node: n, weight: wName });
      this.tracks.set(n.output[0], { map: x.map, axis: 1, rank, block: 1 });
      return;
    }
    const reason = `grouped Conv '${name}' (group=${group}) ties channels across its groups; not handled`;
    if (x) this.block(x.map, reason);
    const map = this.newProducer(name, n.output[0], out, 1);
    this.block(map, reason);
    this.tracks.set(n.output[0], { map, axis: 1, rank, block: 1 });
  }

  /** Gemm (A x B + C) and MatMul with a constant right operand. */
  private dense(n: NodeProto, handled: Set<number>): void {
    const name = nodeName(n);
    const [aName, bName, cName] = n.input;
    const x = this.tracks.get(aName);
    const b = this.dims(bName);
    const gemm = n.opType === 'Gemm';
    if (!b || b.length !== 2 || !this.consts.has(bName) || (gemm && intAttr(n, 'transA', 0) === 1)) {
      if (x) this.blockValue(aName, `${n.opType} '${name}' has a computed, transposed-A or non-2-D weight`);
      return;
    }
    const transB = gemm && intAttr(n, 'transB', 0) === 1;
    const [inAxis, outAxis] = transB ? [1, 0] : [0, 1];
    const outRank = this.rankOf(n.output[0]) ?? 2;
    if (x) {
      if (x.axis !== x.rank - 1) return;
      handled.add(0);
      this.slice(bName, inAxis, x.map, x.block, 'in', name);
    }
    handled.add(1);
    const map = this.newProducer(name, n.output[0], b[outAxis], outRank - 1);
    this.slice(bName, outAxis, map, 1, 'out', name);
    if (gemm && cName) {
      handled.add(2);
      const c = this.dims(cName);
      if (c && this.consts.has(cName) && c.length >= 1 && c[c.length - 1] === b[outAxis] && b[outAxis] > 1) this.slice(cName, c.length - 1, map, 1, 'bias', name);
      else if (!c || c.some((d) => d !== 1)) this.block(map, `the bias of Gemm '${name}' has a shape that is not per output`);
    }
    this.tracks.set(n.output[0], { map, axis: outRank - 1, rank: outRank, block: 1 });
  }

  private pad(n: NodeProto, handled: Set<number>): void {
    const x = this.tracks.get(n.input[0]);
    if (!x) return;
    const pads = this.opset() < 11 ? n.attribute.find((a) => a.name === 'pads')?.ints.map(Number) : n.input[1] ? this.intValues(n.input[1]) : undefined;
    if (!pads || n.input[3] || pads.length !== 2 * x.rank || pads[x.axis] !== 0 || pads[x.axis + x.rank] !== 0) return;
    handled.add(0);
    this.tracks.set(n.output[0], x);
  }

  private elementwise(n: NodeProto, handled: Set<number>): void {
    const name = nodeName(n);
    const ins = n.input.map((v) => ({ v, t: this.tracks.get(v) }));
    const tracked = ins.filter((i) => i.t);
    if (tracked.length === 0) return;
    const first = tracked[0].t!;
    const fromEnd = first.rank - first.axis;
    const outRank = this.rankOf(n.output[0]) ?? Math.max(...ins.map((i) => this.rankOf(i.v) ?? 0));
    const fail = (why: string) => {
      for (const i of tracked) this.block(i.t!.map, `${n.opType} '${name}': ${why}`);
    };
    if (tracked.some((i) => i.t!.rank - i.t!.axis !== fromEnd || i.t!.map.length !== first.map.length || i.t!.block !== first.block)) {
      return fail('its inputs hold channels on different axes, counts or blocks');
    }
    const width = first.map.length * first.block;
    const constSlices: Array<[string, number]> = [];
    for (const [index, { v, t }] of ins.entries()) {
      if (t || !v) continue;
      const d = this.dims(v);
      const idx = d ? d.length - fromEnd : -1;
      const size = d && idx >= 0 ? d[idx] : 1;
      if (!d || size === 1) {
        // Broadcast along the channels (a scalar, or per-sample / per-position values): nothing to shrink.
        if (!d && !this.consts.has(v)) return fail(`the shape of '${v}' is unknown`);
        handled.add(index);
        continue;
      }
      if (size !== width) return fail(`'${v}' has ${size} entries along the channels, not ${width}`);
      if (!this.consts.has(v)) return fail(`'${v}' is an activation whose channels are not traced`);
      constSlices.push([v, idx]);
      handled.add(index);
    }
    for (const i of tracked.slice(1)) for (let c = 0; c < first.map.length; c++) this.uf.union(first.map[c], i.t!.map[c]);
    for (const [index, i] of ins.entries()) if (i.t) handled.add(index);
    for (const [v, idx] of constSlices) this.slice(v, idx, first.map, first.block, 'const', name);
    this.tracks.set(n.output[0], { ...first, axis: outRank - fromEnd, rank: outRank });
  }

  private concat(n: NodeProto, handled: Set<number>): void {
    const name = nodeName(n);
    const ins = n.input.map((v) => ({ v, t: this.tracks.get(v) }));
    const known = ins.find((i) => i.t)?.t;
    if (!known) return;
    const rank = known.rank;
    const raw = intAttr(n, 'axis', 0);
    const axis = raw < 0 ? raw + rank : raw;
    if (axis !== known.axis || ins.some((i) => i.t && (i.t.axis !== axis || i.t.block !== known.block || i.t.rank !== rank))) return;
    const parts: Int32Array[] = [];
    for (const { v, t } of ins) {
      if (t) {
        parts.push(t.map);
        continue;
      }
      const d = this.dims(v);
      if (!d || known.block !== 1) return;
      // An untraced input keeps its channels: placeholders, blocked, hold its place in the output.
      const map = this.newProducer(`(${v})`, v, d[axis], axis);
      this.block(map, `Concat '${name}' also joins '${v}', whose channels are not traced`);
      parts.push(map);
    }
    const map = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      map.set(p, off);
      off += p.length;
    }
    ins.forEach((_, i) => handled.add(i));
    this.tracks.set(n.output[0], { map, axis, rank, block: known.block });
  }

  /** A Reshape that flattens [N, C, H, W] into [N, C*H*W] (target [0 or N, -1 or C*H*W]) acts as Flatten. */
  private reshape(n: NodeProto, handled: Set<number>): void {
    const name = nodeName(n);
    const x = this.tracks.get(n.input[0]);
    if (!x) return;
    const d = this.dims(n.input[0]);
    const target = n.input[1] ? this.intValues(n.input[1]) : undefined;
    const flat = d ? d.slice(1).reduce((a, b) => a * b, 1) : -1;
    if (d && target && x.axis === 1 && x.block === 1 && target.length === 2 && (target[0] === 0 || target[0] === d[0]) && (target[1] === -1 || target[1] === flat)) {
      handled.add(0);
      handled.add(1);
      this.flattenReshapes.push({ node: n, value: n.output[0], first: target[0] });
      this.tracks.set(n.output[0], { map: x.map, axis: 1, rank: 2, block: d.slice(2).reduce((a, b) => a * b, 1) });
      return;
    }
    this.blockValue(n.input[0], `Reshape '${name}' to [${target?.join(',') ?? '?'}] cannot be traced`);
  }

  /** Checks shared tensors, then forms the groups. */
  private finish(): void {
    // A member tensor must be read by exactly one node along one axis, else shrinking it would break another reader.
    const byTensor = new Map<string, Slice[]>();
    for (const s of this.slices) byTensor.set(s.tensor, [...(byTensor.get(s.tensor) ?? []), s]);
    for (const [tensor, list] of byTensor) {
      const axes = list.map((s) => s.axis);
      const readers = this.readers.get(tensor)?.size ?? 0;
      if (readers > 1 || new Set(axes).size !== axes.length) {
        for (const s of list) this.block(s.map, `tensor '${tensor}' is shared by ${readers} nodes`);
      }
    }
    const roots = this.uf.parent.map((_, e) => this.uf.find(e));
    // Producers coupled through any element form one group.
    const puf = new UnionFind();
    for (let i = 0; i < this.producers.length; i++) puf.make();
    roots.forEach((r, e) => puf.union(this.producerOf[e], this.producerOf[r]));
    const groupIdOf = new Map<number, number>();
    const groupOfProducer = this.producers.map((_, p) => {
      const r = puf.find(p);
      if (!groupIdOf.has(r)) groupIdOf.set(r, groupIdOf.size);
      return groupIdOf.get(r)!;
    });
    const units: number[][] = Array.from({ length: groupIdOf.size }, () => []);
    roots.forEach((r, e) => {
      if (r === e) {
        const gid = groupOfProducer[this.producerOf[e]];
        this.groupOfRoot.set(r, gid);
        units[gid].push(r);
      }
    });
    this.unitsOf = units;
    // One pass over each slice and activation: the groups it touches, with the slice's offset and count in each.
    const membersOf: GroupMember[][] = units.map(() => []);
    const nodesOf: Array<Set<string>> = units.map(() => new Set());
    this.slicesOf = units.map(() => []);
    for (const s of this.slices) {
      const seen = new Map<number, { offset: number; count: number }>();
      s.map.forEach((e, j) => {
        const gid = this.groupOfRoot.get(roots[e])!;
        const at = seen.get(gid);
        if (at) at.count++;
        else seen.set(gid, { offset: j * s.block, count: 1 });
      });
      for (const [gid, { offset, count }] of seen) {
        membersOf[gid].push({ tensor: s.tensor, axis: s.axis, offset, count, block: s.block, role: s.role, node: s.node });
        nodesOf[gid].add(s.node);
        this.slicesOf[gid].push(s);
      }
    }
    const valuesOf: string[][] = units.map(() => []);
    for (const [v, t] of this.tracks) for (const gid of new Set(Array.from(t.map, (e) => this.groupOfRoot.get(roots[e])!))) valuesOf[gid].push(v);
    for (let gid = 0; gid < units.length; gid++) {
      const producers = this.producers.filter((_, p) => groupOfProducer[p] === gid);
      const reasons = new Set<string>();
      for (const p of producers) for (let e = p.first; e < p.first + p.count; e++) {
        for (const r of this.blocked.get(e) ?? []) reasons.add(r);
      }
      const members = membersOf[gid];
      const nodes = new Set([...producers.filter((p) => !p.node.startsWith('(')).map((p) => p.node), ...nodesOf[gid]]);
      const values = valuesOf[gid];
      if (units[gid].length < 2 && reasons.size === 0) reasons.add('it has a single channel');
      this.groups.push({
        id: gid,
        channels: units[gid].length,
        producers: producers.map((p) => p.node),
        nodes: [...nodes],
        members,
        values,
        prunable: reasons.size === 0,
        reasons: [...reasons],
        ...(reasons.size ? { reason: [...reasons].slice(0, 3).join('; ') + (reasons.size > 3 ? `; and ${reasons.size - 3} more` : '') } : {}),
      });
    }
  }

  // --- importance ------------------------------------------------------------------------------------------------

  /** The slices a group's member list came from. */
  private groupSlices(gid: number): Slice[] {
    return this.slicesOf[gid];
  }

  /**
   * Per-channel importance of a group from its parameters: each member's per-channel L1 or L2 norm (or |gamma| of
   * its BatchNormalization scales for 'bn'), normalised to sum 1 within the member, summed over members. Returns
   * undefined when the group has no member of the kind asked for (no BN for 'bn').
   */
  weightImportance(gid: number, kind: 'l1' | 'l2' | 'bn'): Float64Array | undefined {
    const units = this.unitsOf[gid];
    const index = new Map(units.map((r, i) => [r, i]));
    const roles: MemberRole[] = kind === 'bn' ? ['bn'] : ['out', 'in', 'depthwise'];
    const total = new Float64Array(units.length);
    let used = 0;
    for (const s of this.groupSlices(gid)) {
      if (!roles.includes(s.role)) continue;
      const ref = this.model.weights().get(s.tensor)?.ref;
      if (!ref) continue;
      const data = ref.toFloat32();
      const shape = ref.shape;
      const inner = shape.slice(s.axis + 1).reduce((a, b) => a * b, 1);
      const len = shape[s.axis];
      const perIndex = new Float64Array(len);
      for (let i = 0; i < data.length; i++) {
        const p = Math.floor(i / inner) % len;
        perIndex[p] += kind === 'l2' ? data[i] * data[i] : Math.abs(data[i]);
      }
      const v = new Float64Array(units.length);
      s.map.forEach((e, j) => {
        const u = index.get(this.uf.find(e));
        if (u === undefined) return;
        for (let b = 0; b < s.block; b++) v[u] += perIndex[j * s.block + b];
      });
      if (kind === 'l2') for (let u = 0; u < v.length; u++) v[u] = Math.sqrt(v[u]);
      const sum = v.reduce((a, b) => a + b, 0);
      if (sum > 0) for (let u = 0; u < v.length; u++) total[u] += v[u] / sum;
      used++;
    }
    return used ? total : undefined;
  }

  /** For activation importance: the producers of a group, their output values and channel axes. */
  producerOutputs(gid: number): Array<{ value: string; axis: number; map: Int32Array }> {
    return this.producers
      .filter((p) => !p.node.startsWith('(') && this.groupOfRoot.get(this.uf.find(p.first)) === gid)
      .map((p) => ({ value: p.value, axis: p.axis, map: Int32Array.from({ length: p.count }, (_, c) => p.first + c) }));
  }

  /** The channel index within group `gid` of element `e`, or -1. */
  unitIndex(gid: number, e: number): number {
    return this.unitsOf[gid].indexOf(this.uf.find(e));
  }

  /**
   * Where the given channels of a group lie in each member tensor: the indices along the member's axis (each
   * channel expanded to its block). Tests use it to build models whose chosen channels are provably dead.
   */
  channelPositions(gid: number, units: number[]): Array<{ tensor: string; axis: number; role: MemberRole; indices: number[] }> {
    const roots = new Set(units.map((u) => this.unitsOf[gid][u]));
    return this.groupSlices(gid).map((s) => {
      const indices: number[] = [];
      s.map.forEach((e, j) => {
        if (roots.has(this.uf.find(e))) for (let b = 0; b < s.block; b++) indices.push(j * s.block + b);
      });
      return { tensor: s.tensor, axis: s.axis, role: s.role, indices };
    });
  }

  // --- shrinking -------------------------------------------------------------------------------------------------

  /**
   * Removes channels: `removed` maps a group id to the indices of its channels to drop. Every member tensor is
   * re-sliced along its axes (float32 only), depthwise group counts and flattening Reshape targets follow, and
   * value_info entries of changed activations are dropped (their shapes are stale). Returns, per changed
   * tensor, its shape before and after and the removed indices along each axis in the original indexing.
   */
  shrink(removed: Map<number, number[]>): Map<string, { before: number[]; after: number[]; removed: Map<number, number[]> }> {
    const gone = new Set<number>();
    for (const [gid, list] of removed) for (const u of list) gone.add(this.unitsOf[gid][u]);
    const isGone = (e: number) => gone.has(this.uf.find(e));
    const perTensor = new Map<string, Map<number, { keep: number[]; drop: number[] }>>();
    for (const s of this.slices) {
      if (!s.map.some(isGone)) continue;
      const keep: number[] = [];
      const drop: number[] = [];
      s.map.forEach((e, j) => {
        for (let b = 0; b < s.block; b++) (isGone(e) ? drop : keep).push(j * s.block + b);
      });
      const axes = perTensor.get(s.tensor) ?? new Map();
      axes.set(s.axis, { keep, drop });
      perTensor.set(s.tensor, axes);
    }
    const out = new Map<string, { before: number[]; after: number[]; removed: Map<number, number[]> }>();
    const graph = this.model.graph;
    for (const [tensor, axes] of perTensor) {
      const ref = this.model.weights().get(tensor)?.ref;
      if (!ref) throw new InputError(this.model.file, `structured pruning: member '${tensor}' is not a stored tensor`);
      let data = ref.toFloat32();
      let shape = [...ref.shape];
      const before = [...shape];
      for (const [axis, { keep }] of axes) ({ data, shape } = gatherAxis(data, shape, axis, keep));
      replaceTensorData(graph, tensor, data, { dims: shape });
      out.set(tensor, { before, after: shape, removed: new Map([...axes].map(([a, { drop }]) => [a, drop])) });
    }
    for (const { node, weight } of this.depthwise) {
      const s = out.get(weight);
      const a = node.attribute.find((x) => x.name === 'group');
      if (s && a) a.i = BigInt(s.after[0]);
    }
    for (const { node, value, first } of this.flattenReshapes) {
      if (!this.tracks.get(value)!.map.some(isGone)) continue;
      // The target may be shared or hold the old width: give this Reshape its own [N, -1].
      const name = `${nodeName(node)}_whittle_shape`;
      graph.initializer = graph.initializer.filter((t) => t.name !== name);
      graph.initializer.push(int64Tensor(name, [2], [first, -1]));
      node.input[1] = name;
    }
    // value_info of a changed activation gets its new channel width; one whose shape does not match is dropped.
    graph.valueInfo = graph.valueInfo.filter((vi) => {
      const t = this.tracks.get(vi.name);
      if (!t || !t.map.some(isGone)) return true;
      const dims = vi.type?.value.case === 'tensorType' ? vi.type.value.value.shape?.dim : undefined;
      const d = dims?.length === t.rank ? dims[t.axis] : undefined;
      if (!d || d.value.case !== 'dimValue' || Number(d.value.value) !== t.map.length * t.block) return false;
      d.value.value = BigInt(t.map.filter((e) => !isGone(e)).length * t.block);
      return true;
    });
    return out;
  }
}

/** Keeps the listed indices of one axis of a row-major tensor. */
export function gatherAxis(data: Float32Array, shape: number[], axis: number, keep: number[]): { data: Float32Array; shape: number[] } {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len = shape[axis];
  const res = new Float32Array(outer * keep.length * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < keep.length; k++) {
      const from = (o * len + keep[k]) * inner;
      res.set(data.subarray(from, from + inner), (o * keep.length + k) * inner);
    }
  }
  const next = [...shape];
  next[axis] = keep.length;
  return { data: res, shape: next };
}

/** Finds the channel dependency groups of a model's main graph. */
export function findGroups(model: OnnxModel): ChannelGraph {
  return new ChannelGraph(model);
}

/** The structured section of the prune report. */
export interface StructuredSummary {
  importance: string;
  groups: Array<{ channels: number; kept: number; removed: number[]; members: string[] }>;
  skipped: Array<{ reason: string; members: string[] }>;
}

const memberText = (m: GroupMember): string => `${m.tensor}[axis ${m.axis}${m.offset ? ` @${m.offset}` : ''}${m.block > 1 ? ` x${m.block}` : ''}]`;

/**
 * Mean |activation| per channel of each group's producer outputs on the calibration data (the model run
 * unmodified, with those outputs fetched as extra outputs), normalised to sum 1 per producer and summed per
 * group channel.
 */
async function activationImportance(model: OnnxModel, cg: ChannelGraph, gids: number[], calib: Calibration, ctx: PassContext): Promise<Map<number, Float64Array>> {
  const wanted = gids.flatMap((gid) => cg.producerOutputs(gid).map((p) => ({ gid, ...p })));
  const outputs = new Set(model.graph.output.map((o) => o.name));
  const fetch = [...new Set(wanted.map((w) => w.value))].filter((v) => !outputs.has(v));
  const dataset = await openDataset(calib.data, modelInputs(model), { limit: calib.limit, seed: calib.seed, shapes: calib.shapes, randomCount: calib.limit ?? 32 });
  for (const w of dataset.warnings) if (!ctx.warnings.includes(w)) ctx.warnings.push(w);
  const session = await openSession(model, { ep: calib.ep ?? 'auto', extraOutputs: fetch, dynamicBatch: true });
  const sums = new Map<string, Float64Array>();
  try {
    const perRun = session.batched ? 16 : 1;
    for await (const batch of dataset.batches(perRun, ctx.signal)) {
      if (ctx.signal?.aborted) throw new CancelledError();
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const got: Record<string, ort.Tensor> = await session.session.run(feeds, fetch);
      for (const w of wanted) {
        const t = got[w.value];
        if (!t) continue;
        const data = outputFloats(t);
        const channels = t.dims[w.axis];
        const inner = t.dims.slice(w.axis + 1).reduce((a, b) => a * b, 1);
        let sum = sums.get(w.value);
        if (!sum) sums.set(w.value, (sum = new Float64Array(channels)));
        for (let i = 0; i < data.length; i++) sum[Math.floor(i / inner) % channels] += Math.abs(data[i]);
      }
    }
  } finally {
    await session.release().catch(() => {});
  }
  const out = new Map<number, Float64Array>();
  for (const gid of gids) {
    const units = cg.groups[gid].channels;
    const total = new Float64Array(units);
    for (const p of cg.producerOutputs(gid)) {
      const sum = sums.get(p.value);
      if (!sum) continue;
      const all = sum.reduce((a, b) => a + b, 0) || 1;
      p.map.forEach((e, c) => {
        const u = cg.unitIndex(gid, e);
        if (u >= 0) total[u] += sum[c] / all;
      });
    }
    out.set(gid, total);
  }
  return out;
}

/** Indices of the k smallest scores, ties by index. */
function lowest(scores: Float64Array, k: number): number[] {
  return [...scores.keys()].sort((a, b) => scores[a] - scores[b] || a - b).slice(0, k).sort((a, b) => a - b);
}

/** Channels to keep out of n for a removal fraction, at least one, rounded to a multiple of `multiple` when that fits. */
export function keptCount(n: number, removeFraction: number, multiple = 1): number {
  let kept = Math.max(1, n - Math.round(removeFraction * n));
  if (multiple > 1 && n >= multiple) kept = Math.min(n, Math.max(multiple, Math.round(kept / multiple) * multiple));
  return kept;
}

/**
 * `--structured channels`: finds the dependency groups, skips the ones that cannot be pruned (with the reason in
 * the report and a warning), ranks each group's channels by importance, removes `sparsity` of them (per group,
 * or by one global ranking with `--scope global`) and shrinks every member tensor. Edits the model in place.
 * An excluded layer keeps its weight whole, so both the group of its output channels and the group feeding its
 * input channels are left alone.
 */
export async function structuredApply(model: OnnxModel, p: PruneOptions, ctx: PassContext): Promise<PruneReport> {
  if (p.sparsity === undefined) throw new InputError(undefined, 'option --sparsity is required with --structured channels (the fraction of channels to remove per group)');
  if (p.pattern !== 'none') throw new InputError(undefined, '--pattern N:M cannot be combined with --structured channels');
  if (p.method !== 'magnitude') throw new InputError(undefined, `--method ${p.method} applies to unstructured pruning; use --importance with --structured channels`);
  if (p.scope === 'sensitivity') throw new InputError(undefined, '--scope sensitivity is not available with --structured channels (use layer or global)');
  if (p.minSparsity > p.maxSparsity) throw new InputError(undefined, `--min-sparsity ${p.minSparsity} is above --max-sparsity ${p.maxSparsity}`);
  const importance = p.importance ?? 'l1';
  const multiple = p.channelMultiple ?? 8;
  ctx.progress?.(undefined, 'finding channel dependency groups');
  const cg = findGroups(model);
  const weights = model.weights();
  const known = new Set([...model.graph.node.map(nodeName), ...model.layers().flatMap((l) => [l.name, l.weight.name])]);
  for (const name of p.exclude) if (!known.has(name)) ctx.warnings.push(`--exclude: no layer named '${name}' in the model`);
  const excluded = new Set(p.exclude);
  const skipped: StructuredSummary['skipped'] = [];
  const targets: ChannelGroup[] = [];
  for (const g of cg.groups) {
    const members = g.members.map(memberText);
    if (g.members.length === 0) continue;
    let reason = g.reason;
    const ex = g.nodes.find((n) => excluded.has(n)) ?? g.members.find((m) => excluded.has(m.tensor))?.tensor;
    if (!reason && ex) reason = `it contains the excluded layer '${ex}'`;
    if (!reason) {
      const bad = g.members.find((m) => {
        const w = weights.get(m.tensor);
        return !w || w.scope !== '' || w.ref.dtype !== 1;
      });
      if (bad) reason = `member '${bad.tensor}' is not a float32 weight stored in the main graph (it is computed, e.g. by ConstantOfShape, or of another type)`;
    }
    if (reason) {
      skipped.push({ reason, members });
      continue;
    }
    targets.push(g);
  }
  if (targets.length === 0) throw new InputError(model.file, `no channel group can be pruned: ${skipped[0]?.reason ?? 'the model has no Conv, Gemm or MatMul channels'}`);
  if (ctx.signal?.aborted) throw new CancelledError();

  const scores = new Map<number, Float64Array>();
  if (importance === 'activation') {
    ctx.progress?.(undefined, 'measuring channel activations');
    const acts = await activationImportance(model, cg, targets.map((g) => g.id), ctx.calibration ?? { data: 'random' }, ctx);
    for (const [gid, s] of acts) scores.set(gid, s);
  } else {
    let noBn = 0;
    for (const g of targets) {
      let s = cg.weightImportance(g.id, importance);
      if (!s && importance === 'bn') {
        noBn++;
        s = cg.weightImportance(g.id, 'l1');
      }
      scores.set(g.id, s ?? new Float64Array(g.channels));
    }
    if (noBn) ctx.warnings.push(`--importance bn: ${noBn} group(s) have no BatchNormalization (folded into their Conv?); they were ranked by L1 instead`);
  }

  const removed = new Map<number, number[]>();
  if (p.scope === 'global') {
    // One ranking across groups: each group's scores scaled to mean 1 so groups of different sizes and norms compare.
    const pool: Array<{ gid: number; u: number; score: number }> = [];
    const cap = new Map<number, number>();
    const taken = new Map<number, number[]>();
    for (const g of targets) {
      const s = scores.get(g.id)!;
      const mean = s.reduce((a, b) => a + b, 0) / s.length || 1;
      const order = lowest(s, s.length);
      const min = Math.min(g.channels - 1, Math.round(p.minSparsity * g.channels));
      cap.set(g.id, Math.min(g.channels - 1, Math.round(p.maxSparsity * g.channels)));
      taken.set(g.id, order.slice(0, Math.min(min, cap.get(g.id)!)));
      s.forEach((score, u) => pool.push({ gid: g.id, u, score: score / mean }));
    }
    const goal = Math.round(p.sparsity * targets.reduce((a, g) => a + g.channels, 0));
    let count = [...taken.values()].reduce((a, t) => a + t.length, 0);
    pool.sort((a, b) => a.score - b.score || a.gid - b.gid || a.u - b.u);
    for (const c of pool) {
      if (count >= goal) break;
      const t = taken.get(c.gid)!;
      if (t.length >= cap.get(c.gid)! || t.includes(c.u)) continue;
      t.push(c.u);
      count++;
    }
    for (const g of targets) {
      const s = scores.get(g.id)!;
      const kept = keptCount(g.channels, taken.get(g.id)!.length / g.channels, multiple);
      removed.set(g.id, lowestAmong(s, taken.get(g.id)!, g.channels - kept));
    }
  } else {
    for (const g of targets) removed.set(g.id, lowest(scores.get(g.id)!, g.channels - keptCount(g.channels, p.sparsity, multiple)));
  }
  if (ctx.signal?.aborted) throw new CancelledError();
  ctx.progress?.(undefined, 'removing channels');
  const layersBefore = model.layers();
  const changed = cg.shrink(removed);

  const report: PruneReport = {
    pass: 'prune',
    params: { ...p } as unknown as PruneReport['params'],
    layers: [],
    masks: [],
    structured: {
      importance,
      groups: targets.map((g) => {
        const r = removed.get(g.id)!;
        return { channels: g.channels, kept: g.channels - r.length, removed: r, members: g.members.map(memberText) };
      }),
      skipped,
    },
  };
  for (const l of layersBefore) {
    if (!['conv', 'gemm', 'matmul'].includes(l.kind)) continue;
    const c = changed.get(l.weight.name);
    if (!c) continue;
    const params = c.before.reduce((a, b) => a * b, 1);
    const after = c.after.reduce((a, b) => a * b, 1);
    const out = c.removed.get(l.outputAxis) ?? [];
    const layer: LayerPruneSummary = { layer: l.name, op: l.op, weight: l.weight.name, shape: c.after, shapeBefore: c.before, removedChannels: out, params, zeros: params - after, zerosBefore: 0, sparsity: (params - after) / params };
    report.layers.push(layer);
    report.masks.push(structuredMask(l.name, l.weight.name, c));
  }
  const odd = report.structured!.groups.filter((g) => g.kept % 8 !== 0 && g.channels % 8 === 0).length;
  if (multiple === 1 && odd > 0) {
    ctx.warnings.push(`${odd} group(s) keep a channel count that is not a multiple of 8; onnxruntime's blocked CPU conv kernels want multiples of 8, so the model can run slower than its size suggests (try --channel-multiple 8)`);
  }
  for (const s of skipped) ctx.warnings.push(`channel group skipped (${s.members.slice(0, 3).join(', ')}${s.members.length > 3 ? ', ...' : ''}): ${s.reason}`);
  return report;
}

/** The k lowest-scoring of the chosen indices (a global choice rounded to the channel multiple). */
function lowestAmong(s: Float64Array, chosen: number[], k: number): number[] {
  if (k <= chosen.length) return [...chosen].sort((a, b) => s[a] - s[b] || a - b).slice(0, k).sort((a, b) => a - b);
  // Rounding up to the multiple asks for more than chosen: take the next lowest of the rest.
  const rest = lowest(s, s.length).filter((u) => !chosen.includes(u));
  return [...chosen, ...rest.slice(0, k - chosen.length)].sort((a, b) => a - b);
}

/** A structured mask in the original weight's indexing: removed rows (axis 0) and columns (axis 1), and kept bits. */
function structuredMask(layer: string, weight: string, c: { before: number[]; removed: Map<number, number[]> }): PruneMask {
  const shape = c.before;
  const rows = new Set(c.removed.get(0) ?? []);
  const cols = new Set(c.removed.get(1) ?? []);
  const count = shape.reduce((a, b) => a * b, 1);
  const inner1 = shape.slice(1).reduce((a, b) => a * b, 1);
  const inner2 = shape.slice(2).reduce((a, b) => a * b, 1);
  const kept = new Uint8Array(Math.ceil(count / 8));
  for (let i = 0; i < count; i++) {
    const r = Math.floor(i / inner1);
    const col = shape.length > 1 ? Math.floor(i / inner2) % shape[1] : 0;
    if (!rows.has(r) && !cols.has(col)) kept[i >> 3] |= 1 << (i & 7);
  }
  return { layer, weight, shape, kept, removedRows: [...rows].sort((a, b) => a - b), ...(cols.size ? { removedCols: [...cols].sort((a, b) => a - b) } : {}) };
}
