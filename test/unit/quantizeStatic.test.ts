import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { openDataset } from '../../src/core/data';
import { encodeModel, floatTensor, graph, model as buildModel, node, valueInfo } from '../../src/core/formats/onnx/build';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import type { PassContext } from '../../src/core/passes/pass';
import { parseParams } from '../../src/core/passes/pass';
import { foldBatchNorm, prepareForQuantization } from '../../src/core/passes/quantize/fold';
import { quantizeParams, type CalibrationMethod, type QuantizeOptions, type QuantizeReport } from '../../src/core/passes/quantize/params';
import { chooseWeightBits, cloneModel, quantizeStatic } from '../../src/core/passes/quantize/static';
import { normal, seededRandom } from '../../src/core/random';
import { modelInputs, openSession } from '../../src/core/runtime/session';
import { outputFloats, toOrt } from '../../src/core/runtime/tensors';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-qstatic-');
const options = (extra: Record<string, unknown> = {}): QuantizeOptions => parseParams<QuantizeOptions>(quantizeParams, { mode: 'static', ...extra });
const bytesOf = (m: OnnxModel) => toBinary(ModelProtoSchema, m.proto);

/** A model from builder parts, opened as an OnnxModel. */
function open(bytes: Uint8Array, name: string): OnnxModel {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return OnnxModel.open(file);
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], logSeverityLevel: 4 });
  try {
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, outputFloats(v)]));
  } finally {
    await s.release();
  }
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

function sqnr(ref: Float32Array, got: Float32Array): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < ref.length; i++) {
    s += ref[i] * ref[i];
    n += (ref[i] - got[i]) ** 2;
  }
  return 10 * Math.log10(s / n);
}

/** Seeded tensor with N(mean, std) values. */
function randn(shape: number[], seed: number, std = 1, mean = 0): Float32Array {
  const r = normal(seededRandom(seed));
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => mean + std * r());
}

/**
 * A small ResNet-style CNN: Conv+BN+Relu stem, a residual block (Conv+BN+Relu, Conv+BN, Add, Relu), a 1x1
 * branch concatenated with it, MaxPool, Conv+Relu, GlobalAveragePool, Flatten, Gemm.
 */
function smallCnn(): Uint8Array {
  let seed = 10;
  const conv = (name: string, x: string, cin: number, cout: number, k: number, bn: boolean, relu: boolean) => {
    const nodes = [];
    const inits = [floatTensor(`${name}.w`, [cout, cin, k, k], randn([cout, cin, k, k], seed++, Math.sqrt(2 / (cin * k * k))))];
    nodes.push(node('Conv', [x, `${name}.w`], [`${name}.conv`], { kernel_shape: [k, k], pads: [k >> 1, k >> 1, k >> 1, k >> 1] }, `${name}_conv`));
    let out = `${name}.conv`;
    if (bn) {
      const stat = (n: string, f: () => number) => floatTensor(`${name}.${n}`, [cout], Float32Array.from({ length: cout }, f));
      const r = seededRandom(seed++);
      inits.push(stat('g', () => 0.5 + r()), stat('b', () => r() - 0.5), stat('m', () => r() - 0.5), stat('v', () => 0.5 + r()));
      nodes.push(node('BatchNormalization', [out, `${name}.g`, `${name}.b`, `${name}.m`, `${name}.v`], [`${name}.bn`], { epsilon: 1e-5 }, `${name}_bn`));
      out = `${name}.bn`;
    }
    if (relu) {
      nodes.push(node('Relu', [out], [`${name}.relu`], {}, `${name}_relu`));
      out = `${name}.relu`;
    }
    return { nodes, inits, out };
  };
  const stem = conv('stem', 'input', 3, 8, 3, true, true);
  const a = conv('blockA', stem.out, 8, 8, 3, true, true);
  const b = conv('blockB', a.out, 8, 8, 3, true, false);
  const side = conv('side', stem.out, 8, 8, 1, false, true);
  const head = conv('head', 'pooled', 16, 16, 3, true, true);
  const nodes = [
    ...stem.nodes,
    ...a.nodes,
    ...b.nodes,
    node('Add', [b.out, stem.out], ['res'], {}, 'res_add'),
    node('Relu', ['res'], ['res.relu'], {}, 'res_relu'),
    ...side.nodes,
    node('Concat', ['res.relu', side.out], ['cat'], { axis: 1 }, 'cat'),
    node('MaxPool', ['cat'], ['pooled'], { kernel_shape: [2, 2], strides: [2, 2] }, 'pool'),
    ...head.nodes,
    node('GlobalAveragePool', [head.out], ['gap'], {}, 'gap'),
    node('Flatten', ['gap'], ['flat'], {}, 'flatten'),
    node('Gemm', ['flat', 'fc.w', 'fc.b'], ['logits'], { transB: 1 }, 'fc'),
  ];
  const inits = [...stem.inits, ...a.inits, ...b.inits, ...side.inits, ...head.inits, floatTensor('fc.w', [10, 16], randn([10, 16], 99, 0.3)), floatTensor('fc.b', [10], randn([10], 98, 0.1))];
  return encodeModel(buildModel(graph('small_cnn', nodes, [valueInfo('input', 1, [1, 3, 16, 16])], [valueInfo('logits', 1, [1, 10])], inits), 13));
}

