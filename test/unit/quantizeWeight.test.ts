import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { InputError } from '../../src/core/errors';
import { replaceTensorData } from '../../src/core/formats/onnx/edit';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { evaluate } from '../../src/core/runtime/evaluate';
import { node } from '../../src/core/formats/onnx/build';
import { encodeModel } from '../../src/core/formats/onnx/build';
import { quantizeWeightOnly } from '../../src/core/passes/quantize/weightOnly';
import { buildMlp } from '../../src/core/samples/mlp';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { cosine, dequantizedReference, maxRelError, onnxChecker, options, randomInput, run, save, writeBytes } from './helpers/quant';

const dir = tempDir('whittle-qweight-');

/** Opens `file`, quantizes weight-only with raw CLI-style options, writes `<name>` and returns all of it. */
async function quantize(file: string, raw: Record<string, unknown>, name: string) {
  const m = OnnxModel.open(file);
  const warnings: string[] = [];
  const report = await quantizeWeightOnly(m, options({ mode: 'weight-only', ...raw }), { warnings });
  const out = save(m, dir, name);
  m.close();
  return { report, warnings, ...out, proto: OnnxModel.open(out.file) };
}

const opsOf = (m: OnnxModel) => m.graph.node.map((n) => n.opType);

describe('buildMlp', () => {
  test('is seeded, sized as asked, and runs', async () => {
    const a = buildMlp({ sizes: [8, 16, 4], seed: 5 });
    assert.deepEqual(a, buildMlp({ sizes: [8, 16, 4], seed: 5 }));
    assert.notDeepEqual(a, buildMlp({ sizes: [8, 16, 4], seed: 6 }));
    const y = await run(a, { x: randomInput([3, 8]) });
    assert.equal(y.length, 12);
    assert.ok(y.some((v) => v !== 0));
    const m = OnnxModel.fromBytes(a, 'mlp.onnx');
    assert.deepEqual(m.layers().filter((l) => l.op === 'MatMul').map((l) => [l.name, l.weight.name, l.bias?.name]), [['fc0', 'fc0.weight', 'fc0.bias'], ['fc1', 'fc1.weight', 'fc1.bias']]);
    assert.throws(() => buildMlp({ sizes: [8] }), /two or more/);
  });
});

