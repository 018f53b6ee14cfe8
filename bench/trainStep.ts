// Samples/s of a LeNet-5 training step (forward + loss + gradients on ORT CPU, then an SGD update in JS) at batch 64,
// against a forward pass of the same network. The tfjs comparison of the issue is not in this first cut.
// Usage: node out/bench/trainStep.js [--threads N] [--steps N]
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { normal, seededRandom } from '../src/core/random';
import { buildSampleModel } from '../src/core/samples/sampleModel';
import { buildTrainingGraph } from '../src/core/train/grad';
import { createOptimizer } from '../src/core/train/optim';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const batch = 64;
const steps = arg('steps', 300);

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
  for (const threads of [1, arg('threads', 0) || undefined]) {
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
    console.log(
      `LeNet-5 (${params} params) training step, batch ${batch}, ORT CPU, intraOpNumThreads ${threads ?? 'default'}: median ${step.toFixed(2)} ms ` +
        `(${Math.round((batch * 1000) / step)} samples/s; optimizer ${(optMs / steps).toFixed(2)} ms/step)` +
        (forwardOk ? `; forward ${median(fwdTimes).toFixed(2)} ms, step/forward ${(step / median(fwdTimes)).toFixed(1)}x` : ''),
    );
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
