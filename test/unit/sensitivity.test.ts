import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { analyze, fakeQuantize, magnitudePrune, roundHalfEven, sortedMagnitudes } from '../../src/core/analysis/sensitivity';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import type { AnalyzeResult, LayerDoneEvent } from '../../src/protocol/analysis';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

/** Unit tier (the pure transforms, analyze in-process) and integration tier (`whittle analyze` through the CLI and worker). */

describe('weight variants', () => {
  test('magnitude pruning zeroes exactly round(s * n) of the smallest, ties by index', () => {
    const w = Float32Array.from([0.5, -0.1, 0.1, 0, 2, -0.1, 0.3, 0.1]);
    const out = new Float32Array(w.length);
    const sorted = sortedMagnitudes(w);
    assert.equal(magnitudePrune(w, sorted, 0, out), 0);
    assert.deepEqual(out, w);
    // 4 of 8: the 0 and the first three of the four 0.1-magnitude ties.
    assert.equal(magnitudePrune(w, sorted, 0.5, out), 3);
    assert.deepEqual(Array.from(out), [0.5, 0, 0, 0, 2, 0, Math.fround(0.3), Math.fround(0.1)]);
    magnitudePrune(w, sorted, 1, out);
    assert.ok(out.every((v) => v === 0));
  });

  test('round half to even, as ONNX QuantizeLinear', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, 0, -2, -2, 2, 3]);
  });

  test('per-channel symmetric fake quantization along the output axis', () => {
    // [K=3, N=2] MatMul weight: channels are columns.
    const w = Float32Array.from([1, -10, 0.25, 6, -0.7, 2.5]);
    const out = new Float32Array(6);
    fakeQuantize(w, [3, 2], 1, 2, out); // qmax 1: each value becomes -max, 0 or max of its column
    assert.deepEqual(Array.from(out), [1, -10, 0, 10, -1, 0]);
    fakeQuantize(w, [3, 2], 1, 8, out);
    const scales = [Math.fround(1 / 127), Math.fround(10 / 127)];
    out.forEach((v, i) => {
      const s = scales[i % 2];
      assert.ok(Math.abs(v - w[i]) <= s / 2 + 1e-7, `element ${i}`);
      assert.ok(Number.isInteger(Math.round(v / s)) && Math.abs(v / s - Math.round(v / s)) < 1e-4, `element ${i} on the grid`);
    });
    assert.equal(fakeQuantize(new Float32Array(4), [2, 2], 0, 4, out), 0, 'an all-zero weight is unchanged');
  });
});

describe('analysis cache', () => {
  test('a second identical analysis comes from the cache; other settings or a changed model do not', async () => {
    const dir = tempDir();
    process.env.WHITTLE_CACHE_DIR = path.join(dir, 'cache');
    try {
      const model = path.join(dir, 'm.onnx');
      fs.writeFileSync(model, buildSampleModel());
      const p = { model, data: 'random', kind: 'prune' as const, limit: 8, seed: 1, ep: 'cpu', sparsities: [0, 0.5] };
      const first = await analyze(p);
      assert.equal(first.cached, undefined);
      const events: LayerDoneEvent[] = [];
      const t0 = performance.now();
      const second = await analyze(p, undefined, (e) => events.push(e));
      assert.ok(performance.now() - t0 < first.layers.length * 1000);
      assert.equal(second.cached, true);
      assert.deepEqual(second.layers, first.layers);
      assert.equal(events.length, first.layers.length, 'cached layers are replayed as layerDone events');
      assert.equal((await analyze({ ...p, sparsities: [0, 0.9] })).cached, undefined, 'other settings miss the cache');
      fs.writeFileSync(model, buildSampleModel(2));
      assert.equal((await analyze(p)).cached, undefined, 'a changed model misses the cache');
    } finally {
      delete process.env.WHITTLE_CACHE_DIR;
    }
  });
});

