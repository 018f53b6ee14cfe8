import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { replaceTensorData } from '../../src/core/formats/onnx/edit';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { writeOnnx } from '../../src/core/formats/onnx/write';
import { modelPrecision, openSession, syntheticFeeds, toleranceRatio } from '../../src/core/runtime/session';
import { toleranceOf } from '../../src/core/runtime/ep';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { identicalOutputs, runModel } from './helpers/ort';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

const dir = tempDir();

/** The sample model with some weights replaced, written to a file. */
function rebuilt(weights: Record<string, Float32Array>): string {
  const m = OnnxModel.open(sample);
  for (const [name, data] of Object.entries(weights)) replaceTensorData(m.graph, name, data);
  const file = path.join(dir, `rebuilt-${Object.keys(weights).join('-')}.onnx`);
  writeOnnx(m, file);
  m.close();
  return file;
}
const sample = path.join(dir, 'sample.onnx');
fs.writeFileSync(sample, buildSampleModel());

describe('EP self-check allowance by model precision', () => {
  test('fp32 models get the provider allowance; fp16 and int8 models at least their own, wider one', () => {
    assert.deepEqual(toleranceOf('webgpu'), { atol: 0.001, rtol: 0.001 });
    assert.deepEqual(toleranceOf('webgpu', 'fp16'), { atol: 0.01, rtol: 0.01 });
    assert.deepEqual(toleranceOf('webgpu', 'int8'), { atol: 0.05, rtol: 0.05 });
    // A wrong layout (DESIGN.md: max error 1.1 on outputs of about 1.7) stays far outside even the int8 allowance.
    const ratio = toleranceRatio({ y: new ort.Tensor('float32', Float32Array.of(0.6), [1]) }, { y: new ort.Tensor('float32', Float32Array.of(1.7), [1]) }, toleranceOf('webgpu', 'int8'));
    assert.ok(ratio > 7, `${ratio}`);
  });

  test('a model is int8 when it quantizes anything, fp16 when it stores float16 weights', () => {
    const m = (nodes: ReturnType<typeof node>[], inits: ReturnType<typeof floatTensor>[]) => OnnxModel.fromBytes(encodeModel(model(graph('g', nodes, [valueInfo('x', 1, [1])], [valueInfo('y', 1, [1])], inits), 13)), 'mem.onnx');
    assert.equal(modelPrecision(m([node('Relu', ['x'], ['y'])], [])), 'fp32');
    assert.equal(modelPrecision(m([node('Add', ['x', 'h'], ['y'])], [{ ...floatTensor('h', [1], [1]), dataType: 10, floatData: [], rawData: Uint8Array.of(0, 0x3c) }])), 'fp16');
    assert.equal(modelPrecision(m([node('QuantizeLinear', ['x', 's'], ['q']), node('DequantizeLinear', ['q', 's'], ['y'])], [floatTensor('s', [], [0.1])])), 'int8');
  });
});

