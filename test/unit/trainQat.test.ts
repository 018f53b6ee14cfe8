// Quantization-aware training: the straight-through gradient of QuantizeLinear→DequantizeLinear (fake-quant) against
// its definition — the output gradient where the input lies inside [scale·(qmin−zp), scale·(qmax−zp)], zero outside —
// computed in JS; and weight fake-quant inserted into mnist-8 builds a training graph that runs.
// (A finite-difference check means nothing here: fake-quant is a step function, its true derivative is zero almost
// everywhere; the STE is a chosen surrogate, so it is tested against its definition.)
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { describe, test } from 'node:test';
import { ModelProtoSchema, TensorProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { normal, seededRandom } from '../../src/core/random';
import { buildTrainingGraph, defaultTrainable, gradRules } from '../../src/core/train/grad';
import { insertWeightFakeQuant } from '../../src/core/train/qat';
import { runFinetune } from '../../src/core/train/finetune';
import * as os from 'node:os';

const sharedData = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'data');
const mnist8 = path.join(sharedData, 'models/onnx-mnist-8/mnist.onnx');
const trainImages = path.join(sharedData, 'mnist/train-images-idx3-ubyte.gz');
const testImages = path.join(sharedData, 'mnist/t10k-images-idx3-ubyte.gz');

function floatTensor(name: string, dims: number[], values: ArrayLike<number>) {
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 1, rawData: new Uint8Array(Float32Array.from(values).buffer) });
}
function intTensor(name: string, dims: number[], values: number[], dataType: 2 | 3) {
  const arr = dataType === 3 ? Int8Array.from(values) : Uint8Array.from(values);
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType, rawData: new Uint8Array(arr.buffer) });
}

/** y = DQ(Q(W)) per channel along `axis`, MSE loss against a label; returns ORT's gradient and the JS reference. */
async function steCase(opts: { rows: number; cols: number; axis: number; scale: number[]; zp: number[]; zpType: 2 | 3; seed: number }) {
  const { rows, cols, axis } = opts;
  const randn = normal(seededRandom(opts.seed));
  const w = Float32Array.from({ length: rows * cols }, () => randn());
  const label = Float32Array.from({ length: rows * cols }, () => randn());
  const perChannel = opts.scale.length > 1;
  const sDims = perChannel ? [opts.scale.length] : [];
  const g = graph(
    'g',
    [node('QuantizeLinear', ['W', 's', 'z'], ['q'], perChannel ? { axis } : {}), node('DequantizeLinear', ['q', 's', 'z'], ['Y'], perChannel ? { axis } : {})],
    [],
    [valueInfo('Y', 1, [rows, cols])],
    [floatTensor('W', [rows, cols], w), floatTensor('s', sDims, opts.scale), intTensor('z', sDims, opts.zp, opts.zpType)],
  );
  const tg = buildTrainingGraph(model(g, 17), { loss: 'mse', trainable: ['W'] });
  const s = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), { intraOpNumThreads: 1 });
  const out = await s.run({ W: new ort.Tensor('float32', w, [rows, cols]), [tg.label]: new ort.Tensor('float32', label, [rows, cols]) });
  await s.release();
  const got = out[tg.gradients[0]].data as Float32Array;
  const y = out.Y.data as Float32Array;
  const [qmin, qmax] = opts.zpType === 3 ? [-128, 127] : [0, 255];
  const want = new Float64Array(w.length);
  let outside = 0;
  for (let i = 0; i < w.length; i++) {
    const ch = perChannel ? (axis === 0 ? Math.floor(i / cols) : i % cols) : 0;
    const lo = opts.scale[ch] * (qmin - opts.zp[ch]);
    const hi = opts.scale[ch] * (qmax - opts.zp[ch]);
    const inside = w[i] >= Math.fround(lo) && w[i] <= Math.fround(hi);
    if (!inside) outside++;
    want[i] = inside ? (2 * (y[i] - label[i])) / w.length : 0;
  }
  return { got, want, outside, inside: w.length - outside };
}

