import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { CancelledError } from '../../src/protocol/rpc';
import { encodeModel, floatTensor, graph, int64Tensor, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { WorkerClient } from '../../src/core/worker/client';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

/** Integration tier: `whittle eval` through the built CLI and worker, on real models and data. */
const cli = path.join(repoRoot, 'dist', 'cli.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const dir = tempDir();
const sample = path.join(dir, 'sample.onnx');
fs.writeFileSync(sample, buildSampleModel());

/** An MNIST-style idx pair of `n` seeded images, to give the sample model a long job. */
function idxPair(n: number): string {
  const images = Buffer.alloc(16 + n * 784);
  images.writeUInt32BE(0x803, 0);
  images.writeUInt32BE(n, 4);
  images.writeUInt32BE(28, 8);
  images.writeUInt32BE(28, 12);
  for (let i = 16; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Buffer.alloc(8 + n);
  labels.writeUInt32BE(0x801, 0);
  labels.writeUInt32BE(n, 4);
  for (let i = 0; i < n; i++) labels[8 + i] = i % 10;
  const file = path.join(dir, `long-images-idx3-ubyte`);
  fs.writeFileSync(file, images);
  fs.writeFileSync(path.join(dir, 'long-labels-idx1-ubyte'), labels);
  return file;
}

describe('whittle eval', () => {
  for (const [name, rel] of [
    ['mnist-8', 'models/onnx-mnist-8/mnist.onnx'],
    ['opt-mnist', 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx'],
  ]) {
    test(`${name} reaches 98.91% on the MNIST test set`, { skip: noSharedData }, () => {
      const r = run('eval', path.join(sharedData!, rel), '--data', path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz'), '--json', '--ep', 'cpu');
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.samples, 10000);
      assert.ok(Math.abs(out.accuracy - 0.9891) <= 0.0005, `accuracy ${out.accuracy}`);
      assert.equal(out.ep, 'cpu');
      assert.ok(out.latencyMs.median > 0 && out.latencyMs.p90 >= out.latencyMs.median);
    });
  }

  test('a model against itself: agreement 1, KL 0, cosine 1, SQNR inf', () => {
    const r = run('eval', sample, '--data', idxPair(64), '--reference', sample, '--json', '--ep', 'cpu');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.samples, 64);
    assert.equal(out.top1Agreement, 1);
    assert.equal(out.kl, 0);
    assert.equal(out.cosine, 1);
    assert.equal(out.sqnrDb, 'inf');
    assert.equal(out.batchSize, 32, 'the sample model takes batches');
    assert.ok('accuracy' in out, 'labels from the idx pair are used');
  });

  test('two different models: agreement below 1 and a finite SQNR', () => {
    const other = path.join(dir, 'other.onnx');
    fs.writeFileSync(other, buildSampleModel(2));
    const out = JSON.parse(run('eval', sample, '--data', 'random', '--reference', other, '--json', '--ep', 'cpu').stdout);
    assert.ok(out.top1Agreement < 1);
    assert.equal(typeof out.sqnrDb, 'number');
    assert.ok(out.cosine < 1);
    assert.match(out.warnings.join('\n'), /random calibration data is not representative/);
  });

  const bad: Array<[string, () => string[], RegExp]> = [
    ['a missing data folder', () => [sample, '--data', path.join(dir, 'no-such-folder')], /no-such-folder: no such file or folder/],
    ['no --data', () => [sample], /eval needs --data/],
    ['a reference with other inputs', () => {
      const m = path.join(dir, 'other-inputs.onnx');
      const w = floatTensor('w', [784, 10], new Float32Array(7840));
      fs.writeFileSync(m, encodeModel(model(graph('g', [node('Reshape', ['INPUT', 'shape'], ['flat']), node('MatMul', ['flat', 'w'], ['logits'])], [valueInfo('INPUT', 1, ['batch', 1, 28, 28])], [valueInfo('logits', 1, ['batch', 10])], [w, int64Tensor('shape', [2], [-1, 784])]), 13)));
      return [sample, '--data', 'random', '--reference', m];
    }, /the reference takes inputs \[INPUT\], the model takes \[input\]/],
    ['an input name the model lacks (manifest)', () => {
      const manifest = path.join(dir, 'bad.dataset.json');
      fs.writeFileSync(manifest, JSON.stringify({ inputs: { pixels: { zeros: [1, 1, 28, 28] } } }));
      return [sample, '--data', manifest];
    }, /bad\.dataset\.json: .*pixels/],
  ];
  for (const [what, args, message] of bad) {
    test(`bad data: ${what} exits 1 with one line`, () => {
      const r = run('eval', ...args(), '--json', '--ep', 'cpu');
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], message);
    });
  }
});

describe('cancelling an eval', () => {
  test('a model onnxruntime cannot load is bad input naming the file', () => {
    const m = path.join(dir, 'broken.onnx');
    fs.writeFileSync(m, encodeModel(model(graph('g', [node('Relu', ['nowhere'], ['y'])], [valueInfo('x', 1, [1])], [valueInfo('y', 1, [1])], []), 13)));
    const r = run('eval', m, '--data', 'random', '--json', '--ep', 'cpu');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr.trim(), /^whittle: .*broken\.onnx: onnxruntime cannot load this model: .*nowhere/);
  });

  test('stops within 1 s and leaves no worker running', async () => {
    const client = new WorkerClient(path.join(repoRoot, 'dist', 'worker.js'));
    const controller = new AbortController();
    const job = client.request('evaluate', { model: sample, data: idxPair(60000), ep: 'cpu', batch: 1 }, controller.signal);
    await new Promise((r) => setTimeout(r, 800));
    const t0 = performance.now();
    controller.abort();
    await assert.rejects(job, CancelledError);
    while (client.running && performance.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(client.running, false, 'the worker thread was terminated');
    assert.ok(performance.now() - t0 < 1000, `stopped after ${performance.now() - t0} ms`);
    client.dispose();
  });

  test('Ctrl+C on the CLI exits 130 within 1 s with one line', async () => {
    const data = idxPair(60000);
    const child = spawn(process.execPath, [cli, 'eval', sample, '--data', data, '--ep', 'cpu', '--batch', '1', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = performance.now();
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    assert.ok(performance.now() - t0 < 1000, `exited after ${performance.now() - t0} ms`);
    assert.equal(code, 130);
    assert.equal(stderr.trim(), 'whittle: cancelled');
  });
});