describe('analyze', () => {
  const dir = tempDir();
  const sample = path.join(dir, 'sample.onnx');
  fs.writeFileSync(sample, buildSampleModel());
  // noCache: these tests are about the sweeps themselves; the cache has its own test below.
  const params = { model: sample, data: 'random', kind: 'both' as const, limit: 32, seed: 3, ep: 'cpu', sparsities: [0, 0.5, 0.9], bits: [8, 2], noCache: true };

  test('on the sample model: sparsity 0 is exactly 0, damage grows with sparsity, and a fixed seed repeats', async () => {
    const events: LayerDoneEvent[] = [];
    const a = await analyze(params, undefined, (e) => events.push(e));
    assert.deepEqual(a.layers.map((l) => l.name), ['/conv1/Conv', '/conv2/Conv', '/fc1/Gemm', '/fc2/Gemm']);
    assert.deepEqual(events.map((e) => [e.layer.name, e.done, e.total]), a.layers.map((l, i) => [l.name, i + 1, 4]));
    assert.equal(a.baseline.samples, 32);
    assert.equal(a.baseline.metricName, '1 - top-1 agreement');
    assert.ok(a.warnings.some((w) => /random/i.test(w)), 'random data is flagged');
    for (const l of a.layers) {
      assert.equal(l.prune![0].metric, 0, l.name);
      assert.equal(l.prune![0].cosine, 1, l.name);
      assert.equal(l.prune!.length, 3);
      assert.equal(l.quant!.length, 2);
      assert.ok(l.score >= 0);
    }
    // Output drift (1 - cosine) grows with sparsity for most layers.
    const growing = a.layers.filter((l) => 1 - l.prune![2].cosine > 1 - l.prune![1].cosine && l.prune![1].cosine < 1);
    assert.ok(growing.length >= 3, `drift grew for ${growing.map((l) => l.name)}`);
    assert.ok(a.layers.every((l) => l.quant![1].cosine < l.quant![0].cosine), '2-bit drifts more than 8-bit');
    const ranked = [...a.layers].sort((x, y) => y.score - x.score || x.name.localeCompare(y.name)).map((l) => l.name);
    assert.deepEqual(a.ranking, ranked);
    const b = await analyze(params);
    assert.deepEqual(b, a);
  });

  test('prune-only, exclusion, and cancellation', async () => {
    const r = await analyze({ ...params, kind: 'prune', exclude: ['/fc2/Gemm', 'nope'], sparsities: [0, 0.5], limit: 4 });
    assert.deepEqual(r.layers.map((l) => l.name), ['/conv1/Conv', '/conv2/Conv', '/fc1/Gemm']);
    assert.ok(r.layers.every((l) => l.quant === undefined));
    assert.ok(r.warnings.some((w) => w.includes('nope')));
    const controller = new AbortController();
    await assert.rejects(
      analyze(params, controller.signal, () => controller.abort()),
      (err: Error) => err.name === 'CancelledError' || /cancel/i.test(err.message),
    );
    await assert.rejects(analyze({ ...params, sparsities: [1.5] }), /invalid level 1.5/);
  });
});

describe('whittle analyze (CLI)', () => {
  const cli = path.join(repoRoot, 'dist', 'cli.js');
  const mnist = sharedData && path.join(sharedData, 'models', 'onnx-mnist-8', 'mnist.onnx');
  const images = sharedData && path.join(sharedData, 'mnist', 't10k-images-idx3-ubyte.gz');

  test('mnist-8 on 512 test images: sparsity 0 leaves the metric exactly unchanged, and the ranking is stable', { skip: noSharedData }, () => {
    const run = () => {
      const r = spawnSync(process.execPath, [cli, 'analyze', mnist!, '--data', images!, '--limit', '512', '--kind', 'both', '--ep', 'cpu', '--json', '--no-cache'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as AnalyzeResult;
    };
    const a = run();
    assert.equal(a.baseline.samples, 512);
    assert.equal(a.baseline.metricName, 'accuracy drop');
    assert.ok(a.baseline.accuracy! > 0.95);
    assert.ok(a.layers.length >= 2);
    for (const l of a.layers) {
      assert.equal(l.prune![0].sparsity, 0);
      assert.equal(l.prune![0].metric, 0, l.name);
      assert.equal(l.prune!.length, 11);
      assert.deepEqual(l.quant!.map((q) => q.bits), [8, 6, 4, 3, 2]);
      assert.ok(l.prune![10].metric > l.prune![1].metric, `${l.name}: 95% hurts more than 10%`);
    }
    const b = run();
    assert.deepEqual(b.ranking, a.ranking);
    assert.deepEqual(b.layers, a.layers);
  });

  test('bad input is exit 1 with one line', () => {
    const r = spawnSync(process.execPath, [cli, 'analyze', path.join(tempDir(), 'none.onnx'), '--data', 'random'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^whittle: .*none\.onnx/);
    const s = spawnSync(process.execPath, [cli, 'analyze', 'x.onnx'], { encoding: 'utf8' });
    assert.equal(s.status, 1);
    assert.match(s.stderr, /needs --data/);
  });
});

test('sortedMagnitudes equals a plain sort of |w|', () => {
  const w = Float32Array.from({ length: 70_001 }, (_, i) => Math.sin(i * 7.1) * 10 ** ((i % 9) - 4) * (i % 3 === 0 ? -1 : 1));
  w[5] = -0;
  w[6] = 0;
  assert.deepEqual(sortedMagnitudes(w), Float32Array.from(w, Math.abs).sort());
});
