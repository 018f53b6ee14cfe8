import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { clone, create, fromBinary } from '@bufbuild/protobuf';
import { AttributeProto_AttributeType, AttributeProtoSchema, ModelProtoSchema, StringStringEntryProtoSchema, TensorProtoSchema, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import {
  addOutputs,
  initializersToInputs,
  inputsToInitializers,
  insertAfter,
  insertBefore,
  removeDeadNodes,
  replaceTensorData,
  topologicalOrder,
} from '../../src/core/formats/onnx/edit';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

type Outputs = Record<string, { dims: readonly number[]; data: number[] }>;

/** Runs an encoded model in onnxruntime and returns every output as plain numbers. */
async function run(m: ModelProto, feeds: Record<string, ort.Tensor>): Promise<Outputs> {
  // Unoptimised, so a weight fed as an input takes the same kernels as the constant it replaces: bit-exact.
  const session = await ort.InferenceSession.create(encodeModel(m), { logSeverityLevel: 3, graphOptimizationLevel: 'disabled' });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { dims: t.dims, data: Array.from(t.data as Float32Array) }]));
  } finally {
    await session.release();
  }
}

const f32 = (dims: number[], values: ArrayLike<number>) => new ort.Tensor('float32', Float32Array.from(values), dims);
const xValues = [0.5, -1.25, 2, 3.5, -0.75, 1];
const x23 = (scale = 1) => ({ x: f32([2, 3], xValues.map((v) => v * scale)) });

/** A float TensorProto's values, whether stored as raw_data or float_data. */
function floats(t: TensorProto): Float32Array {
  return t.rawData.byteLength > 0 ? new Float32Array(Uint8Array.prototype.slice.call(t.rawData).buffer) : Float32Array.from(t.floatData);
}

/** A GRAPH attribute (If branches). */
function withBranches(n: NodeProto, thenBranch: GraphProto, elseBranch: GraphProto): NodeProto {
  n.attribute.push(
    create(AttributeProtoSchema, { name: 'then_branch', type: AttributeProto_AttributeType.GRAPH, g: thenBranch }),
    create(AttributeProtoSchema, { name: 'else_branch', type: AttributeProto_AttributeType.GRAPH, g: elseBranch }),
  );
  return n;
}

/** Names a subgraph reads from outside itself, computed here independently of edit.ts. */
function outerReads(g: GraphProto): string[] {
  const defined = new Set([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
  const reads = g.node.flatMap((n) => [...n.input, ...n.attribute.flatMap((a) => (a.g ? outerReads(a.g) : []))]);
  return [...reads, ...g.output.map((o) => o.name)].filter((name) => name && !defined.has(name));
}

/** Asserts every node comes after the producers of everything it reads, subgraph reads included. */
function assertTopological(g: GraphProto): void {
  const available = new Set(['', ...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name)]);
  for (const n of g.node) {
    const reads = [...n.input, ...n.attribute.flatMap((a) => (a.g ? outerReads(a.g) : []))];
    for (const name of reads) assert.ok(available.has(name), `node '${n.name}' (${n.opType}) reads '${name}' before it is produced`);
    for (const o of n.output) available.add(o);
  }
}

// Debian's python3-onnx: an independent checker that, unlike onnxruntime, rejects unsorted graphs.
const pythonWithOnnx = process.env.WHITTLE_PYTHON ?? '/usr/bin/python3';
const noOnnxChecker = spawnSync(pythonWithOnnx, ['-c', 'import onnx'], { encoding: 'utf8' }).status !== 0 && 'skipped: python3 with the onnx package is not installed';
const scratch = tempDir();

/** Runs onnx.checker on the model; returns its error text, or '' when it passes. */
function onnxChecker(m: ModelProto): string {
  const file = path.join(scratch, 'checked.onnx');
  fs.writeFileSync(file, encodeModel(m));
  const res = spawnSync(pythonWithOnnx, ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]))', file], { encoding: 'utf8' });
  return res.status === 0 ? '' : res.stderr;
}

/**
 * x[2,3] -> t = x*c -> u = Relu(t) -> v = t+u; w = If(cond){Neg(t)}{Identity(t)}; y = v+w. Outputs y and t.
 * Every path from x is linear in t or positively homogeneous, so scaling t by 2 scales every output by 2.
 */
