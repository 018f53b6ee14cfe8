// Training end to end on MNIST: (a) the untrained MLP, 1 epoch, test accuracy; (b) mnist-8 pruned to 90%
// unstructured, then fine-tuned, accuracy before/after against dense and the sparsity kept.
// Usage: node out/bench/trainMnist.js [mlp|mnist8|all] [--epochs E] [--lr LR] [--optimizer sgd|adam]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { runFinetune } from '../src/core/train/finetune';
import { runPrune } from '../src/core/passes/run';
import { evaluate } from '../src/core/runtime/evaluate';

const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
const mnist = path.join(shared, 'mnist');
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const which = process.argv[2] ?? 'all';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-train-bench-'));

/** A manifest feeding MNIST scaled to [0, 1], as the MLP is trained here. */
function scaledManifest(split: 'train' | 't10k', input: string): string {
  const file = path.join(tmp, `${split}.dataset.json`);
  fs.writeFileSync(file, JSON.stringify({ inputs: { [input]: { idx: path.join(mnist, `${split}-images-idx3-ubyte.gz`), scale: 1 / 255, mean: [0.1307], std: [0.3081] } }, labels: { idx: path.join(mnist, `${split}-labels-idx1-ubyte.gz`) } }));
  return file;
}

async function mlp(): Promise<void> {
  const model = path.join(shared, 'models', 'onnx-mnist-mlp-untrained', 'mnist_original.onnx');
  const t0 = performance.now();
  const r = await runFinetune({
    model,
    data: scaledManifest('train', 'input1'),
    evalData: scaledManifest('t10k', 'input1'),
    epochs: Number(arg('epochs', '1')),
    lr: Number(arg('lr', '0.05')),
    batch: Number(arg('batch', '64')),
    optimizer: arg('optimizer', 'sgd') as 'sgd',
    schedule: arg('schedule', 'cosine') as 'cosine',
    seed: 1,
    out: path.join(tmp, 'mlp'),
  });
  console.log(`MLP 1 epoch: test accuracy ${(r.metrics.before.accuracy! * 100).toFixed(2)}% -> ${(r.metrics.after.accuracy! * 100).toFixed(2)}%, ${r.training.samplesPerSec} samples/s, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function mnist8(): Promise<void> {
  const model = path.join(shared, 'models', 'onnx-mnist-8', 'mnist.onnx');
  const test = path.join(mnist, 't10k-images-idx3-ubyte.gz');
  const dense = await evaluate({ model, data: test });
  const pruned = process.argv.includes('--dense') ? { output: model, layers: [] as Array<{ weight: string }> } : await runPrune({ model, sparsity: 0.9, scope: arg('scope', 'layer') as 'layer', data: `${test}#:1000`, out: path.join(tmp, 'pruned') });
  const prunedAcc = (await evaluate({ model: pruned.output, data: test })).accuracy!;
  const t0 = performance.now();
  const r = await runFinetune({
    model: pruned.output,
    data: path.join(mnist, 'train-images-idx3-ubyte.gz'),
    evalData: test,
    epochs: Number(arg('epochs', '1')),
    lr: Number(arg('lr', '0.0005')),
    batch: Number(arg('batch', '64')),
    optimizer: arg('optimizer', 'adam') as 'adam',
    schedule: arg('schedule', 'cosine') as 'cosine',
    seed: 1,
    out: path.join(tmp, 'ft'),
  });
  const after = r.metrics.after.accuracy!;
  const m = OnnxModel.open(r.output);
  const sparsity = pruned.layers.map((l) => {
    const w = m.weights().get(l.weight)!.ref.toFloat32();
    return w.reduce((a, x) => a + (x === 0 ? 1 : 0), 0) / w.length;
  });
  m.close();
  console.log(
    `mnist-8: dense ${(dense.accuracy! * 100).toFixed(2)}%, pruned 90% ${(prunedAcc * 100).toFixed(2)}%, fine-tuned ${(after * 100).toFixed(2)}% ` +
      `(drop against dense ${((dense.accuracy! - after) * 100).toFixed(2)} pt); pruned-layer sparsity after: ${sparsity.map((s) => (s * 100).toFixed(2) + '%').join(', ')}; overall ${(r.sparsity * 100).toFixed(2)}%; ${r.training.samplesPerSec} samples/s, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}

(async () => {
  if (which === 'mlp' || which === 'all') await mlp();
  if (which === 'mnist8' || which === 'all') await mnist8();
  fs.rmSync(tmp, { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
