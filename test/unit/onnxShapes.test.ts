import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { clone, create, fromBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProtoSchema, ValueInfoProtoSchema, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { addOutputs } from '../../src/core/formats/onnx/edit';
import { inferShapes, type Dim, type ValueShape } from '../../src/core/formats/onnx/shapes';
import { noSharedData, sharedData } from './helpers/paths';

const F = 1;
const I64 = 7;
const BOOL = 9;

/** ONNX element type codes of the ORT tensor types these tests meet. */
const ortTypes: Record<string, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 };

/** Zeros of a graph input, symbols replaced by their sizes in `sizes`. */
function zeros(vi: ValueInfoProto, sizes: Record<string, number>): ort.Tensor {
  if (vi.type?.value.case !== 'tensorType') throw new Error(`input ${vi.name} is not a tensor`);
  const t = vi.type.value.value;
  const dims = (t.shape?.dim ?? []).map((d) => (d.value.case === 'dimValue' ? Number(d.value.value) : sizes[String(d.value.value)]));
  if (dims.some((d) => d === undefined)) throw new Error(`no size for a symbolic dimension of ${vi.name}`);
  const n = dims.reduce((a, b) => a * b, 1);
  if (t.elemType === F) return new ort.Tensor('float32', new Float32Array(n), dims);
  if (t.elemType === I64) return new ort.Tensor('int64', new BigInt64Array(n), dims);
  if (t.elemType === BOOL) return new ort.Tensor('bool', new Uint8Array(n), dims);
  throw new Error(`no zeros for element type ${t.elemType}`);
}

/** Runs the model in onnxruntime with every node output exposed; returns each value's type and dims. */
async function ortShapes(m: ModelProto, sizes: Record<string, number> = {}): Promise<Map<string, { dtype: number; dims: number[] }>> {
  const exposed = clone(ModelProtoSchema, m);
  const g = exposed.graph!;
  const initializers = new Set(g.initializer.map((t) => t.name));
  addOutputs(g, g.node.flatMap((n) => n.output.filter((o) => o !== '')));
  // Errors only: old-IR models warn once per initializer listed among the inputs.
  const session = await ort.InferenceSession.create(encodeModel(exposed), { logSeverityLevel: 3 });
  try {
    const feeds = Object.fromEntries(g.input.filter((vi) => !initializers.has(vi.name)).map((vi) => [vi.name, zeros(vi, sizes)]));
    const out = await session.run(feeds);
    return new Map(Object.entries(out).map(([name, t]) => [name, { dtype: ortTypes[t.type] ?? -1, dims: [...t.dims] }]));
  } finally {
    await session.release();
  }
}

const fullyKnown = (s: ValueShape | undefined): boolean => !!s && s.shape.every((d) => typeof d === 'number');

/**
 * Checks every inferred shape of a node output against onnxruntime: same rank and type, each size equal, each
 * symbol equal to the size it was run with. Returns the shares of node outputs whose shape was fully inferred
 * and whose rank was.
 */
async function checkAgainstOrt(m: ModelProto, sizes: Record<string, number> = {}): Promise<{ coverage: number; ranked: number; inferred: Map<string, ValueShape> }> {
  const inferred = inferShapes(m);
  const actual = await ortShapes(m, sizes);
  const outputs = m.graph!.node.flatMap((n) => n.output.filter((o) => o !== ''));
  let full = 0;
  let ranked = 0;
  for (const name of outputs) {
    const got = inferred.get(name);
    const want = actual.get(name);
    if (!got) continue;
    ranked++;
    assert.ok(want, `onnxruntime returned no '${name}'`);
    const ctx = `'${name}': inferred ${JSON.stringify(got)}, onnxruntime ${JSON.stringify(want)}`;
    assert.equal(got.dtype, want.dtype, `dtype of ${ctx}`);
    assert.equal(got.shape.length, want.dims.length, `rank of ${ctx}`);
    got.shape.forEach((d, i) => {
      if (typeof d === 'number') assert.equal(d, want.dims[i], `dim ${i} of ${ctx}`);
      if (typeof d === 'string') assert.equal(sizes[d], want.dims[i], `symbol '${d}' at dim ${i} of ${ctx}`);
    });
    if (fullyKnown(got)) full++;
  }
  return { coverage: full / outputs.length, ranked: ranked / outputs.length, inferred };
}