function ifModel(): ModelProto {
  const branch = (op: string, out: string) => graph(op, [node(op, ['t'], [out])], [], [valueInfo(out, 1, [2, 3])], []);
  const nodes = [
    node('Mul', ['x', 'c'], ['t']),
    node('Relu', ['t'], ['u']),
    node('Add', ['t', 'u'], ['v']),
    withBranches(node('If', ['cond'], ['w']), branch('Neg', 'neg_t'), branch('Identity', 'id_t')),
    node('Add', ['v', 'w'], ['y']),
  ];
  const cond = create(TensorProtoSchema, { name: 'cond', dataType: 9, rawData: new Uint8Array([1]) });
  const inits = [floatTensor('c', [2, 3], [1, 2, 3, -1, -2, 0.5]), cond];
  return model(graph('g', nodes, [valueInfo('x', 1, [2, 3])], [valueInfo('y', 1, [2, 3]), valueInfo('t', 1, [2, 3])], inits), 13);
}

/** x[1,2,5,5] -> Conv(w, b) -> Relu -> Flatten -> Gemm(fw, fb): y[1,4]. */
function convModel(irVersion = 8): ModelProto {
  const values = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed + i * 0.7) * 0.5);
  const inits = [
    floatTensor('w', [3, 2, 3, 3], values(54, 1)),
    floatTensor('b', [3], values(3, 2)),
    floatTensor('fw', [4, 27], values(108, 3)),
    floatTensor('fb', [4], values(4, 4)),
  ];
  const nodes = [
    node('Conv', ['x', 'w', 'b'], ['conv']),
    node('Relu', ['conv'], ['relu']),
    node('Flatten', ['relu'], ['flat']),
    node('Gemm', ['flat', 'fw', 'fb'], ['y'], { transB: 1 }),
  ];
  const inputs = [valueInfo('x', 1, [1, 2, 5, 5])];
  // IR 3 required every initializer to be declared as a graph input too.
  if (irVersion < 4) inputs.push(...inits.map((t) => valueInfo(t.name, 1, t.dims.map(Number))));
  return model(graph('g', nodes, inputs, [valueInfo('y', 1, [1, 4])], inits), irVersion < 4 ? 8 : 13, 'test', irVersion);
}

const convInput = () => ({ x: f32([1, 2, 5, 5], Array.from({ length: 50 }, (_, i) => Math.cos(i))) });

describe('insertAfter', () => {
  test('rewires node, subgraph and graph-output consumers to the new node', async () => {
    const original = ifModel();
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    insertAfter(g, 't', node('Mul', ['t', 'two'], ['t2']));
    g.initializer.push(floatTensor('two', [], [2]));
    assert.deepEqual(g.node.map((n) => n.opType), ['Mul', 'Mul', 'Relu', 'Add', 'If', 'Add']);
    assert.deepEqual(g.node[1].input, ['t', 'two']);
    assert.deepEqual(g.output.map((o) => o.name), ['y', 't2']);
    assert.deepEqual(g.node[4].attribute[0].g!.node[0].input, ['t2']);
    assertTopological(g);
    // t is linear in x, so doubling t is running the original on 2x.
    const want = await run(original, x23(2));
    const got = await run(edited, x23());
    assert.deepEqual(got.y, want.y);
    assert.deepEqual(got.t2, want.t);
  });

  test('an Identity keeps every output', async () => {
    const original = ifModel();
    const edited = clone(ModelProtoSchema, original);
    insertAfter(edited.graph!, 'u', node('Identity', ['u'], ['u_id']));
    insertAfter(edited.graph!, 'x', node('Identity', ['x'], ['x_id']));
    assert.equal(edited.graph!.node[0].output[0], 'x_id', 'a graph input has no producer: the node goes first');
    assertTopological(edited.graph!);
    assert.deepEqual(await run(edited, x23()), await run(original, x23()));
  });

  test('re-sorts when another input of the new node is produced after a consumer', async () => {
    const original = ifModel();
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    // A Constant that only the new node will read, placed last.
    g.node.push(node('Constant', [], ['k'], { value: floatTensor('kv', [], [2]) }));
    insertAfter(g, 't', node('Mul', ['t', 'k'], ['t2']));
    assertTopological(g);
    assert.deepEqual((await run(edited, x23())).y, (await run(original, x23(2))).y);
  });

  test('refuses a node that does not read the value', () => {
    assert.throws(() => insertAfter(ifModel().graph!, 't', node('Relu', ['x'], ['r'])), /must read 't'/);
  });
});