describe('sessions', () => {
  test('weights fed as pure graph inputs give exactly the outputs of a model rebuilt with those weights (Gemm)', async () => {
    const model = OnnxModel.open(sample);
    const s = await openSession(model, { ep: 'cpu', weightInputs: ['fc1.weight', 'fc2.weight'] });
    try {
      assert.deepEqual(s.inputs.map((i) => i.name), ['input'], 'weights fed as inputs are not data inputs');
      const x = syntheticFeeds(s.inputs, 3, 5);
      // Perturb: zero every other element of fc1.weight and scale fc2.weight.
      const fc1 = Float32Array.from(s.weightFeeds['fc1.weight'].data as Float32Array, (v, i) => (i % 2 ? 0 : v));
      const fc2 = Float32Array.from(s.weightFeeds['fc2.weight'].data as Float32Array, (v) => v * 0.5);
      const fed = await s.session.run({ ...x, 'fc1.weight': new ort.Tensor('float32', fc1, [64, 400]), 'fc2.weight': new ort.Tensor('float32', fc2, [10, 64]) });
      const expected = await runModel(rebuilt({ 'fc1.weight': fc1, 'fc2.weight': fc2 }), x);
      assert.ok(identicalOutputs(fed, expected), 'fed weights must equal rebuilt weights exactly');
      // The original weights reproduce the original model, and the perturbation really changed something.
      assert.ok(identicalOutputs(await s.session.run({ ...x, ...s.weightFeeds }), await runModel(sample, x)));
      assert.ok(!identicalOutputs(fed, await runModel(sample, x)));
    } finally {
      await s.release();
      model.close();
    }
  });

  test('Conv weights fed as inputs match a rebuilt model to float32 rounding (ORT prepacks constant Conv weights)', async () => {
    const model = OnnxModel.open(sample);
    const s = await openSession(model, { ep: 'cpu', weightInputs: ['conv2.weight'] });
    try {
      const x = syntheticFeeds(s.inputs, 3, 5);
      const conv2 = Float32Array.from(s.weightFeeds['conv2.weight'].data as Float32Array, (v, i) => (i % 3 ? v : 0));
      const fed = await s.session.run({ ...x, 'conv2.weight': new ort.Tensor('float32', conv2, [16, 8, 5, 5]) });
      const expected = await runModel(rebuilt({ 'conv2.weight': conv2 }), x);
      // Measured: max difference 8.3e-7 on logits of about 1 (a different Conv kernel, not different weights).
      assert.ok(toleranceRatio(fed, expected, { atol: 1e-5, rtol: 1e-5 }) <= 1);
      assert.ok(toleranceRatio(fed, await runModel(sample, x), { atol: 1e-5, rtol: 1e-5 }) > 1, 'the perturbation must show');
    } finally {
      await s.release();
      model.close();
    }
  });

  test('extra outputs fetch intermediate values', async () => {
    const model = OnnxModel.open(sample);
    const s = await openSession(model, { ep: 'cpu', extraOutputs: ['relu1', 'flat'] });
    const out = await s.session.run(syntheticFeeds(s.inputs, 2));
    assert.deepEqual(out.relu1.dims, [2, 8, 28, 28]);
    assert.deepEqual(out.flat.dims, [2, 400]);
    assert.ok((out.relu1.data as Float32Array).every((v) => v >= 0));
    await s.release();
    model.close();
  });

  test('an already dynamic batch is used as is', async () => {
    const model = OnnxModel.open(sample);
    const s = await openSession(model, { ep: 'cpu', dynamicBatch: true });
    assert.equal(s.batched, true);
    assert.deepEqual(s.warnings, []);
    await s.release();
    model.close();
  });

  test('mnist-8 (batch fixed to 1, Reshape to [1,256]) cannot take batches, and says so', { skip: noSharedData }, async () => {
    const model = OnnxModel.open(path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx'));
    const s = await openSession(model, { ep: 'cpu', dynamicBatch: true });
    assert.equal(s.batched, false);
    assert.match(s.warnings.join('\n'), /cannot be made dynamic|different results/);
    await s.release();
    model.close();
  });

  test('a model exported with batch 1 and no batch-bound reshape gets a dynamic batch that matches single runs', async () => {
    const file = path.join(dir, 'fixed-batch.onnx');
    const w = floatTensor('w', [4, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    fs.writeFileSync(file, encodeModel(model(graph('g', [node('MatMul', ['x', 'w'], ['h']), node('Relu', ['h'], ['y'])], [valueInfo('x', 1, [1, 4])], [valueInfo('y', 1, [1, 3])], [w]), 13)));
    const m = OnnxModel.open(file);
    const s = await openSession(m, { ep: 'cpu', dynamicBatch: true });
    assert.equal(s.batched, true, s.warnings.join('; '));
    const out = await s.session.run(syntheticFeeds(s.inputs, 4));
    assert.deepEqual(out.y.dims, [4, 3]);
    await s.release();
    m.close();
  });

  test('asking for CUDA without its libraries falls back to CPU with a visible warning', async () => {
    const model = OnnxModel.open(sample);
    const s = await openSession(model, { ep: 'cuda' });
    assert.equal(s.ep, 'cpu');
    assert.match(s.warnings.join('\n'), /cuda is not available here/);
    await s.release();
    model.close();
  });

  test('the tolerance check measures element-wise violations against the allowance', () => {
    const t = (v: number[]) => new ort.Tensor('float32', Float32Array.from(v), [v.length]);
    const tol = toleranceOf('webgpu');
    assert.ok(tol.atol > 0 && tol.rtol > 0, 'tolerances come from epTolerances.json');
    assert.equal(toleranceRatio({ y: t([1, 2]) }, { y: t([1, 2]) }, tol), 0);
    assert.ok(toleranceRatio({ y: t([1, 2.0005]) }, { y: t([1, 2]) }, tol) <= 1);
    // The WebGPU NHWC bug of DESIGN.md: errors of about 1 on outputs of about 1.7.
    assert.ok(toleranceRatio({ y: t([0.6, 1.7]) }, { y: t([1.7, 0.6]) }, tol) > 100);
    assert.equal(toleranceRatio({ y: t([1]) }, { y: t([1, 2]) }, tol), Infinity, 'a shape mismatch never passes');
  });
});

/** WebGPU needs a Vulkan adapter: Mesa lavapipe from bookworm-backports (scripts/installVulkan.sh) in CI. */
const lavapipe = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'mesa-vulkan-drivers'], { encoding: 'utf8' }).stdout;
const haveVulkan = /^(2[5-9]|[3-9]\d)\./.test(lavapipe) ? false : 'skipped: Mesa 25+ (mesa-vulkan-drivers from bookworm-backports) is not installed';

test('WebGPU EP smoke test (NCHW) on software Vulkan: passes the self-check against CPU', { skip: haveVulkan }, async () => {
  const model = OnnxModel.open(sample);
  const s = await openSession(model, { ep: 'webgpu' });
  try {
    assert.equal(s.ep, 'webgpu', s.warnings.join('; '));
    const x = syntheticFeeds(s.inputs, 2, 9);
    const gpu = await s.session.run(x);
    const cpu = await runModel(sample, x);
    assert.ok(toleranceRatio(gpu, cpu, toleranceOf('webgpu')) <= 1);
  } finally {
    await s.release();
    model.close();
  }
});
