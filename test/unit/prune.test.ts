import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { flagSpecs, parseParams } from '../../src/core/passes/pass';
import { checkNM, inputNormalized, prunePass, type PruneOptions } from '../../src/core/passes/prune/unstructured';
import { magnitudePrune, sortedMagnitudes } from '../../src/core/analysis/sensitivity';
import { allocateSparsity, costAt } from '../../src/core/passes/prune/allocate';
import { wandaPrune } from '../../src/core/passes/prune/wanda';
import { runPrune, type PruneResult } from '../../src/core/passes/run';
import { buildSampleModel, sampleModelParams } from '../../src/core/samples/sampleModel';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';
import { runModel } from './helpers/ort';

const cli = path.join(repoRoot, 'dist', 'cli.js');
const dir = tempDir('whittle-prune-');

/** A fresh copy of the sample model in its own folder. */
function sampleCopy(name: string): string {
  const folder = path.join(dir, name);
  fs.mkdirSync(folder, { recursive: true });
  const file = path.join(folder, 'lenet.onnx');
  fs.writeFileSync(file, buildSampleModel());
  return file;
}

/** Float32 weights of the named initializers of a written model. */
function weightsOf(file: string): Map<string, { values: Float32Array; shape: number[] }> {
  const m = OnnxModel.open(file);
  try {
    return new Map([...m.weights()].filter(([, w]) => w.ref.dtype === 1).map(([name, w]) => [name, { values: w.ref.toFloat32(), shape: [...w.ref.shape] }]));
  } finally {
    m.close();
  }
}

const zeros = (v: Float32Array) => v.reduce((a, x) => a + (x === 0 ? 1 : 0), 0);

/**
 * An independent N:M check (not checkNM): the fewest zeros found in any group of 4 consecutive weights along
 * the input dimension, with the input axis worked out here from the op and its transB attribute.
 */
function fewestZerosPer4(file: string, r: PruneResult): number {
  const m = OnnxModel.open(file);
  const transB = new Map(m.graph.node.map((n) => [n.name, Number(n.attribute.find((a) => a.name === 'transB')?.i ?? 0)]));
  m.close();
  const w = weightsOf(file);
  let fewest = Infinity;
  for (const l of r.layers) {
    const { values, shape } = w.get(l.weight)!;
    const count = values.length;
    // [rows, inputs, inner]: the input index i of element (row, i, inner) is at (row * inputs + i) * inner + inner.
    let rows: number, inputs: number, inner: number;
    if (l.op === 'Conv' || (l.op === 'Gemm' && transB.get(l.layer) === 1)) [rows, inputs, inner] = [shape[0], shape[1], count / (shape[0] * shape[1])];
    else [rows, inputs, inner] = [1, count / shape[shape.length - 1], shape[shape.length - 1]];
    for (let a = 0; a < rows; a++)
      for (let c = 0; c < inner; c++)
        for (let g = 0; g + 4 <= inputs; g += 4) {
          let z = 0;
          for (let k = g; k < g + 4; k++) if (values[(a * inputs + k) * inner + c] === 0) z++;
          fewest = Math.min(fewest, z);
        }
  }
  return fewest;
}

/** Checks the run folder: inside `<name>.whittle/prune-*`, the four files, no temp files, provenance in the model. */
function checkRunFolder(source: string, r: PruneResult): void {
  const runDir = path.dirname(r.output);
  assert.equal(path.dirname(runDir), path.join(path.dirname(source), `${path.basename(source, '.onnx')}.whittle`));
  assert.match(path.basename(runDir), /^prune-\d{8}-\d{6}(-\d+)?$/);
  assert.deepEqual(fs.readdirSync(runDir).sort(), [path.basename(source), 'recipe.whittle.json', 'report.json', 'report.md'].sort());
  assert.deepEqual(fs.readdirSync(path.dirname(source)).sort(), [path.basename(source), `${path.basename(source, '.onnx')}.whittle`].sort(), 'nothing written beside the source');
  const report = JSON.parse(fs.readFileSync(path.join(runDir, 'report.json'), 'utf8'));
  for (const key of ['output', 'sizeBytes', 'params', 'sparsity', 'metrics', 'latencyMs', 'ep', 'warnings']) assert.ok(key in report, key);
  const recipe = JSON.parse(fs.readFileSync(path.join(runDir, 'recipe.whittle.json'), 'utf8'));
  assert.equal(recipe.passes[0].pass, 'prune');
  assert.equal(path.resolve(runDir, recipe.model), path.resolve(source), 'the model, relative to the recipe');
  const m = OnnxModel.open(r.output);
  const meta = new Map(m.proto.metadataProps.map((e) => [e.key, e.value]));
  m.close();
  assert.equal(meta.get('whittle.tool'), 'whittle');
  assert.match(meta.get('whittle.source_sha256') ?? '', /^[0-9a-f]{64}$/);
  assert.ok(meta.get('whittle.recipe')?.includes('"prune"'));
}

