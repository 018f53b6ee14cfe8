// Knowledge distillation on MNIST: teacher mnist-8, student = mnist-8's width structured-pruned to at most 1/4 of its
// parameters (`derive:0.25`) and re-initialised with a fixed seed, so every run starts from the same random weights
// of the same architecture and differs only in its loss. Runs, with equal data, epochs, batches and steps:
//  - scratch: hard labels only (alpha 1);
//  - logits: alpha·CE + (1 − alpha)·T²·KL at temperature T;
//  - logits + features (MSE): the same plus the relative MSE between teacher and student ReLU feature maps (a
//    learned 1x1 projection matches the channel counts);
//  - logits + features (attention): the same with attention transfer (normalised channel-mean |F|^2 maps);
//  - prune-then-distill (Minitron-style): the derived student keeps the pruned teacher's weights, logits KD.
// Evaluated on the whole MNIST t10k set (10000 images). All runs share one teacher-output cache.
// Usage: node out/bench/distillMnist.js [--limit 10000] [--epochs 2] [--temperature 4] [--alpha 0.5] [--lr 0.003]
//   [--features T:S,...] [--feature-weight 1] [--ratio 0.25] [--seed 1]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runDistill } from '../src/core/passes/distill/run';
import type { DistillParams } from '../src/core/passes/distill/types';

const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
const teacher = path.join(shared, 'models', 'onnx-mnist-8', 'mnist.onnx');
const trainData = path.join(shared, 'mnist', 'train-images-idx3-ubyte.gz');
const test = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const limit = Number(arg('limit', '10000'));
const epochs = Number(arg('epochs', '2'));
const temperature = Number(arg('temperature', '4'));
const alpha = Number(arg('alpha', '0.5'));
const lr = Number(arg('lr', '0.003'));
const ratio = Number(arg('ratio', '0.25'));
const seed = Number(arg('seed', '1'));
const features = arg('features', 'ReLU114_Output_0:ReLU114_Output_0');
const featureWeight = Number(arg('feature-weight', '1'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-distill-bench-'));

async function main(): Promise<void> {
  // The first `limit` training images (a #:N range, so every epoch and every run sees the same subset).
  const common: DistillParams = { teacher, student: `derive:${ratio}`, data: `${trainData}#:${limit}`, evalData: test, epochs, batch: 64, lr, temperature, seed, studentInit: 'random', cacheDir: path.join(tmp, 'cache'), threads: 1 };
  const runs: Array<[string, DistillParams]> = [
    ['scratch (hard labels)', { ...common, alpha: 1 }],
    ['distilled: logits', { ...common, alpha }],
    ['distilled: logits + features (mse)', { ...common, alpha, features: features.split(','), featureLoss: 'mse', featureWeight }],
    ['distilled: logits + features (attention)', { ...common, alpha, features: features.split(','), featureLoss: 'attention', featureWeight }],
    ['prune-then-distill: logits', { ...common, alpha, studentInit: 'keep' }],
  ];
  const rows = [];
  for (const [name, p] of runs) {
    const t0 = performance.now();
    const r = await runDistill({ ...p, out: path.join(tmp, name.replace(/\W+/g, '-')) });
    const acc = r.metrics.after.accuracy!;
    rows.push({
      run: name,
      accuracy: acc,
      testErrors: Math.round((1 - acc) * r.metrics.after.samples),
      top1Agreement: r.metrics.top1Agreement,
      steps: r.distill.steps,
      params: r.params.after,
      teacherParams: r.params.before,
      cacheHits: r.distill.cache.hits,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
    });
    process.stderr.write(`${name}: ${(acc * 100).toFixed(2)}% (${rows.at(-1)!.testErrors} errors), ${rows.at(-1)!.seconds} s\n`);
  }
  const teacherAcc = (await runDistill({ ...runs[0][1], epochs: 1, limit: 64, out: path.join(tmp, 'teacher-probe') })).metrics.before;
  console.log(JSON.stringify({ teacher: { file: 'onnx-mnist-8/mnist.onnx', ...teacherAcc }, trainSamples: limit, epochs, batch: 64, lr, optimizer: 'adam', temperature, alpha, features, featureWeight, ratio, seed, testSamples: 10000, rows }, null, 2));
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
