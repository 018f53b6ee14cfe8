import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { halfToFloat } from '../../src/core/model/dtype';
import { convertFp16, floatToHalf } from '../../src/core/passes/quantize/fp16';
import { evaluate } from '../../src/core/runtime/evaluate';
import { buildMlp } from '../../src/core/samples/mlp';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { readTensorPb } from './helpers/ort';
import { cosine, onnxChecker, options, randomInput, run, save, writeBytes } from './helpers/quant';

const dir = tempDir('whittle-fp16-');

async function convert(file: string, raw: Record<string, unknown>, name: string) {
  const m = OnnxModel.open(file);
  const warnings: string[] = [];
  const report = await convertFp16(m, options({ mode: 'fp16', ...raw }), { warnings });
  const out = save(m, dir, name);
  m.close();
  return { report, warnings, ...out, proto: OnnxModel.open(out.file), ratio: out.bytes / fs.statSync(file).size };
}

/** Runs a model and returns every output as floats, by name. */
async function outputs(file: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(file, { logSeverityLevel: 4, intraOpNumThreads: 1 });
  try {
    const r = await s.run(feeds);
    for (const t of Object.values(r)) assert.equal(t.type, 'float32', 'the interface stays float32');
    return Object.fromEntries(Object.entries(r).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await s.release();
  }
}

describe('floatToHalf', () => {
  test('rounds to nearest even, saturates to infinity, keeps subnormals (independent cases)', () => {
    assert.equal(floatToHalf(1), 0x3c00);
    assert.equal(floatToHalf(-2), 0xc000);
    assert.equal(floatToHalf(65504), 0x7bff);
    assert.equal(floatToHalf(65520), 0x7c00); // halfway to the next binade rounds up to infinity
    assert.equal(floatToHalf(0.1), 0x2e66);
    assert.equal(floatToHalf(2 ** -24), 0x0001);
    assert.equal(floatToHalf(2 ** -26), 0x0000);
    assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00); // tie, even stays
    assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02); // tie, odd rounds up
    for (const v of [3.14159, -0.000123, 1234.5, 6e-5]) assert.ok(Math.abs(halfToFloat(floatToHalf(v)) - v) <= Math.abs(v) * 2 ** -11);
  });
});