/** A one-input float model from nodes; `out` is the graph output. */
function build(opset: number, input: [string, Dim[]], nodes: NodeProto[], inits: TensorProto[] = [], out = nodes[nodes.length - 1].output[0]): ModelProto {
  const inputs = [valueInfo(input[0], F, input[1].map((d) => d ?? '?'))];
  return model(graph('g', nodes, inputs, [create(ValueInfoProtoSchema, { name: out })], inits), opset);
}

/** A node outside the default domain, which no rule knows. */
function customNode(opType: string, inputs: string[], outputs: string[]): NodeProto {
  const n = node(opType, inputs, outputs);
  n.domain = 'com.example';
  return n;
}

interface Case {
  name: string;
  model: ModelProto;
  /** Symbol sizes to run with. */
  sizes?: Record<string, number>;
  expect: Record<string, Dim[] | { dtype: number; shape: Dim[] }>;
}

const ones = (dims: number[]) => floatTensor(`w${dims.join('x')}`, dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.5));

const cases: Case[] = [
  {
    name: 'elementwise, broadcasting, comparisons, Where, Cast',
    model: build(13, ['x', [2, 3, 4]], [
      node('Add', ['x', 'b'], ['sum']),
      node('Relu', ['sum'], ['relu']),
      node('LeakyRelu', ['relu'], ['leaky'], { alpha: 0.1 }),
      node('Softmax', ['leaky'], ['soft'], { axis: -1 }),
      node('Greater', ['soft', 'b'], ['gt']),
      node('Where', ['gt', 'x', 'b'], ['where']),
      node('Mul', ['where', 'row'], ['mul']),
      node('Cast', ['mul'], ['cast'], { to: I64 }),
    ], [floatTensor('b', [3, 1], [1, 2, 3]), floatTensor('row', [1, 1, 1, 4], [1, 2, 3, 4])]),
    expect: { sum: [2, 3, 4], gt: { dtype: BOOL, shape: [2, 3, 4] }, where: [2, 3, 4], mul: [1, 2, 3, 4], cast: { dtype: I64, shape: [1, 2, 3, 4] } },
  },
  {
    name: 'symbolic dims pass through elementwise ops and broadcast against sizes',
    model: build(13, ['x', ['N', 3]], [node('Sigmoid', ['x'], ['s']), node('Add', ['s', 'b'], ['a']), node('Add', ['a', 'col'], ['c'])], [
      floatTensor('b', [1, 3], [1, 2, 3]),
      floatTensor('col', [4, 1, 1], [1, 2, 3, 4]),
    ]),
    sizes: { N: 5 },
    expect: { s: ['N', 3], a: ['N', 3], c: [4, 'N', 3] },
  },
  {
    name: 'MatMul with batch broadcasting and vectors, Gemm with transposes',
    model: build(13, ['x', [2, 1, 3, 4]], [
      node('MatMul', ['x', 'w546'], ['mm']),
      node('ReduceSum', ['mm', 'axes01'], ['red'], { keepdims: 0 }),
      node('MatMul', ['red', 'w6'], ['mv']),
      node('MatMul', ['v3', 'mv'], ['vm']),
      node('Reshape', ['vm', 'shape11'], ['vm2']),
      node('Gemm', ['a43', 'b54'], ['gemm'], { transA: 1, transB: 1 }),
      node('Add', ['vm2', 'gemm'], ['out']),
    ], [
      floatTensor('w546', [5, 4, 6], new Float32Array(120)),
      int64Tensor('axes01', [2], [0, 1]),
      floatTensor('w6', [6], new Float32Array(6)),
      floatTensor('v3', [3], new Float32Array(3)),
      int64Tensor('shape11', [2], [1, 1]),
      floatTensor('a43', [4, 3], new Float32Array(12)),
      floatTensor('b54', [5, 4], new Float32Array(20)),
    ]),
    expect: { mm: [2, 5, 3, 6], red: [3, 6], mv: [3], vm: [], vm2: [1, 1], gemm: [3, 5], out: [3, 5] },
  },
  {
    name: 'Conv: strides, asymmetric pads, dilations, groups, auto_pad',
    model: build(13, ['x', [1, 3, 10, 11]], [
      node('Conv', ['x', 'w8x3x3x3'], ['c1'], { strides: [2, 2], pads: [1, 0, 1, 2], dilations: [1, 2] }),
      node('Conv', ['x', 'w6x1x3x3'], ['c2'], { group: 3, auto_pad: 'SAME_UPPER', strides: [2, 3] }),
      node('Conv', ['x', 'w4x3x2x2'], ['c3'], { auto_pad: 'VALID', strides: [3, 3] }),
      node('Conv', ['x', 'w4x3x2x2', 'w4'], ['c4'], { auto_pad: 'SAME_LOWER', kernel_shape: [2, 2] }),
      node('GlobalAveragePool', ['c4'], ['gap']),
      node('Flatten', ['gap'], ['flat']),
      node('Flatten', ['c1'], ['flat0'], { axis: 0 }),
      node('Flatten', ['c1'], ['flat3'], { axis: -1 }),
    ], [ones([8, 3, 3, 3]), ones([6, 1, 3, 3]), ones([4, 3, 2, 2]), ones([4])]),
    expect: { c1: [1, 8, 5, 5], c2: [1, 6, 5, 4], c3: [1, 4, 3, 4], c4: [1, 4, 10, 11], gap: [1, 4, 1, 1], flat: [1, 4], flat0: [1, 200], flat3: [40, 5] },
  },
  {
    name: 'pools with ceil_mode, SAME_LOWER, and the dropped last window',
    model: build(13, ['x', [1, 2, 5, 7]], [
      node('MaxPool', ['x'], ['p1', 'idx'], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }),
      node('MaxPool', ['x'], ['p2'], { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }),
      node('AveragePool', ['x'], ['p3'], { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_LOWER' }),
      node('AveragePool', ['x'], ['p4'], { kernel_shape: [3, 2], strides: [1, 2], pads: [0, 1, 2, 0] }),
      node('GlobalMaxPool', ['p4'], ['gmp']),
    ]),
    expect: { p1: [1, 2, 3, 4], idx: { dtype: I64, shape: [1, 2, 3, 4] }, p2: [1, 2, 3, 4], p3: [1, 2, 3, 4], p4: [1, 2, 5, 4], gmp: [1, 2, 1, 1] },
  },
  {
    name: 'ConvTranspose with output_padding, groups, SAME_UPPER and output_shape',
    model: build(13, ['x', [1, 2, 5, 5]], [
      node('ConvTranspose', ['x', 'w2x3x3x3'], ['t1'], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 0] }),
      node('ConvTranspose', ['x', 'w2x3x3x3'], ['t2'], { group: 2, strides: [2, 3], auto_pad: 'SAME_UPPER' }),
      node('ConvTranspose', ['x', 'w2x3x3x3'], ['t3'], { strides: [2, 2], output_shape: [10, 11] }),
    ], [ones([2, 3, 3, 3])]),
    expect: { t1: [1, 3, 10, 9], t2: [1, 6, 10, 15], t3: [1, 3, 10, 11] },
  },
  {
    name: 'Reshape with 0 and -1 from a Constant, Transpose, Concat',
    model: build(13, ['x', ['N', 3, 4]], [
      node('Constant', [], ['shape'], { value: int64Tensor('s', [2], [0, -1]) }),
      node('Reshape', ['x', 'shape'], ['r']),
      node('Transpose', ['x'], ['t']),
      node('Transpose', ['x'], ['t2'], { perm: [0, 2, 1] }),
      node('Concat', ['x', 'x'], ['cat'], { axis: -1 }),
      node('Concat', ['x', 'x'], ['cat0'], { axis: 0 }),
      node('Reshape', ['x', 'flat'], ['r2']),
    ], [int64Tensor('flat', [1], [-1])]),
    sizes: { N: 2 },
    expect: { r: ['N', 12], t: [4, 3, 'N'], t2: ['N', 4, 3], cat: ['N', 3, 8], cat0: [null, 3, 4], r2: [null] },
  },
  {
    name: 'Shape, Gather, Unsqueeze, Concat fold into a Reshape target',
    model: build(15, ['x', ['N', 3, 4, 5]], [
      node('Shape', ['x'], ['shp']),
      node('Gather', ['shp', 'zero'], ['n'], { axis: 0 }),
      node('Unsqueeze', ['n', 'axis0'], ['n1']),
      node('Concat', ['n1', 'minus1'], ['target'], { axis: 0 }),
      node('Reshape', ['x', 'target'], ['r']),
      node('Shape', ['x'], ['tail'], { start: -2 }),
      node('Gather', ['x', 'idx2'], ['g'], { axis: 1 }),
      node('Slice', ['x', 'starts', 'ends', 'axes', 'steps'], ['sl']),
    ], [
      int64Tensor('zero', [], [0]),
      int64Tensor('axis0', [1], [0]),
      int64Tensor('minus1', [1], [-1]),
      int64Tensor('idx2', [2, 1], [0, 2]),
      int64Tensor('starts', [3], [0, -1, 4]),
      int64Tensor('ends', [3], [2 ** 60, -5, 0]),
      int64Tensor('axes', [3], [0, 2, 3]),
      int64Tensor('steps', [3], [1, -1, -2]),
    ], 'r'),
    sizes: { N: 2 },
    expect: { shp: { dtype: I64, shape: [4] }, n: { dtype: I64, shape: [] }, target: { dtype: I64, shape: [2] }, r: ['N', 60], tail: { dtype: I64, shape: [2] }, g: ['N', 2, 1, 4, 5], sl: ['N', 3, 4, 2] },
  },
  {
    name: 'Squeeze and Unsqueeze with axes as attribute (opset 11)',
    model: build(11, ['x', [1, 3, 1, 4]], [
      node('Squeeze', ['x'], ['sq'], { axes: [0, -2] }),
      node('Squeeze', ['x'], ['sqall']),
      node('Unsqueeze', ['sq'], ['us'], { axes: [0, 3] }),
      node('ReduceMean', ['us'], ['rm'], { axes: [1], keepdims: 0 }),
      node('ReduceMean', ['us'], ['rmall']),
      node('Pad', ['x', 'pads'], ['pad']),
      node('Slice', ['x', 'starts', 'ends'], ['sl']),
    ], [int64Tensor('pads', [8], [0, 1, 2, 0, 0, 0, 1, 3]), int64Tensor('starts', [2], [0, 1]), int64Tensor('ends', [2], [1, 3])]),
    expect: { sq: [3, 4], sqall: [3, 4], us: [1, 3, 4, 1], rm: [1, 4, 1], rmall: [1, 1, 1, 1], pad: [1, 4, 4, 7], sl: [1, 2, 1, 4] },
  },
  {
    name: 'Squeeze, Unsqueeze and reductions with axes as input (opset 18)',
    model: build(18, ['x', [1, 3, 1, 4]], [
      node('Squeeze', ['x', 'a02'], ['sq']),
      node('Unsqueeze', ['sq', 'a1'], ['us']),
      node('ReduceMean', ['us', 'a1'], ['rm']),
      node('ReduceSum', ['us', 'a1'], ['rs'], { keepdims: 0 }),
      node('ReduceSum', ['us'], ['rsall'], { keepdims: 0 }),
      node('Pad', ['x', 'pads', '', 'padaxes'], ['pad']),
    ], [int64Tensor('a02', [2], [0, 2]), int64Tensor('a1', [1], [-2]), int64Tensor('pads', [4], [1, 2, 3, 4]), int64Tensor('padaxes', [2], [1, 3])]),
    expect: { sq: [3, 4], us: [3, 1, 4], rm: [3, 1, 4], rs: [3, 4], rsall: [], pad: [1, 7, 1, 10] },
  },
  {
    name: 'Resize by scales and by sizes, Upsample',
    model: build(13, ['x', ['N', 2, 5, 7]], [
      node('Resize', ['x', '', 'scales'], ['up'], { mode: 'nearest' }),
      node('Resize', ['x', '', '', 'sizes'], ['sized']),
      node('Resize', ['x', '', 'down'], ['down_out']),
    ], [floatTensor('scales', [4], [1, 1, 2, 1.5]), int64Tensor('sizes', [4], [2, 2, 3, 9]), floatTensor('down', [4], [1, 1, 0.5, 0.3])], 'up'),
    sizes: { N: 2 },
    expect: { up: ['N', 2, 10, 10], sized: [2, 2, 3, 9], down_out: ['N', 2, 2, 2] },
  },
  {
    name: 'Upsample (opset 9)',
    model: build(9, ['x', [1, 2, 3, 3]], [node('Upsample', ['x', 'scales'], ['up'])], [floatTensor('scales', [4], [1, 1, 2, 3])]),
    expect: { up: [1, 2, 6, 9] },
  },
  {
    name: 'normalizations, Dropout, quantization',
    model: build(17, ['x', [2, 3, 4]], [
      node('BatchNormalization', ['x', 'g3', 'b3', 'b3', 'g3'], ['bn']),
      node('InstanceNormalization', ['bn', 'g3', 'b3'], ['in']),
      node('LayerNormalization', ['in', 'g4', 'b4'], ['ln'], { axis: -1 }),
      node('Dropout', ['ln'], ['drop', 'mask']),
      node('QuantizeLinear', ['drop', 'scale', 'zp'], ['q']),
      node('DequantizeLinear', ['q', 'scale', 'zp'], ['dq']),
      node('QuantizeLinear', ['dq', 'scale'], ['q8']),
      node('Clip', ['dq'], ['clip']),
    ], [
      floatTensor('g3', [3], [1, 1, 1]),
      floatTensor('b3', [3], [0, 0, 0]),
      floatTensor('g4', [4], [1, 1, 1, 1]),
      floatTensor('b4', [4], [0, 0, 0, 0]),
      floatTensor('scale', [], [0.1]),
      create(TensorProtoSchema, { name: 'zp', dataType: 3, int32Data: [0] }),
    ], 'clip'),
    expect: { bn: [2, 3, 4], ln: [2, 3, 4], mask: { dtype: BOOL, shape: [2, 3, 4] }, q: { dtype: 3, shape: [2, 3, 4] }, dq: [2, 3, 4], q8: { dtype: 2, shape: [2, 3, 4] }, clip: [2, 3, 4] },
  },
];

