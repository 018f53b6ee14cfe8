import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { convIntegerReason, quantizeDynamic } from '../../src/core/passes/quantize/dynamic';
import { evaluate } from '../../src/core/runtime/evaluate';
import { buildMlp } from '../../src/core/samples/mlp';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { cosine, onnxChecker, options, randomInput, run, save, writeBytes } from './helpers/quant';

const dir = tempDir('whittle-qdyn-');

async function quantize(file: string, raw: Record<string, unknown>, name: string) {
  const m = OnnxModel.open(file);
  const warnings: string[] = [];
  const report = await quantizeDynamic(m, options({ mode: 'dynamic', ...raw }), { warnings });
  const out = save(m, dir, name);
  m.close();
  return { report, warnings, ...out, proto: OnnxModel.open(out.file) };
}

describe('dynamic quantization', () => {
  const mlp = writeBytes(dir, 'mlp.onnx', buildMlp({ sizes: [128, 384, 256, 32], seed: 7 }));

  for (const symmetric of [true, false]) {
    test(`MLP, ${symmetric ? 'int8 symmetric' : 'uint8 asymmetric'} per-channel weights: runs, close to float, valid`, async () => {
      const r = await quantize(mlp, { symmetric: String(symmetric) }, `mlp-dyn-${symmetric}.onnx`);
      const ops = r.proto.graph.node.map((n) => n.opType);
      assert.equal(ops.filter((o) => o === 'MatMulInteger').length, 3);
      assert.equal(ops.filter((o) => o === 'DynamicQuantizeLinear').length, 3);
      assert.ok(!ops.includes('MatMul'));
      const wq = r.proto.graph.initializer.find((t) => t.name === 'fc1.weight_quantized')!;
      assert.equal(wq.dataType, symmetric ? 3 : 2);
      assert.deepEqual(r.report.layers.map((l) => [l.layer, l.format, l.granularity]), [['fc0', 'dynamic', 'per-channel'], ['fc1', 'dynamic', 'per-channel'], ['fc2', 'dynamic', 'per-channel']]);
      for (const l of r.report.layers) assert.ok(l.sqnrDb! > 38, `${l.layer} weight SQNR ${l.sqnrDb}`);
      assert.equal(r.report.errors[0].channelSqnrDb.length, 384);
      const x = { x: randomInput([8, 128]) };
      const [q, f] = [await run(r.file, x), await run(mlp, x)];
      assert.ok(cosine(q, f) >= 0.999, `cosine ${cosine(q, f)}`);
      assert.ok(cosine(q, f) < 1, 'the activations really are quantized');
      const checked = onnxChecker(r.file);
      if (checked !== undefined) assert.equal(checked, '');
    });
  }

  test('LeNet: Convs stay float with the measured reason; Gemms (transB=1, bias) are rewritten', async () => {
    const lenet = writeBytes(dir, 'lenet.onnx', buildSampleModel());
    const r = await quantize(lenet, {}, 'lenet-dyn.onnx');
    assert.deepEqual(r.report.layers.map((l) => [l.op, l.format, l.reason]), [['Conv', 'float', convIntegerReason], ['Conv', 'float', convIntegerReason], ['Gemm', 'dynamic', undefined], ['Gemm', 'dynamic', undefined]]);
    assert.match(convIntegerReason, /1\.03-3\.1x slower/);
    const x = { input: randomInput([4, 1, 28, 28]) };
    const [q, f] = [await run(r.file, x), await run(lenet, x)];
    assert.ok(cosine(q, f) >= 0.999, `cosine ${cosine(q, f)}`);
  });

  test('--exclude keeps a layer float', async () => {
    const r = await quantize(mlp, { exclude: 'fc2' }, 'mlp-dyn-ex.onnx');
    assert.deepEqual(r.report.layers.map((l) => l.format), ['dynamic', 'dynamic', 'float']);
    assert.ok(r.proto.graph.node.some((n) => n.opType === 'MatMul' && n.name === 'fc2'));
  });

  test('mnist-8 (opset 8, weight through a Reshape): opset raised to 11, accuracy within 0.5 pt on 2,000 images', { skip: noSharedData }, async (t) => {
    const src = path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx');
    const data = path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz');
    const r = await quantize(src, {}, 'mnist8-dyn.onnx');
    assert.equal(r.proto.opsets['ai.onnx'], 11);
    assert.deepEqual(r.report.layers.filter((l) => l.format === 'dynamic').map((l) => l.op), ['MatMul']);
    const [base, q] = [await evaluate({ model: src, data, limit: 2000, ep: 'cpu' }), await evaluate({ model: r.file, data, limit: 2000, ep: 'cpu' })];
    t.diagnostic(`mnist-8 dynamic: fp32 ${(base.accuracy! * 100).toFixed(2)}%, dynamic ${(q.accuracy! * 100).toFixed(2)}%`);
    assert.ok((base.accuracy! - q.accuracy!) * 100 <= 0.5);
  });
});
