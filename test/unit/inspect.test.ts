import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { TensorProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { InputError } from '../../src/core/errors';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { decodeOnnx } from '../../src/core/formats/onnx/read';
import { inspectModel } from '../../src/core/inspect';
import { halfToFloat } from '../../src/core/model/dtype';
import { buildSampleModel, sampleModelParams } from '../../src/core/samples/sampleModel';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir();
const samplePath = path.join(dir, 'sample.onnx');
fs.writeFileSync(samplePath, buildSampleModel());

describe('sample model', () => {
  test('is deterministic for a seed and differs across seeds', async () => {
    assert.deepEqual(buildSampleModel(1), buildSampleModel(1));
    assert.notDeepEqual(buildSampleModel(1), buildSampleModel(2));
  });

  test('inspect reports its structure and parameter count', async () => {
    const s = await inspectModel(samplePath);
    assert.equal(s.format, 'onnx');
    assert.equal(s.params, sampleModelParams);
    assert.equal(s.params, 8 * 25 + 8 + 16 * 8 * 25 + 16 + 64 * 400 + 64 + 10 * 64 + 10);
    assert.equal(s.bytes, s.params * 4);
    assert.deepEqual(s.opsets, { 'ai.onnx': 13 });
    assert.deepEqual(s.inputs, [{ name: 'input', dtype: 'float32', shape: ['batch', 1, 28, 28] }]);
    assert.deepEqual(s.outputs, [{ name: 'logits', dtype: 'float32', shape: ['batch', 10] }]);
    assert.deepEqual(s.opCounts, { Conv: 2, Relu: 3, MaxPool: 2, Reshape: 1, Gemm: 2 });
    assert.deepEqual(s.layers.map((l) => [l.name, l.op, l.weights.map((w) => w.name)]), [
      ['/conv1/Conv', 'Conv', ['conv1.weight', 'conv1.bias']],
      ['/conv2/Conv', 'Conv', ['conv2.weight', 'conv2.bias']],
      ['/fc1/Gemm', 'Gemm', ['fc1.weight', 'fc1.bias']],
      ['/fc2/Gemm', 'Gemm', ['fc2.weight', 'fc2.bias']],
    ]);
    const fc1 = s.layers[2].weights[0];
    assert.deepEqual(fc1.shape, [64, 400]);
    // He init: std ~ sqrt(2/400) = 0.0707; biases are zero, so fully sparse.
    assert.ok(Math.abs(fc1.std! - Math.sqrt(2 / 400)) < 0.005, `fc1 std ${fc1.std}`);
    assert.equal(s.layers[2].weights[1].sparsity, 1);
  });

  test('onnxruntime-node loads and runs it with a dynamic batch', async () => {
    const session = await ort.InferenceSession.create(samplePath);
    try {
      const x = new ort.Tensor('float32', Float32Array.from({ length: 3 * 784 }, (_, i) => (i % 255) / 255), [3, 1, 28, 28]);
      const out = await session.run({ input: x });
      assert.deepEqual(out.logits.dims, [3, 10]);
      assert.ok((out.logits.data as Float32Array).every(Number.isFinite));
    } finally {
      await session.release();
    }
  });

  // Debian's python3-onnx lives in /usr/bin/python3, which may not be the python3 first on PATH.
  const pythonWithOnnx = process.env.WHITTLE_PYTHON ?? '/usr/bin/python3';
  const python = spawnSync(pythonWithOnnx, ['-c', 'import onnx'], { encoding: 'utf8' });
  test('passes the independent onnx.checker (python3-onnx)', { skip: python.status !== 0 && 'skipped: python3 with the onnx package is not installed' }, async () => {
    const res = spawnSync(pythonWithOnnx, ['-c', 'import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print(len(m.graph.node))', samplePath], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    assert.equal(res.stdout.trim(), '10');
  });
});

describe('bad input gets a clear error naming the file', () => {
  const cases: Array<[string, Uint8Array | string, RegExp]> = [
    ['empty.onnx', new Uint8Array(0), /empty file/],
    ['text.onnx', 'hello, this is plain text and nothing else', /not a recognised model format/],
    ['archive.onnx', Buffer.from([0x50, 0x4b, 0x03, 0x04, 1, 2, 3, 4]), /zip archive/],
    ['packed.onnx', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]), /gzip/],
    ['config.json', '{"name": "not a model"}', /JSON file/],
    ['truncated.onnx', buildSampleModel().subarray(0, 50_000), /truncated or corrupted/],
    ['tensor.pb', toBinary(TensorProtoSchema, create(TensorProtoSchema, { dims: [2n], dataType: 1, rawData: new Uint8Array(8) })), /TensorProto/],
  ];
  for (const [name, content, problem] of cases) {
    test(name, async () => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      const before = fs.readFileSync(file);
      await assert.rejects(inspectModel(file), (err: Error) => err instanceof InputError && err.message.startsWith(`${file}: `) && problem.test(err.message));
      assert.deepEqual(fs.readFileSync(file), before, 'the input file must not change');
    });
  }

  test('a missing file', async () => {
    const file = path.join(dir, 'nope.onnx');
    await assert.rejects(inspectModel(file), { message: `${file}: no such file` });
  });

  test('a folder', async () => {
    await assert.rejects(inspectModel(dir), { message: `${dir}: is a folder, not a model file` });
  });

  test('bytes that decode but hold no graph', async () => {
    assert.throws(() => decodeOnnx(Buffer.from([0x08, 0x07]), 'x.onnx'), /x\.onnx: not an ONNX model: it has no graph/);
  });
});