describe('inferShapes on built models, checked against onnxruntime', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const { inferred } = await checkAgainstOrt(c.model, c.sizes);
      for (const [name, want] of Object.entries(c.expect)) {
        const expected = Array.isArray(want) ? { dtype: F, shape: want } : want;
        assert.deepEqual(inferred.get(name), expected, `inferred shape of '${name}'`);
      }
    });
  }
});

describe('inferShapes on what it cannot know', () => {
  test('an unknown op leaves its outputs and their consumers unknown, without throwing', () => {
    const m = build(13, ['x', [2, 3]], [customNode('Frobnicate', ['x'], ['f']), node('Relu', ['f'], ['r']), node('Bogus', ['r'], ['b']), node('Relu', ['x'], ['ok'])], [], 'b');
    const s = inferShapes(m);
    assert.deepEqual(s.get('ok'), { dtype: F, shape: [2, 3] });
    assert.equal(s.has('f'), false);
    assert.equal(s.has('r'), false);
    assert.equal(s.has('b'), false);
  });

  test('declared value_info and outputs seed values that no rule reaches', () => {
    const m = build(13, ['x', [2, 3]], [customNode('Frobnicate', ['x'], ['f']), node('Relu', ['f'], ['r'])], [], 'r');
    m.graph!.valueInfo.push(valueInfo('f', F, ['B', 7]));
    const s = inferShapes(m);
    assert.deepEqual(s.get('f'), { dtype: F, shape: ['B', 7] });
    assert.deepEqual(s.get('r'), { dtype: F, shape: ['B', 7] });
    assert.deepEqual(s.get('x'), { dtype: F, shape: [2, 3] });
  });

  test('a Reshape target that is computed at run time still gives the rank', () => {
    const m = build(13, ['x', [2, 6]], [node('Shape', ['x'], ['s']), node('Neg', ['s'], ['t']), node('Abs', ['t'], ['u']), node('Reshape', ['x', 'u'], ['r'])]);
    assert.deepEqual(inferShapes(m).get('r'), { dtype: F, shape: [null, null] });
  });

  test('malformed nodes (bad axis, missing inputs) leave outputs unknown', () => {
    const m = build(13, ['x', [2, 3]], [node('Concat', ['x', 'x'], ['c'], { axis: 5 }), node('MatMul', ['x'], ['mm']), node('Gemm', ['x'], ['g'])], [], 'c');
    const s = inferShapes(m);
    assert.equal(s.has('c'), false);
    assert.equal(s.has('mm'), false);
    assert.equal(s.has('g'), false);
  });
});

