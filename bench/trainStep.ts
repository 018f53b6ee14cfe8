// Samples/s of a LeNet-5 training step (forward + loss + gradients on ORT CPU, then an SGD update in JS) at batch 64,
// against a forward pass of the same network, and against the same step in @tensorflow/tfjs-core (dev-only comparison:
// tf.variableGrads + SGD, wasm backend when it has every gradient kernel, else cpu), in the same run.
// Usage: node out/bench/trainStep.js [--threads N] [--steps N] [--tfjs-steps N] [--ep webgpu]
// With --ep webgpu (a GPU machine), the step also runs on the WebGPU EP: its first step's loss and gradients are
// compared with the CPU's, then it is timed like the CPU step, and tfjs is skipped.
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { initTfjs } from '../src/core/runtime/tfjs';
import { normal, seededRandom } from '../src/core/random';
import { buildSampleModel } from '../src/core/samples/sampleModel';
import { buildMlp } from '../src/core/samples/mlp';
import { buildTrainingGraph } from '../src/core/train/grad';
import { createOptimizer } from '../src/core/train/optim';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const batch = 64;
const steps = arg('steps', 300);
const ep = (() => {
  const i = process.argv.indexOf('--ep');
  return i > 0 ? process.argv[i + 1] : 'cpu';
})();

let ortOneThread = 0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