describe('weight-only int8', () => {
  const mlp = writeBytes(dir, 'mlp.onnx', buildMlp({ sizes: [256, 512, 256, 10], seed: 2 }));

  test('--format qdq per-channel int8 DequantizeLinear: smaller, valid, and computes exactly the dequantized weights', async () => {
    const r = await quantize(mlp, { bits: '8', format: 'qdq' }, 'mlp-int8.onnx');
    const fp32 = (await import('node:fs')).statSync(mlp).size;
    const ratio = r.bytes / fp32;
    assert.ok(ratio > 0.24 && ratio < 0.3, `size ratio ${ratio}`);
    assert.deepEqual(opsOf(r.proto).filter((o) => o === 'DequantizeLinear').length, 3);
    assert.deepEqual(r.report.layers.map((l) => [l.layer, l.format, l.granularity, l.bits, l.symmetric]), [
      ['fc0', 'qdq', 'per-channel', 8, true], ['fc1', 'qdq', 'per-channel', 8, true], ['fc2', 'qdq', 'per-channel', 8, true],
    ]);
    for (const l of r.report.layers) assert.ok(l.sqnrDb! > 38 && l.sqnrDb! < 50, `${l.layer} SQNR ${l.sqnrDb}`);
    const e = r.report.errors[1];
    assert.deepEqual(e.shape, [512, 256]);
    assert.equal(e.channelSqnrDb.length, 256);
    assert.equal(e.error.length, 512 * 256);
    // A symmetric int8 error is at most half a step: max|w| / 127 / 2 per channel.
    assert.ok(e.error.every((v) => Math.abs(v) < 0.05));
    const x = { x: randomInput([4, 256]) };
    const [q, f, ref] = [await run(r.file, x, { basic: true }), await run(mlp, x), await run(dequantizedReference(mlp, r.report), x)];
    assert.ok(maxRelError(q, ref) < 1e-5, `against dequantized weights: ${maxRelError(q, ref)}`);
    assert.ok(cosine(q, f) > 0.9995, `cosine ${cosine(q, f)}`);
    // At onnxruntime's default level (8-bit MatMulNBits for the last layer) it stays close.
    const qAll = await run(r.file, x);
    assert.ok(maxRelError(qAll, ref) < 2e-2 && cosine(qAll, f) > 0.999, `default optimizations: ${maxRelError(qAll, ref)}`);
    const checked = onnxChecker(r.file);
    if (checked !== undefined) assert.equal(checked, '');
  });

  for (const symmetric of [true, false]) {
    test(`default int8 (${symmetric ? 'symmetric' : 'asymmetric'}): 8-bit MatMulNBits, block 32, close to the dequantized weights`, async () => {
      const r = await quantize(mlp, { bits: '8', symmetric: String(symmetric) }, `mlp-nb8-${symmetric}.onnx`);
      const nb = r.proto.graph.node.filter((n) => n.opType === 'MatMulNBits');
      assert.equal(nb.length, 3);
      assert.deepEqual(Object.fromEntries(nb[0].attribute.map((a) => [a.name, Number(a.i)])), { K: 256, N: 512, bits: 8, block_size: 32, accuracy_level: 4 });
      assert.equal(nb[0].input.length, symmetric ? 3 : 4);
      assert.deepEqual(r.report.layers.map((l) => [l.format, l.bits, l.granularity]), Array(3).fill(['matmulnbits', 8, 'block-32']));
      for (const l of r.report.layers) assert.ok(l.sqnrDb! > 40, `${l.layer} ${l.sqnrDb}`);
      const ratio = r.bytes / (await import('node:fs')).statSync(mlp).size;
      assert.ok(ratio > 0.27 && ratio < 0.3, `size ratio ${ratio}`);
      const x = { x: randomInput([4, 256]) };
      const [q, ref, f] = [await run(r.file, x), await run(dequantizedReference(mlp, r.report), x), await run(mlp, x)];
      // accuracy_level 4 also quantizes the activations to int8 inside the kernel: close, not equal.
      assert.ok(maxRelError(q, ref) < 2e-2 && cosine(q, ref) > 0.9999, `against dequantized weights: ${maxRelError(q, ref)}, cosine ${cosine(q, ref)}`);
      assert.ok(cosine(q, f) > 0.999, `cosine to float ${cosine(q, f)}`);
      const checked = onnxChecker(r.file);
      if (checked !== undefined) assert.equal(checked, '');
    });
  }

  test('asymmetric per-tensor uses uint8 with a zero point', async () => {
    const r = await quantize(mlp, { bits: '8', symmetric: 'false', perChannel: 'false', format: 'qdq' }, 'mlp-u8.onnx');
    const q = r.proto.graph.initializer.find((t) => t.name === 'fc0.weight_quantized')!;
    assert.equal(q.dataType, 2);
    assert.equal(r.proto.graph.initializer.find((t) => t.name === 'fc0.weight_zero_point')!.dataType, 2);
    assert.deepEqual(r.proto.graph.initializer.find((t) => t.name === 'fc0.weight_scale')!.dims, []);
    assert.equal(r.report.layers[0].granularity, 'per-tensor');
    const x = { x: randomInput([2, 256]) };
    assert.ok(maxRelError(await run(r.file, x, { basic: true }), await run(dequantizedReference(mlp, r.report), x)) < 1e-5);
  });

  test('--exclude by layer name or op type keeps those layers float with the reason', async () => {
    const r = await quantize(mlp, { bits: '8', exclude: 'fc1,Nope' }, 'mlp-ex.onnx');
    const fc1 = r.report.layers.find((l) => l.layer === 'fc1')!;
    assert.equal(fc1.format, 'float');
    assert.match(fc1.reason!, /excluded/);
    assert.ok(r.proto.graph.initializer.some((t) => t.name === 'fc1.weight' && t.dataType === 1));
    assert.ok(r.warnings.some((w) => /Nope/.test(w)));
    const lenet = writeBytes(dir, 'lenet.onnx', buildSampleModel());
    const c = await quantize(lenet, { bits: '8', exclude: 'Conv' }, 'lenet-ex.onnx');
    assert.deepEqual(c.report.layers.map((l) => [l.op, l.format]), [['Conv', 'float'], ['Conv', 'float'], ['Gemm', 'matmulnbits'], ['Gemm', 'matmulnbits']]);
  });

  test('a NaN weight is an InputError naming the file and the weight', async () => {
    const m = OnnxModel.open(mlp);
    const w = m.weights().get('fc1.weight')!.ref.toFloat32().slice();
    w[7] = NaN;
    replaceTensorData(m.graph, 'fc1.weight', w);
    const bad = writeBytes(dir, 'nan.onnx', encodeModel(m.proto));
    m.close();
    const n = OnnxModel.open(bad);
    await assert.rejects(quantizeWeightOnly(n, options({ mode: 'weight-only' }), { warnings: [] }), (e: Error) => e instanceof InputError && e.message.includes(bad) && e.message.includes("'fc1.weight'"));
  });

  test('per-channel falls back to per-tensor with a warning when the opset cannot be raised safely', async () => {
    // Opset 11 with a Softmax, whose axis semantics change at 13.
    const m = OnnxModel.fromBytes(buildMlp({ sizes: [16, 8], seed: 1, opset: 11 }), 'mlp11.onnx');
    m.graph.node.push(node('Softmax', ['y'], ['p'], { axis: 1 }, 'softmax'));
    m.graph.output[0].name = 'p';
    const file = writeBytes(dir, 'mlp11.onnx', encodeModel(m.proto));
    const r = await quantize(file, { bits: '8', format: 'qdq' }, 'mlp11-q.onnx');
    assert.equal(r.proto.opsets['ai.onnx'], 11);
    assert.equal(r.report.layers[0].granularity, 'per-tensor');
    assert.ok(r.warnings.some((w) => /per-tensor/.test(w) && /Softmax/.test(w)), r.warnings.join('\n'));
    const x = { x: randomInput([2, 16]) };
    assert.ok(maxRelError(await run(r.file, x, { basic: true }), await run(dequantizedReference(file, r.report), x)) < 1e-5);
  });

  test('Gemm and Conv of the sample LeNet: per-channel axes per op (Conv 0, Gemm transB=1 0)', async () => {
    const lenet = writeBytes(dir, 'lenet2.onnx', buildSampleModel());
    const r = await quantize(lenet, { bits: '8', format: 'qdq' }, 'lenet-q.onnx');
    const axes = r.proto.graph.node.filter((n) => n.opType === 'DequantizeLinear').map((n) => Number(n.attribute.find((a) => a.name === 'axis')!.i));
    assert.deepEqual(axes, [0, 0, 0, 0]);
    assert.deepEqual(r.report.errors.map((e) => e.channelSqnrDb.length), [8, 16, 64, 10]);
    const x = { input: randomInput([2, 1, 28, 28]) };
    assert.ok(maxRelError(await run(r.file, x), await run(dequantizedReference(lenet, r.report), x)) < 1e-5);
  });
});