/** Real models, the symbol sizes to run them with, and the least share of node outputs that must be inferred. */
const realModels: Array<{ file: string; sizes: Record<string, number>; minCoverage: number }> = [
  { file: 'models/onnx-mnist-8/mnist.onnx', sizes: {}, minCoverage: 1 },
  { file: 'models/onnx-super-resolution-10/super-resolution-10.onnx', sizes: { batch_size: 1 }, minCoverage: 1 },
  { file: 'models/onnx-ultraface-rfb-320/Ultraface_version-RFB-320.onnx', sizes: {}, minCoverage: 1 },
  { file: 'models/onnx-msra-190729-teams/msra_190729.onnx', sizes: { batch_size: 1, height: 64, width: 96 }, minCoverage: 1 },
];

/** The model with symbolic input dims fixed to their run sizes, so every shape can be known. */
function withFixedInputs(m: ModelProto, sizes: Record<string, number>): ModelProto {
  const fixed = clone(ModelProtoSchema, m);
  for (const vi of fixed.graph!.input) {
    if (vi.type?.value.case !== 'tensorType') continue;
    for (const d of vi.type.value.value.shape?.dim ?? []) {
      if (d.value.case === 'dimParam' && d.value.value in sizes) d.value = { case: 'dimValue', value: BigInt(sizes[d.value.value]) };
    }
  }
  return fixed;
}

describe('inferShapes on real models, checked against onnxruntime', { skip: noSharedData }, () => {
  for (const { file, sizes, minCoverage } of realModels) {
    test(path.basename(file), async () => {
      const m = fromBinary(ModelProtoSchema, fs.readFileSync(path.join(sharedData!, file)));
      // Declared value_info would answer for the rules; propagation alone is what is measured.
      m.graph!.valueInfo = [];
      const symbolic = await checkAgainstOrt(m, sizes);
      const fixed = await checkAgainstOrt(withFixedInputs(m, sizes), sizes);
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      console.log(`${path.basename(file)}: ${pct(fixed.coverage)} of node outputs fully inferred; with symbolic inputs ${pct(symbolic.coverage)} fully, ${pct(symbolic.ranked)} to their rank`);
      assert.ok(fixed.coverage >= minCoverage, `only ${pct(fixed.coverage)} fully inferred, expected at least ${pct(minCoverage)}`);
      // Symbols must not stop propagation: every value still gets its rank.
      assert.equal(symbolic.ranked, 1, `only ${pct(symbolic.ranked)} inferred to their rank with symbolic inputs`);
    });
  }
});