describe('QAT', () => {
  test('QuantizeLinear and DequantizeLinear have rules', () => {
    assert.ok(gradRules.QuantizeLinear);
    assert.ok(gradRules.DequantizeLinear);
  });

  for (const c of [
    { name: 'per-channel int8, axis 0', rows: 6, cols: 50, axis: 0, scale: [0.004, 0.008, 0.01, 0.02, 0.05, 0.002], zp: [0, 0, 0, 0, 0, 0], zpType: 3 as const },
    { name: 'per-channel int8, axis 1, nonzero zero points', rows: 40, cols: 4, axis: 1, scale: [0.01, 0.006, 0.02, 0.003], zp: [10, -20, 0, 100], zpType: 3 as const },
    { name: 'per-tensor uint8 with a zero point', rows: 20, cols: 20, axis: 1, scale: [0.008], zp: [100], zpType: 2 as const },
  ]) {
    test(`straight-through gradient with the clip mask: ${c.name}`, async () => {
      const r = await steCase({ ...c, seed: 3 });
      assert.ok(r.outside > 10 && r.inside > 10, `the case clips some inputs and passes others (${r.outside} outside, ${r.inside} inside)`);
      for (let i = 0; i < r.want.length; i++) assert.ok(Math.abs(r.got[i] - r.want[i]) <= 1e-7 + 1e-5 * Math.abs(r.want[i]), `element ${i}: got ${r.got[i]}, want ${r.want[i]}`);
    });
  }

  test('weight fake-quant on mnist-8 (per-step per-channel scales) builds a training graph whose step runs', { skip: !fs.existsSync(mnist8) && 'no mnist-8' }, async () => {
    const m = OnnxModel.open(mnist8);
    try {
      const trainable = defaultTrainable(m.graph);
      for (const bits of [8, 4] as const) {
        const fq = insertWeightFakeQuant(m.proto, { bits });
        assert.equal(fq.layers.length, 3, 'two Convs and the MatMul');
        assert.equal(fq.proto.graph!.node.filter((n) => n.opType === 'QuantizeLinear').length, 3);
        const tg = buildTrainingGraph(fq.proto, { loss: 'softmaxCrossEntropy', trainable });
        assert.deepEqual(tg.weights, trainable);
        const s = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), { intraOpNumThreads: 1, logSeverityLevel: 3 });
        const batch = 4;
        const randn = normal(seededRandom(bits));
        const feeds: Record<string, ort.Tensor> = {
          [tg.dataInputs[0]]: new ort.Tensor('float32', Float32Array.from({ length: batch * 784 }, () => Math.abs(randn()) * 100), [batch, 1, 28, 28]),
          [tg.label]: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n]), [batch]),
        };
        tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', Float32Array.from(m.weights().get(name)!.ref.toFloat32()), tg.initial[k].dims.map(Number))));
        const out = await s.run(feeds);
        await s.release();
        assert.ok(Number.isFinite(Number(out[tg.loss].data[0])));
        for (const gname of tg.gradients) {
          const gr = out[gname].data as Float32Array;
          assert.ok(gr.every(Number.isFinite) && gr.some((v) => v !== 0), `${gname} is finite and not all zero`);
        }
        // The forward pass sees weights on the grid: the fake-quantized kernel has at most 2·qmax+1 levels per channel.
        const qmax = bits === 8 ? 127 : 7;
        assert.ok(fq.layers.every((l) => l.qmax === qmax));
      }
    } finally {
      m.close();
    }
  });

  test('finetune --qat 8 exports a static U8S8 QDQ model; --qat 4 a 4-bit weight model, each with its accuracy', { skip: !fs.existsSync(mnist8) && 'no mnist-8' }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-qat-'));
    try {
      const model = path.join(dir, 'mnist.onnx');
      fs.copyFileSync(mnist8, model);
      for (const bits of [8, 4] as const) {
        const r = await runFinetune({ model, data: trainImages, evalData: `${testImages}#:500`, limit: 1000, epochs: 1, lr: 0.0002, seed: 1, threads: 1, ep: 'cpu', qat: bits, out: path.join(dir, `qat${bits}`) });
        const q = r.qat!;
        assert.equal(q.bits, bits);
        assert.ok(fs.existsSync(q.output) && q.output !== r.output);
        assert.ok(q.accuracy > 0.95, `QAT ${bits}-bit accuracy ${q.accuracy}`);
        const m = OnnxModel.open(q.output);
        const ops = m.graph.node.map((n) => n.opType);
        m.close();
        if (bits === 8) {
          // Real QDQ: int8 weight initializers and uint8 activations around the Convs and the MatMul.
          assert.ok(ops.filter((o) => o === 'DequantizeLinear').length >= 6 && ops.includes('QuantizeLinear'), ops.join(','));
        } else {
          assert.equal(ops.filter((o) => o === 'QuantizeLinear').length, 3, 'one 4-bit weight fake-quant per Conv and MatMul');
        }
        const report = JSON.parse(fs.readFileSync(r.report, 'utf8'));
        assert.equal(report.qat.bits, bits);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  test('activation fake-quant (uint8, calibrated) and --qat-exclude: the graph, its gradients, and the finetune export', { skip: !fs.existsSync(mnist8) && 'no mnist-8' }, async () => {
    const m = OnnxModel.open(mnist8);
    try {
      const acts = { Input3: { scale: 1, zeroPoint: 0 }, Pooling66_Output_0: { scale: 0.05, zeroPoint: 0 } };
      const fq = insertWeightFakeQuant(m.proto, { bits: 8, exclude: ['Times212'], activations: acts });
      assert.deepEqual(fq.layers.map((l) => l.node), ['Convolution28', 'Convolution110']);
      const qs = fq.proto.graph!.node.filter((n) => n.opType === 'QuantizeLinear');
      assert.equal(qs.length, 4, 'two weights and two activations');
      const conv2 = fq.proto.graph!.node.find((n) => n.name === 'Convolution110')!;
      assert.match(conv2.input[0], /Pooling66_Output_0_whittle_afq/);
      assert.equal(fq.proto.graph!.node.find((n) => n.name === 'Times212')!.input[1], 'Parameter193_reshape1', 'the excluded MatMul reads its float weight');
      const trainable = defaultTrainable(m.graph);
      const tg = buildTrainingGraph(fq.proto, { loss: 'softmaxCrossEntropy', trainable });
      const s = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), { intraOpNumThreads: 1, logSeverityLevel: 3 });
      const randn = normal(seededRandom(3));
      const feeds: Record<string, ort.Tensor> = {
        [tg.dataInputs[0]]: new ort.Tensor('float32', Float32Array.from({ length: 4 * 784 }, () => Math.min(255, Math.abs(randn()) * 100)), [4, 1, 28, 28]),
        [tg.label]: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n]), [4]),
      };
      tg.weights.forEach((name, k) => (feeds[name] = new ort.Tensor('float32', Float32Array.from(m.weights().get(name)!.ref.toFloat32()), tg.initial[k].dims.map(Number))));
      const out = await s.run(feeds);
      await s.release();
      // Conv1's activations clip at 255·0.05 = 12.75 after the first pool: its weights still get a gradient through the kept values.
      for (const gname of tg.gradients) assert.ok((out[gname].data as Float32Array).every(Number.isFinite));
      assert.ok((out[tg.gradients[tg.weights.indexOf('Parameter5')]].data as Float32Array).some((v) => v !== 0));
    } finally {
      m.close();
    }

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-qat-act-'));
    try {
      const model = path.join(dir, 'mnist.onnx');
      fs.copyFileSync(mnist8, model);
      const r = await runFinetune({ model, data: trainImages, evalData: `${testImages}#:500`, limit: 1000, epochs: 1, lr: 0.0002, seed: 1, threads: 1, ep: 'cpu', qat: 8, qatActivations: true, qatExclude: ['Times212'], out: path.join(dir, 'qa') });
      assert.ok(r.qat!.accuracy > 0.95, `QAT int8 with activations: ${r.qat!.accuracy}`);
      const q = OnnxModel.open(r.qat!.output);
      const producer = new Map(q.graph.node.flatMap((n) => n.output.map((o) => [o, n.opType] as const)));
      const convs = q.graph.node.filter((n) => n.opType === 'Conv');
      // The static pass folds MatMul+Add into a Gemm that keeps the name.
      const matmul = q.graph.node.find((n) => n.name === 'Times212')!;
      q.close();
      assert.ok(convs.every((n) => producer.get(n.input[0]) === 'DequantizeLinear' && producer.get(n.input[1]) === 'DequantizeLinear'), 'both Convs run on QDQ');
      assert.notEqual(producer.get(matmul.input[1]), 'DequantizeLinear', 'the excluded MatMul stays float');
      const recipe = JSON.parse(fs.readFileSync(r.recipe, 'utf8'));
      assert.deepEqual(recipe.passes[0].qatExclude, ['Times212']);
      assert.equal(recipe.passes[0].qatActivations, true);
      await assert.rejects(runFinetune({ model, data: trainImages, qat: 8, qatExclude: ['NoSuchLayer'], out: path.join(dir, 'bad') }), /NoSuchLayer/);
      assert.ok(!fs.existsSync(path.join(dir, 'bad')));
      await assert.rejects(runFinetune({ model, data: trainImages, qatActivations: true }), /needs --qat/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