describe('insertBefore', () => {
  test('feeds one input of the consumer through the new node, placed just before it', async () => {
    const original = model(graph('g', [node('Relu', ['x'], ['r']), node('MatMul', ['r', 'w'], ['y'])], [valueInfo('x', 1, [2, 3])], [valueInfo('y', 1, [2, 2])], [floatTensor('w', [3, 2], [1, -2, 0.5, 3, -1, 0.25])]), 13);
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    g.initializer.push(floatTensor('two', [], [2]));
    insertBefore(g, g.node[1], 1, node('Mul', ['w', 'two'], ['w2']));
    assert.deepEqual(g.node.map((n) => n.output[0]), ['r', 'w2', 'y']);
    assert.deepEqual(g.node[2].input, ['r', 'w2']);
    assertTopological(g);
    const want = (await run(original, x23())).y.data.map((v) => v * 2);
    assert.deepEqual((await run(edited, x23())).y.data, want);
  });

  test('rejects a consumer outside the graph or an input it does not have', () => {
    const g = ifModel().graph!;
    assert.throws(() => insertBefore(g, node('Relu', ['t'], ['z']), 0, node('Identity', ['t'], ['t1'])), /not in graph/);
    assert.throws(() => insertBefore(g, g.node[1], 1, node('Identity', ['t'], ['t1'])), /has 1 inputs, not an input 1/);
  });
});

