/**
 * In-place edits of an ONNX graph for the compression passes: swap a tensor's bytes, splice a node into an edge,
 * move weights between initializers and inputs, expose intermediate values, prune dead nodes, re-sort.
 */
import { create } from '@bufbuild/protobuf';
import { ValueInfoProtoSchema, type GraphProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { dtypeBytes, dtypeName } from '../../model/dtype';
import { valueInfo } from './build';
import { tensorShape } from './tensor';

/** The graphs held in a node's attributes (If branches, Loop and Scan bodies). */
export function subgraphs(n: NodeProto): GraphProto[] {
  return n.attribute.flatMap((a) => [...(a.g ? [a.g] : []), ...a.graphs]);
}

/** Names a subgraph reads from enclosing scopes: used inside it (at any depth) but defined by none of it. */
export function outerScopeNames(g: GraphProto): Set<string> {
  const defined = new Set<string>([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name)]);
  for (const n of g.node) for (const o of n.output) defined.add(o);
  const used = new Set<string>();
  for (const n of g.node) {
    for (const i of n.input) if (i) used.add(i);
    for (const sub of subgraphs(n)) for (const name of outerScopeNames(sub)) used.add(name);
  }
  for (const o of g.output) used.add(o.name);
  for (const name of defined) used.delete(name);
  return used;
}

/** Names this node depends on: its inputs plus what its subgraphs read from outside themselves. */
function nodeReads(n: NodeProto): Set<string> {
  const reads = new Set(n.input.filter((i) => i !== ''));
  for (const sub of subgraphs(n)) for (const name of outerScopeNames(sub)) reads.add(name);
  return reads;
}

/**
 * Replaces the bytes of the initializer `name`, or of the `value` of the Constant node that outputs `name`,
 * with `data`'s bytes as raw_data (float16 goes in as Uint16Array bit patterns, 4-bit types as packed bytes).
 * `opts` changes its element type or shape; the byte count must fit them.
 */
export function replaceTensorData(
  graph: GraphProto,
  name: string,
  data: Float32Array | Int8Array | Uint8Array | Int32Array | BigInt64Array | Uint16Array,
  opts: { dataType?: number; dims?: number[] } = {},
): void {
  const t = graph.initializer.find((x) => x.name === name) ?? constantValue(graph, name);
  if (!t) throw new Error(`replaceTensorData: no initializer or Constant node named '${name}' in graph '${graph.name}'`);
  const dataType = opts.dataType ?? t.dataType;
  const dims = opts.dims ?? tensorShape(t);
  const want = dtypeBytes(dataType, dims.reduce((a, b) => a * b, 1));
  if (data.byteLength !== want) {
    throw new Error(`replaceTensorData '${name}': ${data.byteLength} bytes given, ${dtypeName(dataType)}[${dims}] needs ${want}`);
  }
  t.dataType = dataType;
  t.dims = dims.map(BigInt);
  // Typed arrays hold platform byte order, which is little-endian wherever onnxruntime-node ships.
  t.rawData = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  t.floatData = [];
  t.int32Data = [];
  t.int64Data = [];
  t.doubleData = [];
  t.uint64Data = [];
  t.externalData = [];
  t.dataLocation = 0;
  // Old-IR models also declare initializers as inputs; a stale declared type would make the model invalid.
  const retype = (list: typeof graph.input): void => {
    const i = list.findIndex((v) => v.name === name);
    if (i >= 0 && (opts.dataType !== undefined || opts.dims)) list[i] = valueInfo(name, dataType, dims);
  };
  retype(graph.input);
  retype(graph.valueInfo);
}

function constantValue(graph: GraphProto, name: string): TensorProto | undefined {
  const n = graph.node.find((x) => x.opType === 'Constant' && x.output[0] === name);
  return n?.attribute.find((a) => a.name === 'value')?.t;
}

/** Renames every read of `from` to `to` in a subgraph, unless the subgraph defines `from` itself. */
function renameOuterReads(g: GraphProto, from: string, to: string): void {
  if (!outerScopeNames(g).has(from)) return;
  for (const n of g.node) {
    n.input = n.input.map((i) => (i === from ? to : i));
    for (const sub of subgraphs(n)) renameOuterReads(sub, from, to);
  }
  for (const o of g.output) if (o.name === from) o.name = to;
}