(async () => {
  const bytes = buildSampleModel();
  const model = OnnxModel.fromBytes(bytes, 'lenet.onnx');
  const tg = buildTrainingGraph(model.proto, { loss: 'softmaxCrossEntropy' });
  const randn = normal(seededRandom(3));
  const x = new ort.Tensor('float32', Float32Array.from({ length: batch * 784 }, randn), [batch, 1, 28, 28]);
  const labels = new ort.Tensor('int64', BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)), [batch]);
  const weights = tg.initial.map((t) => Float32Array.from(model.weights().get(t.name)!.ref.toFloat32()));
  const shapes = tg.initial.map((t) => t.dims.map(Number));
  const params = weights.reduce((a, w) => a + w.length, 0);
  for (const threads of [1, ...(arg('threads', 0) > 1 ? [arg('threads', 0)] : [])]) {
    const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1 };
    const session = await ort.InferenceSession.create(toBinary(ModelProtoSchema, tg.proto), options);
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 });
    const feeds = () => ({ [tg.dataInputs[0]]: x, [tg.label]: labels, ...Object.fromEntries(tg.weights.map((n, k) => [n, new ort.Tensor('float32', weights[k], shapes[k])])) });
    const times: number[] = [];
    let optMs = 0;
    for (let s = 0; s < steps + 20; s++) {
      const t0 = performance.now();
      const out = await session.run(feeds());
      const t1 = performance.now();
      opt.step(weights, tg.gradients.map((g) => out[g].data as Float32Array), 0.01);
      const t2 = performance.now();
      if (s >= 20) {
        times.push(t2 - t0);
        optMs += t2 - t1;
      }
    }
    await session.release();
    // Forward only, same batch: the inference model with a symbolic batch.
    const fwd = await ort.InferenceSession.create(bytes, options);
    const fwdTimes: number[] = [];
    const fx = { [tg.dataInputs[0]]: x };
    let forwardOk = true;
    try {
      for (let s = 0; s < steps + 20; s++) {
        const t0 = performance.now();
        await fwd.run(fx);
        if (s >= 20) fwdTimes.push(performance.now() - t0);
      }
    } catch {
      forwardOk = false;
    }
    await fwd.release();
    const step = median(times);
    if (threads === 1) ortOneThread = step;
    console.log(
      `LeNet-style (${params} params) training step, batch ${batch}, ORT CPU, intraOpNumThreads ${threads}: median ${step.toFixed(2)} ms ` +
        `(${Math.round((batch * 1000) / step)} samples/s; optimizer ${(optMs / steps).toFixed(2)} ms/step)` +
        (forwardOk ? `; forward ${median(fwdTimes).toFixed(2)} ms, step/forward ${(step / median(fwdTimes)).toFixed(1)}x` : ''),
    );
  }
  if (ep === 'webgpu') {
    // The LeNet step first; then an MLP (no MaxPool), since WebGPU's MaxPool may lack the Indices output.
    await gpuStep(model, x, 'LeNet-style').catch((err: Error) => console.log(`LeNet-style on WebGPU: ${err.message.split('\n')[0]}`));
    const mlp = OnnxModel.fromBytes(buildMlp({ sizes: [784, 512, 256, 10], seed: 2 }), 'mlp.onnx');
    const xm = new ort.Tensor('float32', Float32Array.from({ length: batch * 784 }, randn), [batch, 784]);
    await gpuStep(mlp, xm, 'MLP 784-512-256-10').catch((err: Error) => console.log(`MLP on WebGPU: ${err.message.split('\n')[0]}`));
    return;
  }
  const tfjsMs = await tfjsStep(model, x, labels);
  console.log(`ORT CPU (1 thread) against tfjs: ${(tfjsMs / ortOneThread).toFixed(0)}x faster per step`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * One model's training step on the WebGPU EP against the CPU EP (1 thread): the first step's loss and the lowest
 * gradient cosine over the weights, then median step times on both, in this process.
 */
async function gpuStep(model: OnnxModel, x: ort.Tensor, name: string): Promise<void> {
  const tg = buildTrainingGraph(model.proto, { loss: 'softmaxCrossEntropy' });
  const graph = toBinary(ModelProtoSchema, tg.proto);
  const labels = new ort.Tensor('int64', BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)), [batch]);
  const shapes = tg.initial.map((t) => t.dims.map(Number));
  const w0 = tg.initial.map((t) => Float32Array.from(model.weights().get(t.name)!.ref.toFloat32()));
  const feedsOf = (w: Float32Array[]) => ({ [tg.dataInputs[0]]: x, [tg.label]: labels, ...Object.fromEntries(tg.weights.map((n, k) => [n, new ort.Tensor('float32', w[k], shapes[k])])) });
  const cpu = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1 });
  const gpu = await ort.InferenceSession.create(graph, { executionProviders: [{ name: 'webgpu', preferredLayout: 'NCHW' } as ort.InferenceSession.ExecutionProviderConfig] });
  try {
    const [a, b] = [await cpu.run(feedsOf(w0)), await gpu.run(feedsOf(w0))];
    const cos = (p: Float32Array, q: Float32Array) => {
      let [d, n1, n2] = [0, 0, 0];
      for (let i = 0; i < p.length; i++) [d, n1, n2] = [d + p[i] * q[i], n1 + p[i] * p[i], n2 + q[i] * q[i]];
      return d / Math.sqrt(n1 * n2);
    };
    const worst = Math.min(...tg.gradients.map((g) => cos(a[g].data as Float32Array, b[g].data as Float32Array)));
    console.log(`${name} on WebGPU against CPU, one step: loss ${(b[tg.loss].data as Float32Array)[0].toFixed(6)} vs ${(a[tg.loss].data as Float32Array)[0].toFixed(6)}; lowest gradient cosine over ${tg.gradients.length} weights ${worst.toFixed(6)}`);
    const time = async (session: ort.InferenceSession): Promise<number> => {
      const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 });
      const w = w0.map((v) => v.slice());
      const times: number[] = [];
      for (let s = 0; s < steps + 20; s++) {
        const t0 = performance.now();
        const out = await session.run(feedsOf(w));
        opt.step(w, tg.gradients.map((g) => out[g].data as Float32Array), 0.01);
        if (s >= 20) times.push(performance.now() - t0);
      }
      return median(times);
    };
    const [tc, tgpu] = [await time(cpu), await time(gpu)];
    console.log(`${name} training step, batch ${batch}: CPU (1 thread) ${tc.toFixed(2)} ms (${Math.round((batch * 1000) / tc)} samples/s), WebGPU ${tgpu.toFixed(2)} ms (${Math.round((batch * 1000) / tgpu)} samples/s), WebGPU/CPU ${(tgpu / tc).toFixed(2)}x`);
  } finally {
    await cpu.release();
    await gpu.release();
  }
}

