// Recovery after pruning: mnist-8 at 90% unstructured sparsity, dense vs pruned vs pruned + `whittle finetune`, all
// scored on the full MNIST test set (10k) in one process. Recipes:
//   oneshot-layer   runPrune 90% per layer, then finetune (masks held)
//   oneshot-global  runPrune 90% global magnitude, then finetune
//   gradual-global  finetune the dense model with --prune 0.9 (cubic schedule to 90% at --prune-end, then fine-tune at it)
//   gradual-layer   the same with --prune-scope layer
//   gradual-lamp    the same with --prune-scope lamp (LAMP scores, one threshold)
//   dense-ft        finetune the dense model (the same loop, no pruning): what training alone does
// A recipe ending in ':unscaled' trains with --logit-scale 1 (plain cross-entropy on the raw logits).
// --model mlp runs the same on the 784-500-10 MLP (../shared/data/models/onnx-mnist-mlp-untrained, 397k parameters,
// the size class of Deep Compression's LeNet-300-100): it is first trained dense for --dense-epochs (default 2) with
// the same settings, and that trained model is the dense reference.
// Usage: node out/bench/finetuneRecovery.js [--recipes a,b] [--epochs 2] [--lr 0.005] [--optimizer adam]
//        [--schedule cosine] [--batch 64] [--prune-end 0.5] [--limit N] [--seed 1] [--threads T] [--eval-every STEPS] [--logit-scale auto|X] [--verbose]
// --eval-every N scores the test set every N steps as well (and keeps the best: for curves only, not for the table).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { runPrune } from '../src/core/passes/run';
import { evaluate } from '../src/core/runtime/evaluate';
import { runFinetune, type FinetuneParams } from '../src/core/train/finetune';

const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
const mnist = path.join(shared, 'mnist');
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-recovery-'));
const which = arg('model', 'mnist-8');
if (which !== 'mnist-8' && which !== 'mlp') throw new Error(`--model takes mnist-8 or mlp, not ${which}`);
let model = which === 'mlp' ? path.join(shared, 'models', 'onnx-mnist-mlp-untrained', 'mnist_original.onnx') : path.join(shared, 'models', 'onnx-mnist-8', 'mnist.onnx');
const test = path.join(mnist, 't10k-images-idx3-ubyte.gz');
const train = path.join(mnist, 'train-images-idx3-ubyte.gz');
const limit = process.argv.includes('--limit') ? Number(arg('limit', '0')) : undefined;

/** Sparsity per matrix-like weight of a model (kernels and matrices). */
function layerSparsity(file: string): string {
  const m = OnnxModel.open(file);
  const parts: string[] = [];
  for (const [name, w] of m.weights()) {
    if (w.ref.shape.filter((d) => d > 1).length < 2 || !w.ref.numeric) continue;
    const v = w.ref.toFloat32();
    parts.push(`${name} ${((v.reduce((a, x) => a + (x === 0 ? 1 : 0), 0) / v.length) * 100).toFixed(1)}%`);
  }
  m.close();
  return parts.join(', ');
}

(async () => {
  const recipes = arg('recipes', 'oneshot-global:unscaled,oneshot-layer,oneshot-global,gradual-global,gradual-lamp,dense-ft').split(',');
  const common: Omit<FinetuneParams, 'model'> = {
    data: limit ? `${train}#:${limit}` : train,
    evalData: test,
    epochs: Number(arg('epochs', '2')),
    lr: Number(arg('lr', '0.005')),
    batch: Number(arg('batch', '64')),
    optimizer: arg('optimizer', 'adam') as 'adam',
    schedule: arg('schedule', 'cosine') as 'cosine',
    seed: Number(arg('seed', '1')),
    threads: process.argv.includes('--threads') ? Number(arg('threads', '1')) : undefined,
    ep: 'cpu',
    // The evaluation data is the test set, so by default it is scored once, at the end: no checkpoint is chosen on it.
    evalEvery: Number(arg('eval-every', String(Number.MAX_SAFE_INTEGER))),
    logitScale: arg('logit-scale', 'auto') === 'auto' ? 'auto' : Number(arg('logit-scale', '1')),
  };
  if (which === 'mlp') {
    const trained = await runFinetune({ ...common, epochs: Number(arg('dense-epochs', '2')), model, out: path.join(tmp, 'dense-trained') });
    model = trained.output;
  }
  const dense = (await evaluate({ model, data: test, ep: 'cpu' })).accuracy!;
  const rows: string[] = [`| recipe | before fine-tune | after | drop vs dense (pt) | sparsity | per layer | time (s) |`, '|---|---:|---:|---:|---:|---|---:|'];
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  console.log(`dense ${which}: ${pct(dense)} on ${test}; epochs ${common.epochs}, ${common.optimizer} lr ${common.lr} ${common.schedule}, batch ${common.batch}${limit ? `, ${limit} training samples` : ''}, logit scale ${common.logitScale}`);
  for (const name of recipes) {
    const t0 = performance.now();
    const recipe = name.replace(/:unscaled$/, '');
    let start = model;
    const extra: Partial<FinetuneParams> = name.endsWith(':unscaled') ? { logitScale: 1 } : {};
    if (recipe.startsWith('oneshot-')) {
      const p = await runPrune({ model, sparsity: 0.9, scope: recipe.slice(8) as 'layer', data: `${test}#:500`, ep: 'cpu', out: path.join(tmp, `${name.replace(':', '-')}-pruned`) });
      start = p.output;
    } else if (recipe.startsWith('gradual-')) {
      Object.assign(extra, { prune: 0.9, pruneScope: recipe.slice(8) as 'global', pruneEnd: Number(arg('prune-end', '0.5')) });
    } else if (recipe !== 'dense-ft') throw new Error(`unknown recipe ${recipe}`);
    const r = await runFinetune({ ...common, ...extra, model: start, out: path.join(tmp, name.replace(':', '-')) });
    const after = r.metrics.after.accuracy!;
    const row = `| ${name} | ${pct(r.metrics.before.accuracy!)} | ${pct(after)} | ${((dense - after) * 100).toFixed(2)} | ${pct(r.sparsity)} | ${layerSparsity(r.output)} | ${((performance.now() - t0) / 1000).toFixed(0)} |`;
    console.log(row, `(logit scale ${r.training.logitScale.toPrecision(3)})`);
    if (process.argv.includes('--verbose')) {
      console.log('  evals:', r.training.evals.map((e) => `${e.step}:${pct(e.accuracy)}`).join(' '));
      console.log('  loss:', r.training.curve.map((c) => `${c.step}:${c.loss.toFixed(3)}`).join(' '));
    }
    rows.push(row);
  }
  console.log(['', `dense ${pct(dense)}`, ...rows].join('\n'));
  fs.rmSync(tmp, { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