/** A .npy file of `count` samples of shape `shape` with N(0,1) values, as calibration data. */
function npyFile(name: string, shape: number[], seed: number): string {
  const data = randn(shape, seed);
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  const text = header + ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(text.length, 8);
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(text, 'latin1'), Buffer.from(data.buffer)]));
  return file;
}

const ctxOf = (data: string, limit: number): PassContext => ({ warnings: [], calibration: { data, limit, ep: 'cpu' } });

/** python3-onnx's checker on a model; skipped (returns undefined) when /usr/bin/python3 has no onnx. */
function onnxCheck(bytes: Uint8Array, name: string): string | undefined {
  const file = path.join(dir, `${name}.check.onnx`);
  fs.writeFileSync(file, bytes);
  const r = spawnSync('/usr/bin/python3', ['-c', 'import sys, onnx; onnx.checker.check_model(onnx.load(sys.argv[1])); print("ok")', file], { encoding: 'utf8' });
  if (/No module named/.test(r.stderr)) return undefined;
  return r.status === 0 ? 'ok' : r.stderr.trim().split('\n').slice(-3).join(' ');
}

describe('graph preparation', () => {
  test('BatchNormalization folds into the Conv with outputs unchanged to 1e-5', async () => {
    const bytes = smallCnn();
    const m = open(bytes, 'cnn.onnx');
    const folded = foldBatchNorm(m);
    assert.deepEqual(folded.sort(), ['blockA_bn', 'blockB_bn', 'head_bn', 'stem_bn']);
    assert.equal(m.graph.node.filter((n) => n.opType === 'BatchNormalization').length, 0);
    const feeds = { input: new ort.Tensor('float32', randn([1, 3, 16, 16], 5), [1, 3, 16, 16]) };
    const [want, got] = [await run(bytes, feeds), await run(bytesOf(m), feeds)];
    const worst = want.logits.reduce((w, v, i) => Math.max(w, Math.abs(v - got.logits[i])), 0);
    assert.ok(worst < 1e-5, `max difference ${worst}`);
  });

  test('mnist-8: bias Adds fold into the Convs, MatMul + Add becomes Gemm, opset 8 -> 13, same outputs', { skip: noSharedData }, async () => {
    const src = path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx');
    const m = OnnxModel.open(src);
    const prep = prepareForQuantization(m);
    assert.equal(prep.biasAdds.length, 2);
    assert.equal(prep.gemms.length, 1);
    assert.deepEqual(prep.opset, { from: 8, to: 13, blockers: undefined });
    assert.deepEqual(m.graph.node.map((n) => n.opType), ['Conv', 'Relu', 'MaxPool', 'Conv', 'Relu', 'MaxPool', 'Reshape', 'Gemm']);
    const feeds = { Input3: new ort.Tensor('float32', randn([1, 1, 28, 28], 3, 60, 100), [1, 1, 28, 28]) };
    const [want, got] = [await run(fs.readFileSync(src), feeds), await run(bytesOf(m), feeds)];
    const out = Object.keys(want)[0];
    const worst = want[out].reduce((w, v, i) => Math.max(w, Math.abs(v - got[out][i]) / (1 + Math.abs(v))), 0);
    assert.ok(worst < 1e-5, `max relative difference ${worst}`);
  });
});

describe('static QDQ placement and fusion', () => {
  test('a small CNN (Conv+BN+Relu, residual Add, Concat, MaxPool, GAP, Flatten, Gemm) runs int8 end to end in onnxruntime', async () => {
    const bytes = smallCnn();
    const m = open(bytes, 'cnn-q.onnx');
    const data = npyFile('cnn-calib.npy', [64, 3, 16, 16], 21);
    const report = await quantizeStatic(m, options(), ctxOf(data, 64));
    console.log('cnn optimized ops', JSON.stringify(report.optimizedOps), 'float', JSON.stringify(report.floatOps));
    const ops = report.optimizedOps!;
    assert.equal(ops.Conv ?? 0, 0, 'no float Conv');
    assert.equal((ops.QLinearConv ?? 0) + (ops.NhwcQLinearConv ?? 0), 5, 'every conv is QLinearConv');
    assert.ok(ops.QGemm === 1 || ops.QLinearMatMul === 1, 'the classifier is int8');
    assert.equal(ops.QLinearAdd, 1);
    assert.equal(ops.QLinearConcat, 1);
    assert.equal(ops.QLinearGlobalAveragePool, 1);
    for (const op of ['Conv', 'Gemm', 'MatMul', 'Add', 'Concat', 'GlobalAveragePool', 'FusedConv']) assert.equal(report.floatOps?.[op], undefined, `${op} stayed float`);
    assert.equal(report.layers.filter((l) => l.format === 'qdq').length, 6);
    assert.ok(report.activations!.length > 5);
    assert.ok(report.activations![0].sqnrDb <= report.activations!.at(-1)!.sqnrDb, 'worst first');
    // Close to float on held-out samples.
    const feeds = { input: new ort.Tensor('float32', randn([1, 3, 16, 16], 77), [1, 3, 16, 16]) };
    const [want, got] = [await run(bytes, feeds), await run(bytesOf(m), feeds)];
    const c = cosine(want.logits, got.logits);
    console.log('cnn logits cosine', c.toFixed(5), 'sqnr', sqnr(want.logits, got.logits).toFixed(1));
    assert.ok(c > 0.99, `cosine ${c}`);
    assert.equal(onnxCheck(bytesOf(m), 'cnn') ?? 'ok', 'ok');
  });
});
