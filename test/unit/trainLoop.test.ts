// The training loop and `whittle finetune` on real MNIST (skipped without ../shared/data).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { runPrune } from '../../src/core/passes/run';
import { runFinetune } from '../../src/core/train/finetune';
import { magnitudePrune, prunePlan, train } from '../../src/core/train/loop';
import { InputError } from '../../src/core/errors';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-train-');
const mnist = sharedData ? path.join(sharedData, 'mnist') : '';
const mlp = sharedData ? path.join(sharedData, 'models', 'onnx-mnist-mlp-untrained', 'mnist_original.onnx') : '';
const mnist8 = sharedData ? path.join(sharedData, 'models', 'onnx-mnist-8', 'mnist.onnx') : '';
const cli = path.join(repoRoot, 'dist', 'cli.js');

/** MNIST as the MLP is trained here: pixels scaled to [0, 1], then standardised with MNIST's mean and std. */
function manifest(split: 'train' | 't10k'): string {
  const file = path.join(dir, `${split}.dataset.json`);
  const spec = { inputs: { input1: { idx: path.join(mnist, `${split}-images-idx3-ubyte.gz`), scale: 1 / 255, mean: [0.1307], std: [0.3081] } }, labels: { idx: path.join(mnist, `${split}-labels-idx1-ubyte.gz`) } };
  fs.writeFileSync(file, JSON.stringify(spec));
  return file;
}

function copyTo(file: string, name: string): string {
  const folder = path.join(dir, name);
  fs.mkdirSync(folder, { recursive: true });
  const out = path.join(folder, path.basename(file));
  fs.copyFileSync(file, out);
  return out;
}

const zerosOf = (w: Float32Array) => w.reduce((a, x) => a + (x === 0 ? 1 : 0), 0);