describe('weight-only int4', () => {
  // K = 80 is not a multiple of 32: the last block is padded.
  const mlp = writeBytes(dir, 'mlp4.onnx', buildMlp({ sizes: [80, 256, 64, 16], seed: 4 }));

  for (const symmetric of [true, false]) {
    test(`MatMulNBits block 32 ${symmetric ? 'symmetric' : 'asymmetric'} equals the float model with the dequantized weights`, async () => {
      const r = await quantize(mlp, { bits: '4', block: '32', symmetric: String(symmetric) }, `mlp4-${symmetric}.onnx`);
      assert.deepEqual(opsOf(r.proto).filter((o) => o === 'MatMulNBits').length, 3);
      assert.equal(r.proto.opsets['com.microsoft'], 1);
      assert.ok(!r.proto.graph.initializer.some((t) => t.name === 'fc0.weight'), 'the float weight is gone');
      const nb = r.proto.graph.node.find((n) => n.opType === 'MatMulNBits')!;
      assert.deepEqual(Object.fromEntries(nb.attribute.map((a) => [a.name, Number(a.i)])), { K: 80, N: 256, bits: 4, block_size: 32, accuracy_level: 4 });
      assert.equal(nb.input.length, symmetric ? 3 : 4);
      for (const l of r.report.layers) assert.ok(l.sqnrDb! > 15 && l.sqnrDb! < 30, `${l.layer} ${l.sqnrDb}`);
      const x = { x: randomInput([5, 80]) };
      const [q, ref, f] = [await run(r.file, x), await run(dequantizedReference(mlp, r.report), x), await run(mlp, x)];
      // accuracy_level 4 quantizes A to int8 inside the kernel, so "equal" is to ~1e-2 of the largest output, not 1e-6.
      const rel = maxRelError(q, ref);
      assert.ok(rel < 2e-2, `against dequantized weights: ${rel}`);
      assert.ok(cosine(q, ref) > 0.9999, `cosine to the dequantized reference ${cosine(q, ref)}`);
      assert.ok(cosine(q, f) > 0.97, `cosine to float ${cosine(q, f)}`);
    });
  }

  test('MatMulNBits alone leaves the opset alone (opset 11 with a Softmax)', async () => {
    const m = OnnxModel.fromBytes(buildMlp({ sizes: [64, 32], seed: 1, opset: 11 }), 'mlp11.onnx');
    m.graph.node.push(node('Softmax', ['y'], ['p'], { axis: 1 }, 'softmax'));
    m.graph.output[0].name = 'p';
    const file = writeBytes(dir, 'mlp11-4.onnx', encodeModel(m.proto));
    const r = await quantize(file, { bits: '4' }, 'mlp11-4-q.onnx');
    assert.equal(r.proto.opsets['ai.onnx'], 11);
    assert.deepEqual(r.report.layers.map((l) => l.format), ['matmulnbits']);
    assert.deepEqual(r.warnings, []);
  });

  test('--format qdq writes opset-21 int4 DequantizeLinear blocked along K', async () => {
    const r = await quantize(mlp, { bits: '4', block: '32', format: 'qdq' }, 'mlp4-qdq.onnx');
    assert.equal(r.proto.opsets['ai.onnx'], 21);
    const t = r.proto.graph.initializer.find((x) => x.name === 'fc0.weight_quantized')!;
    assert.equal(t.dataType, 21); // uint4: int4 defaults to asymmetric
    assert.deepEqual(r.proto.graph.initializer.find((x) => x.name === 'fc0.weight_scale')!.dims.map(Number), [3, 256]);
    const x = { x: randomInput([3, 80]) };
    assert.ok(maxRelError(await run(r.file, x, { basic: true }), await run(dequantizedReference(mlp, r.report), x)) < 1e-5);
    // onnx 1.12's checker predates opset 21 and int4, so it is not asked here.
  });

  test('Gemm (transB=1, bias) becomes MatMulNBits + Add; Conv becomes int4 DQ at opset 21', async () => {
    const lenet = writeBytes(dir, 'lenet4.onnx', buildSampleModel());
    const r = await quantize(lenet, { bits: '4' }, 'lenet4-q.onnx');
    assert.deepEqual(r.report.layers.map((l) => [l.op, l.format, l.granularity]), [['Conv', 'qdq', 'block-32'], ['Conv', 'qdq', 'block-32'], ['Gemm', 'matmulnbits', 'block-32'], ['Gemm', 'matmulnbits', 'block-32']]);
    assert.ok(!opsOf(r.proto).includes('Gemm'));
    const x = { input: randomInput([2, 1, 28, 28]) };
    const [q, ref] = [await run(r.file, x), await run(dequantizedReference(lenet, r.report), x)];
    assert.ok(cosine(q, ref) > 0.9999, `cosine ${cosine(q, ref)}`);
  });
});