/**
 * Splices `newNode` after `value`: every consumer of `value` (nodes, graph outputs, reads from subgraphs) reads
 * `newNode.output[0]` instead, and `newNode`, which must read `value`, goes right after the last producer of its
 * inputs. A graph output named `value` is renamed and keeps its declared type.
 */
export function insertAfter(graph: GraphProto, value: string, newNode: NodeProto): void {
  const out = newNode.output[0];
  if (!newNode.input.includes(value)) throw new Error(`insertAfter: the new ${newNode.opType} node must read '${value}'`);
  if (!out) throw new Error(`insertAfter: the new ${newNode.opType} node has no output`);
  let firstConsumer = graph.node.length;
  graph.node.forEach((n, index) => {
    let reads = false;
    if (n.input.includes(value)) {
      n.input = n.input.map((i) => (i === value ? out : i));
      reads = true;
    }
    for (const sub of subgraphs(n)) {
      if (outerScopeNames(sub).has(value)) reads = true;
      renameOuterReads(sub, value, out);
    }
    if (reads) firstConsumer = Math.min(firstConsumer, index);
  });
  for (const o of graph.output) if (o.name === value) o.name = out;
  const at = afterProducers(graph, newNode);
  graph.node.splice(at, 0, newNode);
  // Only when another input of the new node is produced after a consumer of `value` does the order break.
  if (firstConsumer < at) graph.node = topologicalOrder(graph);
}

/** The index just past the last node that produces one of `n`'s inputs (0 when they are all graph inputs). */
function afterProducers(graph: GraphProto, n: NodeProto): number {
  const reads = nodeReads(n);
  let at = 0;
  graph.node.forEach((p, index) => {
    if (p.output.some((o) => reads.has(o))) at = index + 1;
  });
  return at;
}

/**
 * Splices `newNode` into one input edge: `consumer.input[inputIndex]` becomes `newNode.output[0]`, and `newNode`
 * goes right before `consumer`. `newNode` reads whatever the caller chose, typically the old input.
 */
export function insertBefore(graph: GraphProto, consumer: NodeProto, inputIndex: number, newNode: NodeProto): void {
  const at = graph.node.indexOf(consumer);
  if (at < 0) throw new Error(`insertBefore: node '${consumer.name}' (${consumer.opType}) is not in graph '${graph.name}'`);
  if (inputIndex < 0 || inputIndex >= consumer.input.length) {
    throw new Error(`insertBefore: node '${consumer.name}' has ${consumer.input.length} inputs, not an input ${inputIndex}`);
  }
  if (!newNode.output[0]) throw new Error(`insertBefore: the new ${newNode.opType} node has no output`);
  consumer.input[inputIndex] = newNode.output[0];
  graph.node.splice(at, 0, newNode);
}

/**
 * Removes the named initializers and declares them as graph inputs with their element type and shape, so a run
 * can feed them; returns the removed tensors in the order of `names`. Old-IR models that already list an
 * initializer among the inputs keep that single declaration.
 */
export function initializersToInputs(graph: GraphProto, names: string[]): TensorProto[] {
  const declared = new Set(graph.input.map((v) => v.name));
  return names.map((name) => {
    const i = graph.initializer.findIndex((t) => t.name === name);
    if (i < 0) throw new Error(`initializersToInputs: no initializer named '${name}' in graph '${graph.name}'`);
    const [t] = graph.initializer.splice(i, 1);
    if (!declared.has(name)) graph.input.push(valueInfo(name, t.dataType, tensorShape(t)));
    declared.add(name);
    return t;
  });
}

/**
 * Makes `tensors` initializers again (replacing any of the same name) and drops their graph-input declarations;
 * `keepInputs` keeps those, as IR 3 models need.
 */
export function inputsToInitializers(graph: GraphProto, tensors: TensorProto[], opts: { keepInputs?: boolean } = {}): void {
  const names = new Set(tensors.map((t) => t.name));
  graph.initializer = [...graph.initializer.filter((t) => !names.has(t.name)), ...tensors];
  if (!opts.keepInputs) graph.input = graph.input.filter((v) => !names.has(v.name));
}