describe('weights in external data', () => {
  const extDir = path.join(dir, 'ext');
  fs.mkdirSync(extDir);
  const w = floatTensor('w', [2, 3], [1, 0, -2, 0, 3, 0]);
  const data = Buffer.from(w.rawData);
  w.rawData = new Uint8Array(0);
  w.dataLocation = 1;
  w.externalData = [
    { key: 'location', value: 'weights.bin' },
    { key: 'offset', value: '16' },
    { key: 'length', value: String(data.byteLength) },
  ].map((e) => ({ ...e, $typeName: 'onnx.StringStringEntryProto' as const }));
  const bytes = encodeModel(model(graph('g', [node('MatMul', ['x', 'w'], ['y'])], [valueInfo('x', 1, [1, 2])], [valueInfo('y', 1, [1, 3])], [w]), 13));
  fs.writeFileSync(path.join(extDir, 'm.onnx'), bytes);

  test('are read from the data file at their offset', async () => {
    fs.writeFileSync(path.join(extDir, 'weights.bin'), Buffer.concat([Buffer.alloc(16, 0xff), data]));
    const s = await inspectModel(path.join(extDir, 'm.onnx'));
    const info = s.layers[0].weights[0];
    assert.deepEqual([info.min, info.max, info.sparsity], [-2, 3, 0.5]);
    assert.ok(Math.abs(info.mean! - 2 / 6) < 1e-12);
  });

  test('a missing data file is an error naming it', async () => {
    fs.rmSync(path.join(extDir, 'weights.bin'));
    await assert.rejects(inspectModel(path.join(extDir, 'm.onnx')), { message: `${path.join(extDir, 'weights.bin')}: missing external data file for tensor 'w'` });
  });

  test('a short data file is an error naming it', async () => {
    fs.writeFileSync(path.join(extDir, 'weights.bin'), Buffer.alloc(20));
    await assert.rejects(inspectModel(path.join(extDir, 'm.onnx')), /weights\.bin: external data for tensor 'w' is truncated or out of range/);
  });
});

describe('NaN weights are reported, not hidden', () => {
  test('non-finite values are counted in warnings and left out of the statistics', async () => {
    const w = floatTensor('w', [4], [1, NaN, 3, Infinity]);
    const file = path.join(dir, 'nan.onnx');
    fs.writeFileSync(file, encodeModel(model(graph('g', [node('Mul', ['x', 'w'], ['y'])], [valueInfo('x', 1, [4])], [valueInfo('y', 1, [4])], [w]), 13)));
    const s = await inspectModel(file);
    assert.deepEqual(s.warnings, ['w: 2 NaN or infinite values']);
    assert.deepEqual([s.layers[0].weights[0].min, s.layers[0].weights[0].max, s.layers[0].weights[0].mean], [1, 3, 2]);
  });
});