describe('prune pass', () => {
  test('50% per layer zeros exactly round(n/2) weights of every layer, writes the run folder, and the model runs in onnxruntime', async () => {
    const source = sampleCopy('layer');
    const before = fs.readFileSync(source);
    const r = await runPrune({ model: source, sparsity: 0.5, limit: 8 });
    assert.ok(fs.readFileSync(source).equals(before), 'source bytes unchanged');
    checkRunFolder(source, r);
    const w = weightsOf(r.output);
    assert.equal(r.layers.length, 4);
    for (const l of r.layers) {
      const v = w.get(l.weight)!.values;
      assert.equal(zeros(v), Math.round(0.5 * v.length), l.layer);
    }
    assert.equal(r.sparsity, 0.5);
    assert.equal(r.params.before, sampleModelParams);
    assert.equal(r.params.after, sampleModelParams - r.layers.reduce((a, l) => a + l.params / 2, 0));
    assert.ok(r.sizeBytes.gzip < r.sizeBytes.gzipBefore, 'zeros compress');
    assert.ok(r.warnings.some((x) => x.includes('random')), 'random-data warning');
    const out = await runModel(r.output, { input: new ort.Tensor('float32', new Float32Array(784).fill(0.5), [1, 1, 28, 28]) });
    assert.equal(Object.values(out)[0].dims.join(','), '1,10');
  });

  test('global scope reaches the overall sparsity with different per-layer sparsities, within the per-layer bounds', async () => {
    const source = sampleCopy('global');
    const r = await runPrune({ model: source, sparsity: 0.6, scope: 'global', limit: 8 });
    const total = r.layers.reduce((a, l) => a + l.params, 0);
    assert.equal(r.layers.reduce((a, l) => a + l.zeros, 0), Math.round(0.6 * total));
    assert.ok(new Set(r.layers.map((l) => l.sparsity.toFixed(3))).size > 1, 'per-layer sparsities differ');
    const bounded = await runPrune({ model: source, sparsity: 0.6, scope: 'global', minSparsity: 0.3, maxSparsity: 0.7, limit: 8 });
    for (const l of bounded.layers) assert.ok(l.sparsity >= 0.3 - 1e-3 && l.sparsity <= 0.7 + 1e-3, `${l.layer} ${l.sparsity}`);
    assert.notEqual(path.dirname(bounded.output), path.dirname(r.output), 'a second run gets its own folder');
  });

  test('2:4 on the sample model leaves at least 2 zeros in every group of 4 along the input dimension', async () => {
    const source = sampleCopy('nm');
    const r = await runPrune({ model: source, pattern: '2:4', limit: 8 });
    assert.ok(r.warnings.some((x) => x.includes("'/conv1/Conv' skipped")), 'conv1 (1 input channel) is skipped with a warning');
    assert.deepEqual(r.layers.map((l) => l.layer), ['/conv2/Conv', '/fc1/Gemm', '/fc2/Gemm']);
    assert.equal(fewestZerosPer4(r.output, r), 2);
    // checkNM agrees, and fails on the unpruned weights.
    const pruned = weightsOf(r.output);
    const orig = weightsOf(source);
    for (const l of r.layers) {
      assert.equal(checkNM(pruned.get(l.weight)!.values, l.shape, 'outIn', 2, 4).violations, 0);
      assert.ok(checkNM(orig.get(l.weight)!.values, l.shape, 'outIn', 2, 4).violations > 0);
    }
  });

  test('2:4 on opt-mnist, and its source bytes stay unchanged', { skip: noSharedData }, async () => {
    const source = path.join(dir, 'opt', 'opt-mnist.onnx');
    fs.mkdirSync(path.dirname(source), { recursive: true });
    fs.copyFileSync(path.join(sharedData!, 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx'), source);
    const before = fs.readFileSync(source);
    const r = await runPrune({ model: source, pattern: '2:4', limit: 8 });
    assert.ok(fs.readFileSync(source).equals(before));
    checkRunFolder(source, r);
    assert.ok(r.layers.some((l) => l.op === 'Gemm'), 'the classifier is pruned');
    assert.equal(fewestZerosPer4(r.output, r), 2);
  });

  test('the parameter table makes the flags and rejects bad or planned values naming the flag', () => {
    const flags = flagSpecs(prunePass.params).map((f) => f.name);
    for (const f of ['sparsity', 'method', 'scope', 'min-sparsity', 'max-sparsity', 'pattern', 'exclude', 'structured', 'damp', 'calib-data', 'max-drop']) assert.ok(flags.includes(f), f);
    const p = parseParams<PruneOptions>(prunePass.params, { sparsity: '0.3', exclude: 'a,b', 'max-sparsity': '0.9' });
    assert.deepEqual([p.sparsity, p.method, p.scope, p.exclude, p.maxSparsity, p.pattern], [0.3, 'magnitude', 'layer', ['a', 'b'], 0.9, 'none']);
    assert.throws(() => parseParams(prunePass.params, { sparsity: '-0.1' }), /--sparsity must be between 0 and 1/);
    assert.throws(() => parseParams(prunePass.params, { pattern: '4:2' }), /--pattern must be none or N:M/);
    assert.equal(parseParams<PruneOptions>(prunePass.params, { method: 'sparsegpt' }).method, 'sparsegpt');
    assert.equal(parseParams<PruneOptions>(prunePass.params, { scope: 'sensitivity', method: 'wanda' }).scope, 'sensitivity');
    assert.throws(() => parseParams(prunePass.params, { method: 'random' }), /--method must be one of magnitude, wanda, sparsegpt, not 'random'/);
  });
});

describe('whittle prune (CLI)', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, WHITTLE_DEBUG: '' } });

  for (const [name, args, message] of [
    ['an unknown method', ['--sparsity', '0.5', '--method', 'obs'], /^whittle: option --method must be one of magnitude, wanda, sparsegpt, not 'obs'$/],
    ['a sparsity out of range', ['--sparsity', '1.2'], /^whittle: option --sparsity must be between 0 and 1, not 1.2$/],
    ['no sparsity', [], /^whittle: option --sparsity is required/],
  ] as const) {
    test(`exits 1 with one line for ${name}`, () => {
      const source = sampleCopy(`cli-${name.replace(/\W/g, '')}`);
      const r = run('prune', source, ...args);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.match(r.stderr.trim(), message);
      assert.deepEqual(fs.readdirSync(path.dirname(source)), ['lenet.onnx'], 'no run folder left behind');
    });
  }

  // Measured here: uniform 50% per layer drops 0.55 pt on these 2,000 images (0.59 pt on all 10,000), because
  // mnist-8's first conv has only 200 weights; one global threshold keeps it at ~20% and drops 0.15 pt.
  test('mnist-8 unstructured 50% (global threshold) loses at most 0.5 pt of accuracy on 2,000 MNIST test images', { skip: noSharedData }, () => {
    const source = path.join(dir, 'mnist8', 'mnist.onnx');
    fs.mkdirSync(path.dirname(source), { recursive: true });
    fs.copyFileSync(path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx'), source);
    const data = path.join(sharedData!, 'mnist/t10k-images-idx3-ubyte.gz');
    const prune = (...args: string[]) => {
      const r = run('prune', source, '--sparsity', '0.5', '--data', data, '--limit', '2000', '--json', ...args);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 1, 'one JSON line');
      const res = JSON.parse(lines[0]) as PruneResult;
      process.stderr.write(`mnist-8 50% ${args.join(' ')}: ${JSON.stringify({ accuracy: res.metrics.accuracy, top1Agreement: res.metrics.top1Agreement, sizeBytes: res.sizeBytes, layers: res.layers.map((l) => [l.layer, l.sparsity]) })}\n`);
      assert.equal(res.metrics.before.samples, 2000);
      assert.ok(res.metrics.accuracy, 'labels found');
      assert.ok(res.metrics.accuracy!.before > 0.95, `baseline ${res.metrics.accuracy!.before}`);
      assert.equal(res.layers.length, 3);
      assert.ok(Math.abs(res.sparsity - 0.5) < 1e-3, `sparsity ${res.sparsity}`);
      return res;
    };
    const global = prune('--scope', 'global', '--exclude', 'nope');
    assert.ok(global.metrics.accuracy!.dropPt <= 0.5, `drop ${global.metrics.accuracy!.dropPt} pt`);
    assert.ok(global.warnings.includes("--exclude: no layer named 'nope' in the model"), 'an unknown --exclude is a warning');
    const uniform = prune();
    assert.ok(uniform.metrics.accuracy!.dropPt < 1, `uniform drop ${uniform.metrics.accuracy!.dropPt} pt`);
    assert.ok(global.metrics.accuracy!.dropPt < uniform.metrics.accuracy!.dropPt, 'the global threshold spares the small first conv');
  });
});