/** The same LeNet-style step in tfjs-core (NHWC): forward, softmax cross-entropy, gradients, SGD update. */
async function tfjsStep(model: OnnxModel, x: ort.Tensor, labels: ort.Tensor): Promise<number> {
  const w = (name: string) => model.weights().get(name)!.ref.toFloat32();
  const init = await initTfjs();
  // initTfjs sets IS_TEST to quiet a hint; it also turns on per-kernel leak checks, which training trips.
  tf.env().set('IS_TEST', false);
  const run = async (backend: string): Promise<number[]> => {
    await tf.setBackend(backend);
    await tf.ready();
    // OIHW -> HWIO for conv kernels, [out, in] -> [in, out] for dense layers.
    const v = {
      c1: tf.variable(tf.transpose(tf.tensor4d(w('conv1.weight'), [8, 1, 5, 5]), [2, 3, 1, 0])),
      b1: tf.variable(tf.tensor1d(w('conv1.bias'))),
      c2: tf.variable(tf.transpose(tf.tensor4d(w('conv2.weight'), [16, 8, 5, 5]), [2, 3, 1, 0])),
      b2: tf.variable(tf.tensor1d(w('conv2.bias'))),
      f1: tf.variable(tf.transpose(tf.tensor2d(w('fc1.weight'), [64, 400]))),
      g1: tf.variable(tf.tensor1d(w('fc1.bias'))),
      f2: tf.variable(tf.transpose(tf.tensor2d(w('fc2.weight'), [10, 64]))),
      g2: tf.variable(tf.tensor1d(w('fc2.bias'))),
    };
    const xs = tf.transpose(tf.tensor4d(x.data as Float32Array, [batch, 1, 28, 28]), [0, 2, 3, 1]);
    const ys = tf.oneHot(tf.tensor1d(Array.from(labels.data as BigInt64Array, Number), 'int32'), 10);
    const opt = tf.train.sgd(0.01);
    const loss = () =>
      tf.tidy(() => {
        let h = tf.relu(tf.add(tf.conv2d(xs, v.c1 as tf.Tensor4D, 1, [[0, 0], [2, 2], [2, 2], [0, 0]]), v.b1)) as tf.Tensor4D;
        h = tf.maxPool(h, 2, 2, 'valid');
        h = tf.relu(tf.add(tf.conv2d(h, v.c2 as tf.Tensor4D, 1, 'valid'), v.b2)) as tf.Tensor4D;
        h = tf.maxPool(h, 2, 2, 'valid');
        // NHWC flattens in another order than ONNX's NCHW; the cost is the same.
        const f = tf.reshape(h, [batch, 400]);
        const z = tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(f, v.f1), v.g1)), v.f2), v.g2);
        return tf.neg(tf.mean(tf.sum(tf.mul(ys, tf.logSoftmax(z)), 1))) as tf.Scalar;
      });
    const times: number[] = [];
    const n = arg('tfjs-steps', 5);
    for (let s = 0; s < n + 2; s++) {
      const t0 = performance.now();
      opt.minimize(loss);
      await tf.ready();
      if (s >= 2) times.push(performance.now() - t0);
    }
    tf.dispose([...Object.values(v), xs, ys]);
    return times;
  };
  let backend: string = init.backend;
  let times: number[];
  try {
    times = await run(backend);
  } catch (err) {
    console.log(`tfjs ${backend}: ${(err as Error).message.split('\n')[0]}; falling back to the cpu backend`);
    if (!tf.findBackendFactory('cpu')) tf.registerBackend('cpu', () => new MathBackendCPU(), 1);
    backend = 'cpu';
    times = await run(backend);
  }
  const step = median(times);
  console.log(`same step in tfjs-core ${tf.version_core} on ${backend}: median ${step.toFixed(1)} ms (${Math.round((batch * 1000) / step)} samples/s, ${times.length} steps)`);
  return step;
}