describe('training on MNIST', { skip: noSharedData }, () => {
  test('the untrained MLP reaches >= 97% test accuracy after 1 epoch (SGD momentum, cosine, seeded)', async () => {
    const r = await runFinetune({ model: copyTo(mlp, 'mlp'), data: manifest('train'), evalData: manifest('t10k'), epochs: 1, batch: 64, lr: 0.05, optimizer: 'sgd', schedule: 'cosine', seed: 1, threads: 1, ep: 'cpu' });
    assert.ok(r.metrics.before.accuracy! < 0.3, `untrained accuracy ${r.metrics.before.accuracy}`);
    assert.ok(r.metrics.after.accuracy! >= 0.97, `after 1 epoch: ${r.metrics.after.accuracy}`);
    assert.equal(r.metrics.after.samples, 10000);
    assert.equal(r.training.steps, Math.ceil(60000 / 64));
    assert.equal(r.training.logitScale, 1, 'the untrained MLP has small logits: no scaling');
    assert.ok(r.training.curve.length >= 10 && r.training.curve.at(-1)!.loss < r.training.curve[0].loss / 3);
    // The written model is what scored, and carries provenance.
    const m = OnnxModel.open(r.output);
    assert.ok(m.proto.metadataProps.some((e) => e.key === 'whittle.recipe' && e.value.includes('finetune')));
    m.close();
    const report = JSON.parse(fs.readFileSync(r.report, 'utf8'));
    for (const key of ['output', 'sizeBytes', 'params', 'sparsity', 'metrics', 'latencyMs', 'ep', 'warnings']) assert.ok(key in report, `report.json lacks ${key}`);
    assert.ok(fs.existsSync(r.recipe) && fs.existsSync(path.join(path.dirname(r.report), 'report.md')));
  });

  test('without --eval-data, the metrics use the first 1000 training samples, or all of a smaller set (QAT calibration too)', async () => {
    const small = `${path.join(mnist, 't10k-images-idx3-ubyte.gz')}#:300`;
    const r = await runFinetune({ model: copyTo(mnist8, 'm8-small'), data: small, epochs: 1, batch: 64, seed: 1, threads: 1, ep: 'cpu', qat: 8, qatActivations: true });
    assert.equal(r.metrics.before.samples, 300);
    assert.equal(r.metrics.after.samples, 300);
    assert.equal(r.qat?.samples, 300, 'the int8 export is measured on the same 300 samples');
    assert.ok(r.warnings.some((w) => /no --eval-data/.test(w)), r.warnings.join('; '));
  });

  test('mnist-8 pruned to 90%: fine-tuning keeps exactly the pruned zeros and recovers accuracy', async () => {
    const test10k = path.join(mnist, 't10k-images-idx3-ubyte.gz');
    const pruned = await runPrune({ model: copyTo(mnist8, 'm8'), sparsity: 0.9, data: `${test10k}#:500`, ep: 'cpu' });
    const before = OnnxModel.open(pruned.output);
    const masks = new Map(pruned.layers.map((l) => [l.weight, Float32Array.from(before.weights().get(l.weight)!.ref.toFloat32())]));
    before.close();
    const r = await runFinetune({ model: pruned.output, data: `${path.join(mnist, 'train-images-idx3-ubyte.gz')}#:8000`, evalData: `${test10k}#:2000`, epochs: 1, batch: 64, lr: 0.005, optimizer: 'adam', schedule: 'cosine', seed: 1, threads: 1, ep: 'cpu' });
    const after = OnnxModel.open(r.output);
    for (const [name, w0] of masks) {
      const w1 = after.weights().get(name)!.ref.toFloat32();
      let moved = 0;
      for (let i = 0; i < w0.length; i++) {
        if (w0[i] === 0) assert.equal(w1[i], 0, `${name}[${i}] was pruned and is now ${w1[i]}`);
        else if (w1[i] !== w0[i]) moved++;
      }
      assert.equal(zerosOf(w1), zerosOf(w0));
      assert.ok(moved > 0, `${name}: no kept weight changed, so nothing was trained`);
    }
    after.close();
    assert.ok(Math.abs(r.sparsity - pruned.sparsity) < 1e-12, `sparsity ${r.sparsity} != ${pruned.sparsity}`);
    assert.ok(r.metrics.after.accuracy! > r.metrics.before.accuracy! + 0.3, `accuracy ${r.metrics.before.accuracy} -> ${r.metrics.after.accuracy}`);
  });

  test('without masks, pruned weights move; cancel stops training', async () => {
    const test10k = path.join(mnist, 't10k-images-idx3-ubyte.gz');
    const pruned = await runPrune({ model: copyTo(mnist8, 'm8b'), sparsity: 0.5, data: `${test10k}#:200`, ep: 'cpu' });
    const model = OnnxModel.open(pruned.output);
    const name = pruned.layers[0].weight;
    const zeros0 = zerosOf(model.weights().get(name)!.ref.toFloat32());
    const r = await train(model, { data: `${path.join(mnist, 'train-images-idx3-ubyte.gz')}#:256`, epochs: 1, batch: 64, lr: 0.001, optimizer: { kind: 'adam' }, keepMasks: false, seed: 1 });
    assert.ok(zerosOf(r.weights.get(name)!) < zeros0 / 10, 'pruned weights stayed zero with masks off');
    assert.equal(r.masks.length, 0);

    const controller = new AbortController();
    let steps = 0;
    await assert.rejects(
      train(model, { data: path.join(mnist, 'train-images-idx3-ubyte.gz'), epochs: 1, batch: 16, lr: 0.001, optimizer: { kind: 'sgd' }, seed: 1 }, controller.signal, (p) => {
        steps = p.step;
        controller.abort();
      }),
    );
    assert.ok(steps > 0 && steps < 100, `cancel came at step ${steps}`);
    model.close();
  });

  test('gradual pruning (finetune --prune): exactly 90% at the end, input zeros kept, only final-sparsity evaluations kept', async () => {
    const test10k = path.join(mnist, 't10k-images-idx3-ubyte.gz');
    // Start from a model already pruned to 30% per layer: those zeros must survive.
    const pruned = await runPrune({ model: copyTo(mnist8, 'm8g'), sparsity: 0.3, data: `${test10k}#:200`, ep: 'cpu' });
    const m0 = OnnxModel.open(pruned.output);
    const zeros0 = new Map(pruned.layers.map((l) => [l.weight, Float32Array.from(m0.weights().get(l.weight)!.ref.toFloat32())]));
    m0.close();
    const r = await runFinetune({ model: pruned.output, data: `${path.join(mnist, 'train-images-idx3-ubyte.gz')}#:3200`, evalData: `${test10k}#:500`, epochs: 1, batch: 64, lr: 0.005, optimizer: 'adam', schedule: 'cosine', seed: 1, threads: 1, ep: 'cpu', prune: 0.9, pruneEnd: 0.5, evalEvery: 10 });
    assert.ok(Math.abs(r.sparsity - 0.9) < 1e-3, `sparsity ${r.sparsity}`);
    // mnist-8's logits have an RMS in the thousands (raw 0-255 input): cross-entropy trained on them scaled down.
    assert.ok(r.training.logitScale > 0 && r.training.logitScale < 0.01, `logit scale ${r.training.logitScale}`);
    const rounds = r.training.pruneRounds!;
    assert.ok(rounds.length >= 5, `${rounds.length} rounds`);
    for (let i = 1; i < rounds.length; i++) assert.ok(rounds[i].sparsity > rounds[i - 1].sparsity && rounds[i].step > rounds[i - 1].step);
    assert.equal(rounds.at(-1)!.sparsity, 0.9);
    // Evaluations ran while pruning (every 10 steps), but the kept weights come from one at the final sparsity.
    assert.ok(r.training.evals.some((e) => e.step < rounds.at(-1)!.step));
    assert.ok(r.training.best!.step >= rounds.at(-1)!.step, `kept step ${r.training.best!.step}, pruning ended at ${rounds.at(-1)!.step}`);
    const after = OnnxModel.open(r.output);
    let zeros = 0;
    let count = 0;
    for (const [name, w0] of zeros0) {
      const w1 = after.weights().get(name)!.ref.toFloat32();
      for (let i = 0; i < w0.length; i++) if (w0[i] === 0) assert.equal(w1[i], 0, `${name}[${i}] was pruned in the input`);
      zeros += zerosOf(w1);
      count += w1.length;
    }
    after.close();
    assert.equal(zeros, Math.round(0.9 * count));
    assert.ok(r.metrics.after.accuracy! > 0.5, `accuracy after ${r.metrics.after.accuracy}`);
    await assert.rejects(runFinetune({ model: pruned.output, data: test10k, prune: 1.2 }), (e: Error) => e instanceof InputError && /--prune/.test(e.message));
  });

  test('whittle finetune (CLI, through the worker) prints the contract object with --json', () => {
    const model = copyTo(mlp, 'cli');
    const res = spawnSync(process.execPath, [cli, 'finetune', model, '--data', manifest('train') + '#:1000', '--eval-data', manifest('t10k') + '#:300', '--epochs', '1', '--optimizer', 'sgd', '--lr', '0.05', '--ep', 'cpu', '--json'], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    const r = JSON.parse(res.stdout);
    assert.equal(r.training.steps, Math.ceil(1000 / 64));
    assert.ok(r.metrics.after.accuracy > r.metrics.before.accuracy);
    assert.ok(fs.existsSync(r.output));
    const bad = spawnSync(process.execPath, [cli, 'finetune', model, '--data', manifest('train'), '--lr', 'x'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--lr/);
    for (const [flag, value] of [['--prune', '2'], ['--prune-scope', 'random'], ['--qat-exclude', 'Nope']]) {
      const r2 = spawnSync(process.execPath, [cli, 'finetune', model, '--data', manifest('train'), flag, value, ...(flag === '--qat-exclude' ? ['--qat', '8'] : [])], { encoding: 'utf8' });
      assert.equal(r2.status, 1, `${flag} ${value}: ${r2.stderr}`);
      assert.match(r2.stderr, flag === '--qat-exclude' ? /Nope/ : new RegExp(flag), `${flag} ${value}`);
    }
  });
});

describe('magnitude pruning (gradual pruning rounds)', () => {
  test('global: exactly round(s·n) zeros over all prunable weights, the smallest magnitudes, ties broken to the count', () => {
    const a = Float32Array.from([0.5, -0.1, 0.3, 0.3, -0.9, 0]);
    const b = Float32Array.from([2, -0.3, 0.05, 1]);
    const skip = Float32Array.from([0.01, 0.02]);
    magnitudePrune([a, b, skip], [true, true, false], 0.5, 'global');
    // 10 prunable elements, 5 go: 0, 0.05, -0.1, then two of the three at |0.3|.
    assert.equal(zerosOf(a) + zerosOf(b), 5);
    assert.deepEqual(Array.from(skip), [Float32Array.from([0.01])[0], Float32Array.from([0.02])[0]]);
    assert.equal(a[4], Float32Array.from([-0.9])[0]);
    assert.equal(b[0], 2);
    assert.equal(b[3], 1);
    assert.equal(a[1], 0);
    assert.equal(b[2], 0);
    assert.equal([a[2], a[3], b[1]].filter((x) => x === 0).length, 2);
  });

  test('the schedule reaches the final sparsity on a step the run reaches, rising along the cubic', () => {
    for (const total of [1, 7, 50, 1876]) {
      for (const [start, end] of [[0, 0.5], [0, 1], [0.2, 0.75], [0.5, 0.5], [1, 1]]) {
        const plan = prunePlan({ sparsity: 0.9, start, end }, total);
        assert.ok(plan.endStep <= total - 1 || (total === 1 && plan.endStep === 0), `${total} ${start}-${end}: ends at ${plan.endStep}`);
        assert.ok((plan.endStep - plan.startStep) % plan.every === 0, 'the last round falls on a pruning step');
        assert.equal(plan.target(plan.endStep), 0.9);
        let prev = -1;
        for (let s = plan.startStep; s <= plan.endStep; s += plan.every) {
          assert.ok(plan.target(s) > prev);
          prev = plan.target(s);
        }
      }
    }
    assert.throws(() => prunePlan({ sparsity: 1 }, 10), InputError);
    assert.throws(() => prunePlan({ sparsity: 0.5, start: 0.8, end: 0.2 }, 10), InputError);
  });

  test('lamp: a layer of small weights keeps its largest (global magnitude would empty it)', () => {
    const small = () => Float32Array.from([0.25, 0.125, 0.5, 0.375]);
    const large = () => Float32Array.from([2, 1, 4, 3]);
    const [a, b] = [small(), large()];
    magnitudePrune([a, b], [true, true], 0.5, 'global');
    assert.deepEqual(Array.from(a), [0, 0, 0, 0]);
    const [c, d] = [small(), large()];
    magnitudePrune([c, d], [true, true], 0.5, 'lamp');
    // The layers differ by a factor of 8 only, so their LAMP scores are equal: each keeps its two largest.
    assert.deepEqual(Array.from(c), [0, 0, 0.5, 0.375]);
    assert.deepEqual(Array.from(d), [0, 0, 4, 3]);
  });

  test('layer: each weight reaches the sparsity on its own; zeros only accumulate', () => {
    const a = Float32Array.from({ length: 10 }, (_, i) => (i + 1) * (i % 2 ? -1 : 1));
    const b = Float32Array.from({ length: 20 }, (_, i) => 100 + i);
    b[19] = 0;
    magnitudePrune([a, b], [true, true], 0.3, 'layer');
    assert.equal(zerosOf(a), 3);
    assert.deepEqual(Array.from(a.slice(0, 3)), [0, 0, 0]);
    assert.equal(zerosOf(b), 6);
    assert.equal(b[19], 0, 'an existing zero is counted first and stays');
    const before = a.slice();
    magnitudePrune([a, b], [true, true], 0.6, 'layer');
    assert.equal(zerosOf(a), 6);
    for (let i = 0; i < a.length; i++) if (before[i] === 0) assert.equal(a[i], 0);
  });
});