describe('initializersToInputs and inputsToInitializers', () => {
  test('the removed weights, fed as inputs, give exactly the original outputs', async () => {
    const original = convModel();
    const want = await run(original, convInput());
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    const removed = initializersToInputs(g, ['w', 'fb']);
    assert.deepEqual(removed.map((t) => t.name), ['w', 'fb']);
    assert.deepEqual(g.initializer.map((t) => t.name), ['b', 'fw']);
    assert.deepEqual(g.input.map((v) => v.name), ['x', 'w', 'fb']);
    const wInput = g.input[1].type!.value;
    assert.ok(wInput.case === 'tensorType');
    assert.equal(wInput.value.elemType, 1);
    assert.deepEqual(wInput.value.shape!.dim.map((d) => d.value.value), [3n, 2n, 3n, 3n]);
    const feeds = { ...convInput(), w: f32([3, 2, 3, 3], floats(removed[0])), fb: f32([4], floats(removed[1])) };
    assert.deepEqual(await run(edited, feeds), want);
    // The inputs are really read: other weights give other outputs, and leaving them out is an error.
    assert.notDeepEqual(await run(edited, { ...feeds, w: f32([3, 2, 3, 3], new Float32Array(54)) }), want);
    await assert.rejects(run(edited, convInput()), /input/i);

    inputsToInitializers(g, removed);
    assert.deepEqual(g.input.map((v) => v.name), ['x']);
    assert.deepEqual(new Set(g.initializer.map((t) => t.name)), new Set(['w', 'b', 'fw', 'fb']));
    assert.deepEqual(await run(edited, convInput()), want);
  });

  test('an old-IR model that lists initializers among its inputs keeps one declaration', async () => {
    const original = convModel(3);
    const want = await run(original, convInput());
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    const inputs = g.input.map((v) => v.name);
    const removed = initializersToInputs(g, ['w']);
    assert.deepEqual(g.input.map((v) => v.name), inputs);
    assert.deepEqual(await run(edited, { ...convInput(), w: f32([3, 2, 3, 3], floats(removed[0])) }), want);
    assert.notDeepEqual(await run(edited, { ...convInput(), w: f32([3, 2, 3, 3], new Float32Array(54)) }), want);
    inputsToInitializers(g, removed, { keepInputs: true });
    assert.deepEqual(g.input.map((v) => v.name), inputs);
    assert.deepEqual(await run(edited, convInput()), want);
  });

  test('mnist-8 (IR 3): a weight fed as an input reproduces the outputs', { skip: noSharedData }, async () => {
    const original = fromBinary(ModelProtoSchema, fs.readFileSync(path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx')));
    const image = { Input3: f32([1, 1, 28, 28], Array.from({ length: 784 }, (_, i) => (i * 37) % 255)) };
    const want = await run(original, image);
    const edited = clone(ModelProtoSchema, original);
    const g = edited.graph!;
    const conv = g.node.find((n) => n.opType === 'Conv')!;
    const inputCount = g.input.length;
    const [weight] = initializersToInputs(g, [conv.input[1]]);
    assert.equal(g.input.length, inputCount);
    assert.equal(new Set(g.input.map((v) => v.name)).size, inputCount);
    const dims = weight.dims.map(Number);
    assert.deepEqual(await run(edited, { ...image, [weight.name]: f32(dims, floats(weight)) }), want);
    assert.notDeepEqual(await run(edited, { ...image, [weight.name]: f32(dims, new Float32Array(floats(weight).length)) }), want);
  });

  test('names that are not initializers are an error', () => {
    assert.throws(() => initializersToInputs(convModel().graph!, ['x']), /no initializer named 'x'/);
  });
});

describe('addOutputs', () => {
  test('exposes intermediate values once each', async () => {
    const m = ifModel();
    addOutputs(m.graph!, ['u', 'y', 'u', 'w']);
    assert.deepEqual(m.graph!.output.map((o) => o.name), ['y', 't', 'u', 'w']);
    const out = await run(m, x23());
    const c = [1, 2, 3, -1, -2, 0.5];
    assert.deepEqual(out.u.data, xValues.map((v, i) => Math.max(0, Math.fround(v * c[i]))));
    assert.deepEqual(out.w.data, out.t.data.map((v) => -v));
  });
});

describe('removeDeadNodes', () => {
  /** ifModel plus a dangling branch, a dead Constant, and a live Sigmoid that only a subgraph reads. */
  function withDeadBranch(): ModelProto {
    const m = ifModel();
    const g = m.graph!;
    g.node.splice(1, 0, node('Sigmoid', ['x'], ['s']), node('Mul', ['t', 'd'], ['dead1']), node('Neg', ['dead1'], ['dead2']));
    g.node.push(node('Constant', [], ['dead3'], { value: floatTensor('dv', [1], [1]) }));
    g.node[g.node.findIndex((n) => n.opType === 'If')].attribute[1].g!.node[0].input = ['s'];
    g.initializer.push(floatTensor('d', [2, 3], [1, 1, 1, 1, 1, 1]));
    // Declared as an input too, as an old-IR model would: it must go with its initializer.
    g.input.push(valueInfo('d', 1, [2, 3]));
    g.valueInfo.push(valueInfo('dead2', 1, [2, 3]), valueInfo('u', 1, [2, 3]));
    return m;
  }

  test('drops the dangling branch and its weights, keeps outputs and subgraph reads', async () => {
    const m = withDeadBranch();
    const want = await run(m, x23());
    assert.deepEqual(removeDeadNodes(m.graph!), { nodes: 3, initializers: 1 });
    const g = m.graph!;
    assert.deepEqual(g.node.map((n) => n.output[0]), ['t', 's', 'u', 'v', 'w', 'y']);
    assert.deepEqual(g.initializer.map((t) => t.name), ['c', 'cond']);
    assert.deepEqual(g.input.map((v) => v.name), ['x']);
    assert.deepEqual(g.valueInfo.map((v) => v.name), ['u']);
    assert.deepEqual(await run(m, x23()), want);
    assert.deepEqual(removeDeadNodes(m.graph!), { nodes: 0, initializers: 0 });
  });

  test('gives the same result whatever the node order', () => {
    const m = withDeadBranch();
    m.graph!.node.reverse();
    assert.deepEqual(removeDeadNodes(m.graph!), { nodes: 3, initializers: 1 });
    assert.deepEqual(new Set(m.graph!.node.map((n) => n.output[0])), new Set(['t', 's', 'u', 'v', 'w', 'y']));
  });
});

describe('topologicalOrder', () => {
  test('keeps an already valid order as it is', () => {
    const g = ifModel().graph!;
    // Independent nodes, ready together: any other tie-break would reorder them.
    g.node.splice(1, 0, node('Sigmoid', ['x'], ['s1']), node('Abs', ['t'], ['s2']), node('Neg', ['x'], ['s3']), node('Exp', ['x'], ['s4']));
    const order = topologicalOrder(g);
    assert.equal(order.length, g.node.length);
    order.forEach((n, i) => assert.equal(n, g.node[i]));
  });

  test('sorts a shuffled graph, subgraph reads included, into one that runs the same', async () => {
    const original = ifModel();
    original.graph!.node.splice(1, 0, node('Sigmoid', ['x'], ['s']));
    original.graph!.node.find((n) => n.opType === 'If')!.attribute[1].g!.node[0].input = ['s'];
    const want = await run(original, x23());
    const shuffled = clone(ModelProtoSchema, original);
    const g = shuffled.graph!;
    g.node = [g.node[5], g.node[4], g.node[1], g.node[3], g.node[0], g.node[2]];
    assert.throws(() => assertTopological(g));
    const order = topologicalOrder(g);
    const ops = order.map((n) => n.output[0]);
    assert.ok(ops.indexOf('s') < ops.indexOf('w'), 'the If reads s inside its else branch');
    g.node = order;
    assertTopological(g);
    assert.deepEqual(await run(shuffled, x23()), want);
  });

  test('agrees with onnx.checker, which rejects unsorted graphs', { skip: noOnnxChecker }, () => {
    const m = ifModel();
    m.graph!.node.reverse();
    assert.match(onnxChecker(m), /topologically sorted|not output of any previous nodes/);
    m.graph!.node = topologicalOrder(m.graph!);
    assert.equal(onnxChecker(m), '');
  });

  test('names a node on a cycle', () => {
    const g = graph('loop', [node('Relu', ['x'], ['a']), node('Add', ['a', 'c'], ['b'], {}, 'adder'), node('Neg', ['b'], ['c'], {}, 'negator'), node('Abs', ['c'], ['y'])], [valueInfo('x', 1, [1])], [valueInfo('y', 1, [1])], []);
    assert.throws(() => topologicalOrder(g), /cycle through node '(adder|negator)'/);
  });
});

describe('replaceTensorData', () => {
  const mulModel = (c: TensorProto) => model(graph('g', [node('Mul', ['x', 'c'], ['y'])], [valueInfo('x', 1, [2, 3])], [valueInfo('y', 1, [2, 3])], [c]), 13);

  test('replaces an initializer stored as float_data or external data with raw bytes', async () => {
    const c = create(TensorProtoSchema, { name: 'c', dims: [2n, 3n], dataType: 1, floatData: [1, 1, 1, 1, 1, 1] });
    const m = mulModel(c);
    replaceTensorData(m.graph!, 'c', Float32Array.from([1, 2, 3, 4, 5, 6]));
    assert.deepEqual(c.floatData, []);
    assert.equal(c.rawData.byteLength, 24);
    assert.deepEqual((await run(m, x23())).y.data, xValues.map((v, i) => Math.fround(v * (i + 1))));

    c.externalData = [create(StringStringEntryProtoSchema, { key: 'location', value: 'nowhere.bin' })];
    c.dataLocation = 1;
    replaceTensorData(m.graph!, 'c', new Float32Array([2, 2, 2, 1, 1, 1]).subarray(3), { dims: [1, 3] });
    assert.equal(c.dataLocation, 0);
    assert.deepEqual(c.externalData, []);
    assert.deepEqual((await run(m, x23())).y.data, xValues.map((v) => v));
  });

  test('replaces the value of a Constant node', async () => {
    const m = model(graph('g', [node('Constant', [], ['c'], { value: floatTensor('cv', [3], [1, 1, 1]) }), node('Mul', ['x', 'c'], ['y'])], [valueInfo('x', 1, [2, 3])], [valueInfo('y', 1, [2, 3])], []), 13);
    replaceTensorData(m.graph!, 'c', Float32Array.from([0, 10, -1]));
    assert.deepEqual((await run(m, x23())).y.data, xValues.map((v, i) => Math.fround(v * [0, 10, -1][i % 3])));
  });

  test('changes the element type, and the old-IR input declaration with it', async () => {
    const c = floatTensor('c', [2, 3], [1, 1, 1, 1, 1, 1]);
    const g = graph('g', [node('Cast', ['c'], ['cf'], { to: 1 }), node('Add', ['x', 'cf'], ['y'])], [valueInfo('x', 1, [2, 3]), valueInfo('c', 1, [2, 3])], [valueInfo('y', 1, [2, 3])], [c]);
    const m = model(g, 13);
    replaceTensorData(g, 'c', Int8Array.from([-128, -1, 0, 1, 2, 127]), { dataType: 3 });
    assert.equal(c.dataType, 3);
    const declared = g.input[1].type!.value;
    assert.ok(declared.case === 'tensorType');
    assert.equal(declared.value.elemType, 3);
    assert.deepEqual((await run(m, x23())).y.data, xValues.map((v, i) => v + [-128, -1, 0, 1, 2, 127][i]));
  });

  test('rejects a wrong byte count and an unknown name', () => {
    const g = mulModel(floatTensor('c', [2, 3], [1, 1, 1, 1, 1, 1])).graph!;
    assert.throws(() => replaceTensorData(g, 'c', new Float32Array(5)), /20 bytes given, float32\[2,3\] needs 24/);
    assert.throws(() => replaceTensorData(g, 'c', new Uint16Array(6), { dataType: 1 }), /12 bytes given/);
    assert.throws(() => replaceTensorData(g, 'nope', new Float32Array(1)), /no initializer or Constant node named 'nope'/);
  });
});