describe('per-input-normalised magnitude (--norm input)', () => {
  test('an input of small scale is emptied by |w| but keeps its share under --norm input', () => {
    // A [K=4, N=8] MatMul weight whose input 0 reads 100x smaller values than the others.
    const w = Float32Array.from({ length: 32 }, (_, i) => (Math.floor(i / 8) === 0 ? 0.01 : 1) * (1 + (i % 8) / 8) * (i % 2 ? -1 : 1));
    const zeroedPerInput = (pruned: Float32Array) => [0, 1, 2, 3].map((k) => pruned.slice(k * 8, k * 8 + 8).filter((v) => v === 0).length);
    const abs = new Float32Array(32);
    magnitudePrune(w, sortedMagnitudes(w), 0.25, abs);
    assert.deepEqual(zeroedPerInput(abs), [8, 0, 0, 0]);
    const scores = inputNormalized(w, [4, 8], 'inOut');
    const byInput = new Float32Array(32);
    magnitudePrune(scores, sortedMagnitudes(scores), 0.25, byInput);
    assert.deepEqual(zeroedPerInput(byInput), [2, 2, 2, 2]);
    // A Conv [O=2, I=3, 1, 1]: the score divides by the norm over the outputs reading each input channel.
    const c = inputNormalized(Float32Array.of(3, 0, 1, 4, 0, 1), [2, 3, 1, 1], 'outIn');
    assert.deepEqual([...c].map((v) => +v.toFixed(4)), [0.6, 0, 0.7071, 0.8, 0, 0.7071]);
  });
});