test('halfToFloat decodes IEEE half precision', async () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

describe('real models from ../shared/data', { skip: noSharedData }, () => {
  const corpus = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'fixtures', 'models.json'), 'utf8')).models as Array<{
    path: string;
    irVersion?: number;
    opsets?: Record<string, number>;
    params?: number;
    inputs?: Array<[string, number[]]>;
    inputCount?: number;
    inputsExclude?: string[];
    outputs?: string[];
    ops?: Record<string, number>;
    dtype?: string;
    layers?: Array<[string, string]>;
  }>;
  for (const entry of corpus) {
    test(entry.path, async () => {
      const s = await inspectModel(path.join(sharedData!, entry.path));
      if (entry.irVersion !== undefined) assert.equal(s.irVersion, entry.irVersion);
      if (entry.opsets) for (const [d, v] of Object.entries(entry.opsets)) assert.equal(s.opsets[d], v);
      if (entry.params !== undefined) assert.equal(s.params, entry.params);
      if (entry.inputs) assert.deepEqual(s.inputs.map((i) => [i.name, i.shape]), entry.inputs);
      if (entry.inputCount !== undefined) assert.equal(s.inputs.length, entry.inputCount);
      for (const name of entry.inputsExclude ?? []) assert.ok(!s.inputs.some((i) => i.name === name), `${name} is a weight, not an input`);
      if (entry.outputs) assert.deepEqual(s.outputs.map((o) => o.name), entry.outputs);
      if (entry.ops) for (const [op, n] of Object.entries(entry.ops)) assert.equal(s.opCounts[op], n, op);
      if (entry.layers) assert.deepEqual(s.layers.map((l) => [l.name, l.kind]), entry.layers);
      if (entry.dtype) assert.ok(s.layers.some((l) => l.weights.some((w) => w.dtype === entry.dtype)));
      for (const l of s.layers) for (const w of l.weights) if (w.params > 0 && w.min !== null) assert.ok(w.min <= w.max!);
    });
  }
});

describe('weights in subgraphs and Constant nodes', () => {
  test('an If branch holding an initializer and a Constant-node weight is seen, scoped, and round-trips', async () => {
    const thenBranch = graph(
      'then',
      [node('Constant', [], ['c'], { value: floatTensor('c', [2, 2], [1, 2, 3, 4]) }, 'const_c'), node('MatMul', ['x', 'c'], ['t1'], {}, 'then_mm'), node('Add', ['t1', 'bias'], ['y_then'], {}, 'then_add')],
      [],
      [valueInfo('y_then', 1, [1, 2])],
      [floatTensor('bias', [2], [0.5, -0.5])],
    );
    const elseBranch = graph('else', [node('Identity', ['x'], ['y_else'], {}, 'else_id')], [], [valueInfo('y_else', 1, [1, 2])], []);
    const ifNode = node('If', ['cond'], ['y'], { then_branch: thenBranch, else_branch: elseBranch }, 'branch');
    const file = path.join(dir, 'subgraph.onnx');
    fs.writeFileSync(file, encodeModel(model(graph('main', [ifNode], [valueInfo('x', 1, [1, 2]), valueInfo('cond', 9, [])], [valueInfo('y', 1, [1, 2])], []), 13)));
    const m = OnnxModel.open(file);
    const weights = m.weights();
    assert.deepEqual([...weights.keys()].sort(), ['bias', 'c']);
    assert.equal(weights.get('c')!.origin.kind, 'constant');
    assert.equal(weights.get('bias')!.scope, 'branch/then_branch');
    const mm = m.layers().find((l) => l.name === 'then_mm')!;
    assert.equal(mm.kind, 'matmul');
    assert.deepEqual([...mm.weight.toFloat32()], [1, 2, 3, 4]);
    assert.deepEqual([...mm.bias!.toFloat32()], [0.5, -0.5], 'the Add after MatMul is its bias');
    const s = await inspectModel(file);
    assert.equal(s.params, 6);
    assert.deepEqual(s.opCounts, { If: 1, Constant: 1, MatMul: 1, Add: 1, Identity: 1 });
    const session = await ort.InferenceSession.create(file);
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 1]), [1, 2]), cond: new ort.Tensor('bool', Uint8Array.from([1]), []) });
    assert.deepEqual([...(out.y.data as Float32Array)], [4.5, 5.5]);
    await session.release();
    m.close();
  });
});