describe('weight-only on MNIST models', { skip: noSharedData }, () => {
  const data = sharedData ? path.join(sharedData, 'mnist', 't10k-images-idx3-ubyte.gz') : '';
  for (const [name, rel] of [['mnist-8', 'models/onnx-mnist-8/mnist.onnx'], ['opt-mnist', 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx']]) {
    test(`${name}: int8 per-channel drops at most 0.2 pt on 2,000 test images; int4 block 32 runs`, async (t) => {
      const src = path.join(sharedData!, rel);
      const base = await evaluate({ model: src, data, limit: 2000, ep: 'cpu' });
      const q8 = await quantize(src, { bits: '8' }, `${name}-int8.onnx`);
      assert.equal(q8.proto.opsets['ai.onnx'], 13, 'opset 8 raised to 13: every op in the model means the same there');
      const e8 = await evaluate({ model: q8.file, data, limit: 2000, ep: 'cpu' });
      const drop = (base.accuracy! - e8.accuracy!) * 100;
      assert.ok(drop <= 0.2, `${name} int8 drop ${drop} pt`);
      const checked = onnxChecker(q8.file);
      if (checked !== undefined) assert.equal(checked, '');
      const q4 = await quantize(src, { bits: '4' }, `${name}-int4.onnx`);
      const e4 = await evaluate({ model: q4.file, data, limit: 2000, ep: 'cpu' });
      const fp32 = (await import('node:fs')).statSync(src).size;
      t.diagnostic(`${name}: fp32 ${(base.accuracy! * 100).toFixed(2)}%, int8 ${(e8.accuracy! * 100).toFixed(2)}% (${(q8.bytes / fp32).toFixed(3)}x size), int4 block-32 ${(e4.accuracy! * 100).toFixed(2)}% (${(q4.bytes / fp32).toFixed(3)}x size; ${q4.report.layers.map((l) => `${l.op} ${l.format}`).join(', ')})`);
      assert.ok(e4.accuracy! > 0.9, `${name} int4 ${e4.accuracy}`);
      assert.ok(q8.bytes < fp32 * 0.45);
    });
  }
});