/** Appends name-only graph outputs (onnxruntime infers their types), skipping names already output. */
export function addOutputs(graph: GraphProto, names: string[]): void {
  const have = new Set(graph.output.map((o) => o.name));
  for (const name of names) {
    if (have.has(name)) continue;
    have.add(name);
    graph.output.push(create(ValueInfoProtoSchema, { name }));
  }
}

/**
 * Drops nodes none of whose outputs is read (by a node, a subgraph or a graph output), repeatedly, then the
 * initializers nothing reads any more; returns how many of each went. Graph inputs stay, unread or not, except
 * old-IR declarations of dropped initializers.
 */
export function removeDeadNodes(graph: GraphProto): { nodes: number; initializers: number } {
  const before = { nodes: graph.node.length, initializers: graph.initializer.length };
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) if (o) producer.set(o, n);
  // Mark what the graph outputs reach, walking back through producers; this settles in one pass whatever the
  // node order, with the same result as dropping unread nodes until none is left.
  const used = new Set<string>();
  const live = new Set<NodeProto>();
  const work = graph.output.map((o) => o.name);
  for (let name = work.pop(); name !== undefined; name = work.pop()) {
    if (used.has(name)) continue;
    used.add(name);
    const n = producer.get(name);
    if (!n || live.has(n)) continue;
    live.add(n);
    work.push(...nodeReads(n));
  }
  graph.node = graph.node.filter((n) => live.has(n));
  const dead = new Set(graph.initializer.filter((t) => !used.has(t.name)).map((t) => t.name));
  graph.initializer = graph.initializer.filter((t) => !dead.has(t.name));
  // An old-IR input that only declared a dropped initializer would otherwise become a required input.
  graph.input = graph.input.filter((v) => !dead.has(v.name));
  const produced = new Set([...graph.input.map((v) => v.name), ...graph.initializer.map((t) => t.name)]);
  for (const n of graph.node) for (const o of n.output) produced.add(o);
  graph.valueInfo = graph.valueInfo.filter((v) => produced.has(v.name));
  return { nodes: before.nodes - graph.node.length, initializers: before.initializers - graph.initializer.length };
}

/**
 * The graph's nodes in an order where each comes after the producers of what it reads (subgraph reads included);
 * the original order is kept wherever it is already valid. Names no node produces (graph inputs, initializers,
 * outer scopes, '') count as available. Throws on a cycle, naming a node on it.
 */
export function topologicalOrder(graph: GraphProto): NodeProto[] {
  const nodes = graph.node;
  const producer = new Map<string, number>();
  nodes.forEach((n, index) => {
    for (const o of n.output) if (o && !producer.has(o)) producer.set(o, index);
  });
  const deps = nodes.map((n) => [...new Set([...nodeReads(n)].flatMap((name) => (producer.has(name) ? [producer.get(name)!] : [])))]);
  const pending = deps.map((d) => d.length);
  const users: number[][] = nodes.map(() => []);
  deps.forEach((d, index) => d.forEach((p) => users[p].push(index)));
  // Kahn's algorithm taking the lowest original index first, so a valid order comes back unchanged.
  const ready = new MinHeap();
  pending.forEach((count, index) => count === 0 && ready.push(index));
  const order: NodeProto[] = [];
  for (let i = ready.pop(); i !== undefined; i = ready.pop()) {
    order.push(nodes[i]);
    for (const u of users[i]) if (--pending[u] === 0) ready.push(u);
  }
  if (order.length < nodes.length) {
    // Follow unmet dependencies from any stuck node until one repeats: that one lies on a cycle.
    let at = pending.findIndex((count) => count > 0);
    const seen = new Set<number>();
    while (!seen.has(at)) {
      seen.add(at);
      at = deps[at].find((p) => pending[p] > 0)!;
    }
    const n = nodes[at];
    throw new Error(`topologicalOrder: graph '${graph.name}' has a cycle through node '${n.name || n.output[0]}' (${n.opType})`);
  }
  return order;
}

/** A binary min-heap of integers. */
class MinHeap {
  private readonly items: number[] = [];

  push(x: number): void {
    const a = this.items;
    a.push(x);
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= a[i]) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }

  pop(): number | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l] < a[m]) m = l;
        if (r < a.length && a[r] < a[m]) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}