describe('sensitivity-guided allocation and Wanda', () => {
  test('allocateSparsity reaches the target, spends it where the curves are cheapest, and honours the bounds', () => {
    const cheap = { params: 1000, sparsities: [0, 0.5, 0.9], costs: [0, 0, 0.01] };
    const dear = { params: 100, sparsities: [0, 0.5, 0.9], costs: [0, 0.05, 0.5] };
    const a = allocateSparsity([cheap, dear], 0.7, 0, 1);
    assert.ok(Math.abs(a.overall - 0.7) < 1e-9);
    assert.equal(a.sparsities[1], 0, 'the sensitive small layer stays dense');
    assert.ok(Math.abs(a.sparsities[0] - 0.77) < 1e-9, `${a.sparsities[0]}`);
    assert.ok(Math.abs(costAt(cheap, 0.7) - 0.005) < 1e-12, 'linear between levels');
    const bounded = allocateSparsity([cheap, dear], 0.7, 0.2, 0.75);
    for (const s of bounded.sparsities) assert.ok(s >= 0.2 - 1e-12 && s <= 0.75 + 1e-12, `${s}`);
    assert.ok(Math.abs(bounded.overall - 0.7) < 1e-9);
  });

  test('wandaPrune zeros per output row by |w| x ||x_j||, so a weight on a silent input goes first', () => {
    // [O=2, I=4] (outIn): input 3 never fires, so its large weights are pruned before small live ones.
    const w = new Float32Array([0.1, 0.2, 0.3, 9, -0.3, 0.2, 0.1, -9]);
    wandaPrune(w, [2, 4], 'outIn', Float64Array.from([1, 1, 1, 0]), 0.5);
    assert.deepEqual([...w], [0, 0.2, 0.3, 0, -0.3, 0.2, 0, 0].map(Math.fround));
    // [K=4, O=2] (inOut): each output column keeps its 2 best of 4.
    const v = new Float32Array([1, 4, 2, 3, 3, 2, 4, 1]);
    wandaPrune(v, [4, 2], 'inOut', Float64Array.from([1, 1, 1, 1]), 0.5);
    assert.deepEqual([...v], [0, 4, 0, 3, 3, 0, 4, 0]);
  });

  // Calibration and evaluation read the same first 1,000 MNIST test images (--limit 1000).
  test('mnist-8 at 70%: sensitivity-guided drops at least 30% less than uniform, and Wanda runs', { skip: noSharedData }, async () => {
    process.env.WHITTLE_CACHE_DIR = path.join(dir, 'cache');
    try {
      const source = path.join(dir, 'mnist8-70', 'mnist.onnx');
      fs.mkdirSync(path.dirname(source), { recursive: true });
      fs.copyFileSync(path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx'), source);
      const data = path.join(sharedData!, 'mnist/t10k-images-idx3-ubyte.gz');
      const prune = async (extra: Partial<PruneOptions>) => {
        const r = await runPrune({ model: source, sparsity: 0.7, data, limit: 1000, ...extra });
        assert.ok(Math.abs(r.sparsity - 0.7) < 2e-3, `sparsity ${r.sparsity}`);
        process.stderr.write(`mnist-8 70% ${JSON.stringify(extra)}: ${JSON.stringify(r.metrics.accuracy)} ${JSON.stringify(r.layers.map((l) => [l.layer, +l.sparsity.toFixed(3)]))}\n`);
        return r;
      };
      const uniform = await prune({});
      const guided = await prune({ scope: 'sensitivity' });
      const wanda = await prune({ method: 'wanda' });
      assert.ok(guided.allocation && guided.allocation.layers.length === 3, 'the allocation is reported');
      assert.ok(new Set(guided.layers.map((l) => l.sparsity.toFixed(2))).size > 1, 'per-layer sparsities differ');
      assert.match(fs.readFileSync(path.join(path.dirname(guided.output), 'report.md'), 'utf8'), /Sensitivity-guided allocation/);
      const drop = (r: PruneResult) => r.metrics.accuracy!.dropPt;
      // Measured: uniform 11.8 pt, guided 2.2 pt (conv1 kept at 10%), so the "at least 30% smaller" holds.
      assert.ok(drop(guided) <= 0.7 * drop(uniform), `guided ${drop(guided)} pt vs uniform ${drop(uniform)} pt`);
      // Measured: Wanda 29.8 pt, worse than magnitude's 11.8 pt. Its per-output groups force 18 of every 25
      // weights out of each filter of the 1-channel first conv; with conv1 excluded it is 2.8 vs 2.3 pt. So only
      // that it runs and reaches the sparsity is asserted here, not that it wins.
      assert.ok(drop(wanda) >= 0 && wanda.layers.length === 3, `wanda ${drop(wanda)} pt vs magnitude ${drop(uniform)} pt`);
    } finally {
      delete process.env.WHITTLE_CACHE_DIR;
    }
  });
});