describe('fp16 conversion', () => {
  const mlp = writeBytes(dir, 'mlp.onnx', buildMlp({ sizes: [64, 256, 128, 10], seed: 3 }));

  test('MLP: half the file, float16 inside, float32 interface, close outputs, valid', async () => {
    const r = await convert(mlp, {}, 'mlp16.onnx');
    assert.ok(r.ratio > 0.48 && r.ratio < 0.53, `ratio ${r.ratio}`);
    assert.ok(r.proto.graph.initializer.every((t) => t.dataType === 10));
    const casts = r.proto.graph.node.filter((n) => n.opType === 'Cast');
    assert.deepEqual(casts.map((n) => [n.input[0], n.output[0], Number(n.attribute[0].i)]), [['x', 'x_fp16', 10], ['y_fp16', 'y', 1]]);
    // A MatMul's bias Add belongs to its layer (model.layers()), so the layers are the three MatMuls.
    assert.deepEqual(r.report.layers.map((l) => [l.layer, l.format]), [['fc0', 'fp16'], ['fc1', 'fp16'], ['fc2', 'fp16']]);
    // float16 keeps 11 significant bits: about 6e-4 relative rounding, 70 dB.
    for (const l of r.report.layers.filter((x) => x.op === 'MatMul')) assert.ok(l.sqnrDb! > 68 && l.sqnrDb! < 80, `${l.layer} ${l.sqnrDb}`);
    const x = { x: randomInput([4, 64]) };
    const [h, f] = [await run(r.file, x), await run(mlp, x)];
    assert.ok(cosine(h, f) > 0.99999 && cosine(h, f) < 1, `cosine ${cosine(h, f)}`);
    const checked = onnxChecker(r.file);
    if (checked !== undefined) assert.equal(checked, '');
  });

  test('--keep-fp32 keeps an op type in float32 with Casts around it', async () => {
    const r = await convert(mlp, { keepFp32: 'Relu' }, 'mlp16-keep.onnx');
    const relus = r.proto.graph.node.filter((n) => n.opType === 'Relu');
    const producer = new Map(r.proto.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
    for (const n of relus) {
      const cast = producer.get(n.input[0])!;
      assert.equal(cast.opType, 'Cast');
      assert.equal(Number(cast.attribute[0].i), 1);
    }
    const x = { x: randomInput([4, 64]) };
    assert.ok(cosine(await run(r.file, x), await run(mlp, x)) > 0.99999);
  });

  test('Resize scales stay float32, as the spec types them', async () => {
    const g = graph('resize', [
      node('Conv', ['x', 'w'], ['c'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, 'conv'),
      node('Resize', ['c', '', 'scales'], ['y'], { mode: 'nearest' }, 'resize'),
    ], [valueInfo('x', 1, [1, 2, 5, 5])], [valueInfo('y', 1, [1, 4, 10, 10])], [
      floatTensor('w', [4, 2, 3, 3], Float32Array.from({ length: 72 }, (_, i) => Math.sin(i))),
      floatTensor('scales', [4], [1, 1, 2, 2]),
    ]);
    const file = writeBytes(dir, 'resize.onnx', encodeModel(model(g, 13)));
    const r = await convert(file, {}, 'resize16.onnx');
    assert.equal(r.proto.graph.initializer.find((t) => t.name === 'scales')!.dataType, 1);
    assert.equal(r.proto.graph.initializer.find((t) => t.name === 'w')!.dataType, 10);
    const x = { x: randomInput([1, 2, 5, 5]) };
    assert.ok(cosine(await run(r.file, x), await run(file, x)) > 0.9999);
  });
});

describe('fp16 on real models', { skip: noSharedData }, () => {
  test('mnist-8 keeps its accuracy on 2,000 images', async (t) => {
    const src = path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx');
    const data = path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz');
    const r = await convert(src, {}, 'mnist8-16.onnx');
    const [a, b] = [await evaluate({ model: src, data, limit: 2000, ep: 'cpu' }), await evaluate({ model: r.file, data, limit: 2000, ep: 'cpu' })];
    t.diagnostic(`mnist-8 fp16: ${(a.accuracy! * 100).toFixed(2)}% -> ${(b.accuracy! * 100).toFixed(2)}%, ${r.ratio.toFixed(3)}x size`);
    assert.ok(Math.abs(a.accuracy! - b.accuracy!) <= 0.001);
    assert.ok(r.ratio < 0.6);
  });

  test('super-resolution-10 (IR 4, initializers as inputs) on its input_0.pb: cosine >= 0.999, half size', async (t) => {
    const folder = path.join(sharedData!, 'models/onnx-super-resolution-10');
    const src = path.join(folder, 'super-resolution-10.onnx');
    const r = await convert(src, {}, 'sr16.onnx');
    const input = readTensorPb(path.join(folder, 'input_0.pb'))!;
    const feeds = { input: new ort.Tensor('float32', input.toFloat32(), input.shape) };
    const [h, f] = [await outputs(r.file, feeds), await outputs(src, feeds)];
    const c = cosine(h.output, f.output);
    t.diagnostic(`super-resolution-10 fp16: cosine ${c.toFixed(7)}, ${r.ratio.toFixed(3)}x size`);
    assert.ok(c >= 0.999, `cosine ${c}`);
    assert.ok(r.ratio > 0.45 && r.ratio < 0.55, `ratio ${r.ratio}`);
  });

  test('ultraface on random input: both outputs cosine >= 0.999', async (t) => {
    const src = path.join(sharedData!, 'models/onnx-ultraface-rfb-320/Ultraface_version-RFB-320.onnx');
    const r = await convert(src, {}, 'ultraface16.onnx');
    const feeds = { input: randomInput([1, 3, 240, 320], 9) };
    const [h, f] = [await outputs(r.file, feeds), await outputs(src, feeds)];
    const cs = ['scores', 'boxes'].map((k) => cosine(h[k], f[k]));
    t.diagnostic(`ultraface fp16: cosine scores ${cs[0].toFixed(7)}, boxes ${cs[1].toFixed(7)}, ${r.ratio.toFixed(3)}x size`);
    for (const c of cs) assert.ok(c >= 0.999, `cosine ${c}`);
    assert.ok(r.ratio < 0.6, `ratio ${r.ratio}`);
  });
});
