import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { TfjsModel } from '../../src/core/formats/tfjs/read';
import { encodeWeight, writeTfjs } from '../../src/core/formats/tfjs/write';
import { inspectModel } from '../../src/core/inspect';
import { humanModels, humanRow } from '../../bench/lib/tfjsHuman';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-tfjs-');
const cli = path.join(repoRoot, 'dist', 'cli.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, WHITTLE_DEBUG: '' } });
const lenet = sharedData && path.join(sharedData, 'models', 'tfjs-tensorspace-lenet-mnist', 'mnist.json');

/** Seeded values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Writes a model.json and its shards into a fresh folder; returns model.json's path. */
function writeModel(name: string, json: object, shards: Record<string, Uint8Array>): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  for (const [f, bytes] of Object.entries(shards)) fs.writeFileSync(path.join(d, f), bytes);
  const file = path.join(d, 'model.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

const denseTopology = {
  class_name: 'Sequential',
  config: { name: 'seq', layers: [{ class_name: 'Dense', config: { name: 'dense', units: 3, batch_input_shape: [null, 4], use_bias: true, activation: 'linear' } }] },
};
const kernel = values(12, 1);
const bias = values(3, 2);

/** A graph model: x -> MatMul(W) -> BiasAdd(b), with W stored uint8 and b float16, over two shards. */
function graphModel(): { file: string; w: Float32Array } {
  const w = values(8 * 5, 7);
  const wq = encodeWeight(w, 'uint8');
  const bq = encodeWeight(values(5, 8), 'float16');
  const all = Buffer.concat([wq.bytes, bq.bytes]);
  const file = writeModel('graph', {
    format: 'graph-model',
    generatedBy: 'test',
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '8' }] } } } },
        { name: 'W', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' } } },
        { name: 'b', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' } } },
        { name: 'mm', op: 'MatMul', input: ['x', 'W'], attr: { transpose_a: { b: false }, transpose_b: { b: false } } },
        { name: 'y', op: 'BiasAdd', input: ['mm', 'b'] },
      ],
    },
    weightsManifest: [{
      paths: ['s1.bin', 's2.bin'],
      weights: [
        { name: 'W', shape: [8, 5], dtype: 'float32', quantization: wq.quantization },
        { name: 'b', shape: [5], dtype: 'float32', quantization: bq.quantization },
      ],
    }],
  }, { 's1.bin': all.subarray(0, 30), 's2.bin': all.subarray(30) });
  return { file, w };
}

describe('TF.js reader', () => {
  test('a layers model maps its weights to Keras layers, Dense kernel [in, out] with output axis 1', () => {
    const bytes = Buffer.concat([Buffer.from(kernel.buffer), Buffer.from(bias.buffer)]);
    const file = writeModel('dense', { modelTopology: denseTopology, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'dense/kernel', shape: [4, 3], dtype: 'float32' }, { name: 'dense/bias', shape: [3], dtype: 'float32' }] }] }, { 'w.bin': bytes });
    const m = TfjsModel.open(file);
    assert.equal(m.kind, 'layers');
    assert.deepEqual(m.inputs(), [{ name: 'dense', elemType: 1, shape: [null, 4] }]);
    const [l] = m.layers();
    assert.equal(l.name, 'dense');
    assert.equal(l.kind, 'gemm');
    assert.equal(l.outputAxis, 1);
    assert.deepEqual([...l.weight.toFloat32()], [...kernel]);
    assert.deepEqual([...l.bias!.toFloat32()], [...bias]);
  });

  test('a graph model over two shards: uint8 weight dequantized as q*scale+min, float16 bias, MatMul layer', () => {
    const { file, w } = graphModel();
    const m = TfjsModel.open(file);
    assert.equal(m.kind, 'graph');
    assert.deepEqual(m.inputs(), [{ name: 'x', elemType: 1, shape: [null, 8] }]);
    const layers = m.layers();
    assert.deepEqual(layers.map((l) => [l.name, l.op, l.kind, l.outputAxis]), [['mm', 'MatMul', 'matmul', 1], ['y', 'BiasAdd', 'other', 0]]);
    const got = layers[0].weight.toFloat32();
    const spec = m.weights().get('W')!.spec.quantization!;
    // Within half a quantization step of the original.
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(got[i] - w[i]) <= spec.scale! / 2 + 1e-7, `element ${i}: ${got[i]} vs ${w[i]}`);
  });

  test('read -> write (kept, float16, uint8, uint16) -> read gives identical dequantized weights', () => {
    const { file } = graphModel();
    const m = TfjsModel.open(file);
    for (const enc of ['float32', 'float16', 'uint8', 'uint16'] as const) {
      const out = path.join(dir, `rt-${enc}`, 'model.json');
      const r = writeTfjs(m, out, { encodings: { W: enc }, shardBytes: 16 });
      assert.equal(r.shards.length, Math.ceil(r.shards.reduce((a, s) => a + s.bytes, 0) / 16));
      const back = TfjsModel.open(out);
      assert.deepEqual([...back.weights().get('b')!.ref.toFloat32()], [...m.weights().get('b')!.ref.toFloat32()], 'kept weight');
      // Writing the re-read model again keeps every stored byte, so the dequantized values are identical.
      const again = writeTfjs(back, path.join(dir, `rt2-${enc}`, 'model.json'));
      const third = TfjsModel.open(again.file);
      for (const [name, wt] of back.weights()) assert.deepEqual([...third.weights().get(name)!.ref.toFloat32()], [...wt.ref.toFloat32()], `${enc} ${name}`);
      if (enc === 'float32') assert.deepEqual([...back.weights().get('W')!.ref.toFloat32()], [...m.weights().get('W')!.ref.toFloat32()]);
    }
  });

  test('never writes over the source', () => {
    const { file } = graphModel();
    const m = TfjsModel.open(file);
    assert.throws(() => writeTfjs(m, file), /overwrite the source/);
    // A written copy's shards are the next source: writing beside it under another name would replace them.
    const copy = TfjsModel.open(writeTfjs(m, path.join(dir, 'copy', 'model.json')).file);
    assert.throws(() => writeTfjs(copy, path.join(dir, 'copy', 'other.json')), /group1-shard1of1\.bin: writing here would overwrite the source/);
  });

  test('the LeNet layers model: 61,706 params in 5 layers, conv kernels with output axis 3', { skip: noSharedData }, async () => {
    const s = await inspectModel(lenet!);
    assert.equal(s.format, 'tfjs');
    assert.equal(s.params, 61706);
    assert.deepEqual(s.layers.map((l) => l.op), ['Conv2D', 'Conv2D', 'Dense', 'Dense', 'Dense']);
    assert.equal(s.outputs.length, 8);
    const m = TfjsModel.open(lenet!);
    assert.deepEqual(m.layers().map((l) => l.outputAxis), [3, 3, 1, 1, 1]);
  });

  test('LeNet uint8 round trip: identical dequantized weights on the second read', { skip: noSharedData }, () => {
    const m = TfjsModel.open(lenet!);
    const encodings = Object.fromEntries([...m.weights().keys()].map((k) => [k, 'uint8' as const]));
    const r = writeTfjs(m, path.join(dir, 'lenet8', 'model.json'), { encodings });
    const bytes = r.shards.reduce((a, s) => a + s.bytes, 0);
    assert.equal(bytes, 61706);
    for (const w of r.weights) assert.ok(w.sqnrDb! > 30, `${w.name} SQNR ${w.sqnrDb}`);
    const back = TfjsModel.open(r.file);
    const r2 = writeTfjs(back, path.join(dir, 'lenet8b', 'model.json'));
    const third = TfjsModel.open(r2.file);
    for (const [name, w] of back.weights()) assert.deepEqual(third.weights().get(name)!.ref.toFloat32(), w.ref.toFloat32(), name);
  });
});

describe('TF.js mutated-file corpus: exit 1 with one line', () => {
  const base = (): { json: Record<string, unknown>; bytes: Buffer } => {
    const bytes = Buffer.concat([Buffer.from(kernel.buffer), Buffer.from(bias.buffer)]);
    return { json: { modelTopology: denseTopology, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'dense/kernel', shape: [4, 3], dtype: 'float32' }, { name: 'dense/bias', shape: [3], dtype: 'float32' }] }] }, bytes };
  };
  const cases: Array<{ name: string; make: () => string; error: RegExp }> = [
    { name: 'truncated shard', make: () => { const b = base(); return writeModel('m-trunc', b.json, { 'w.bin': b.bytes.subarray(0, 40) }); }, error: /w\.bin: weight shards hold 40 bytes, but the weights listed in model\.json need 60/ },
    { name: 'shard too long', make: () => { const b = base(); return writeModel('m-long', b.json, { 'w.bin': Buffer.concat([b.bytes, Buffer.alloc(4)]) }); }, error: /hold 64 bytes, but the weights listed in model\.json take 60/ },
    { name: 'missing shard', make: () => writeModel('m-missing', base().json, {}), error: /w\.bin: weight shard listed in model\.json is missing/ },
    { name: 'broken JSON', make: () => { const f = writeModel('m-json', base().json, { 'w.bin': base().bytes }); fs.writeFileSync(f, fs.readFileSync(f, 'utf8').slice(0, 120)); return f; }, error: /model\.json: (malformed JSON|not a recognised model format)/ },
    { name: 'unknown dtype', make: () => { const b = base(); (b.json.weightsManifest as Array<{ weights: Array<{ dtype: string }> }>)[0].weights[0].dtype = 'float64'; return writeModel('m-dtype', b.json, { 'w.bin': b.bytes }); }, error: /weight 'dense\/kernel' has unknown dtype 'float64'/ },
    { name: 'unknown quantization dtype', make: () => { const b = base(); (b.json.weightsManifest as Array<{ weights: Array<Record<string, unknown>> }>)[0].weights[0].quantization = { dtype: 'int4', min: 0, scale: 1 }; return writeModel('m-qdtype', b.json, { 'w.bin': b.bytes }); }, error: /quantization dtype 'int4'/ },
    { name: 'path escaping the folder', make: () => { const b = base(); (b.json.weightsManifest as Array<{ paths: string[] }>)[0].paths = ['../escape.bin']; fs.writeFileSync(path.join(dir, 'escape.bin'), b.bytes); return writeModel('m-escape', b.json, {}); }, error: /shard path '\.\.\/escape\.bin' leaves the model's folder/ },
    { name: 'bad shape', make: () => { const b = base(); (b.json.weightsManifest as Array<{ weights: Array<{ shape: unknown }> }>)[0].weights[0].shape = [4, -3]; return writeModel('m-shape', b.json, { 'w.bin': b.bytes }); }, error: /has shape \[4,-3\]/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const file = c.make();
      assert.throws(() => TfjsModel.open(file), c.error);
      const r = run('inspect', file);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, c.error);
    });
  }
});

describe('TF.js eval and quantize through the CLI (LeNet, MNIST)', { skip: noSharedData }, () => {
  const manifest = (name: string, split: 't10k' | 'train') => {
    const file = path.join(dir, `${name}.dataset.json`);
    const mnist = path.join(sharedData ?? '', 'mnist');
    fs.writeFileSync(file, JSON.stringify({
      inputs: { input1: { idx: path.join(mnist, `${split}-images-idx3-ubyte.gz`), scale: 1 / 255 } },
      labels: { idx: path.join(mnist, `${split}-labels-idx1-ubyte.gz`) },
    }));
    return file;
  };
  const test10k = sharedData ? manifest('test', 't10k') : '';

  test('eval scores the last output: 97.64% on the 10,000 test images', () => {
    const r = run('eval', lenet!, '--data', test10k, '--json');
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.samples, 10000);
    assert.ok(Math.abs(out.accuracy - 0.9764) <= 0.001, `accuracy ${out.accuracy}`);
    assert.equal(out.output, 'dense_Dense3');
    assert.match(out.ep, /^tfjs-(wasm|cpu)$/);
    assert.ok(out.warnings.some((w: string) => /8 outputs; scoring the last/.test(w)));
    const other = run('eval', lenet!, '--data', test10k, '--output', 'nope', '--json');
    assert.equal(other.status, 1);
    assert.match(other.stderr, /no output named 'nope'/);
  });

  test('quantize --mode weight-only --bits 8: uint8 shards of 61,706 bytes, accuracy kept within 0.2 pt', () => {
    const out = path.join(dir, 'q8');
    const r = run('quantize', lenet!, '--mode', 'weight-only', '--bits', '8', '--data', test10k, '--out', out, '--json');
    assert.equal(r.status, 0, r.stderr);
    const q = JSON.parse(r.stdout);
    assert.equal(q.shards.length, 1);
    assert.equal(q.shards[0].bytes, 61706);
    assert.ok(Math.abs(q.metrics.accuracy.before - 0.9764) <= 0.001);
    assert.ok(q.metrics.accuracy.dropPt <= 0.2, `drop ${q.metrics.accuracy.dropPt}`);
    for (const l of q.layers) {
      assert.equal(l.encoding, 'uint8');
      assert.ok(l.sqnrDb > 35 && l.sqnrDb < 60, `${l.layer} ${l.sqnrDb}`);
    }
    for (const f of ['report.json', 'report.md', 'recipe.whittle.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
    // The written model reads back and evaluates the same as the run said.
    const e = JSON.parse(run('eval', q.output, '--data', test10k, '--json').stdout);
    assert.equal(e.accuracy, q.metrics.accuracy.after);
  });

  test('quantize --tfjs-dtype mix chosen on training images keeps the test drop within 0.2 pt', () => {
    const r = run('quantize', lenet!, '--tfjs-dtype', 'mix', '--max-drop', '0', '--calib-data', `${manifest('train', 'train')}#:2000`, '--data', test10k, '--out', path.join(dir, 'qmix'), '--json');
    assert.equal(r.status, 0, r.stderr);
    const q = JSON.parse(r.stdout);
    assert.ok(q.mix.tries.length >= 1);
    assert.deepEqual(q.layers.filter((l: { encoding: string }) => l.encoding === 'float16').map((l: { layer: string }) => l.layer), q.mix.tries[q.mix.tries.length - 1].float16);
    assert.ok(q.metrics.accuracy.dropPt <= 0.2, `drop ${q.metrics.accuracy.dropPt}`);
    assert.ok(q.sizeBytes.after < q.sizeBytes.before / 3);
  });

  test('prune --sparsity 0.5: exactly half of each layer zeroed (the smallest |w|), gzip shrinks, the written model scores what the run says', () => {
    const r = run('prune', lenet!, '--sparsity', '0.5', '--data', test10k, '--out', path.join(dir, 'p50'), '--json');
    assert.equal(r.status, 0, r.stderr);
    const q = JSON.parse(r.stdout);
    const source = TfjsModel.open(lenet!);
    const pruned = TfjsModel.open(q.output);
    for (const l of q.layers) {
      assert.equal(l.zeros, Math.round(l.params / 2), l.layer);
      // Every zeroed weight is no larger in magnitude than every kept one.
      const name = source.layers().find((x) => x.name === l.layer)!.weight.name;
      const before = source.weights().get(name)!.ref.toFloat32();
      const after = pruned.weights().get(name)!.ref.toFloat32();
      let maxCut = 0;
      let minKept = Infinity;
      before.forEach((v, i) => (after[i] === 0 ? (maxCut = Math.max(maxCut, Math.abs(v))) : (minKept = Math.min(minKept, Math.abs(v)))));
      assert.ok(maxCut <= minKept, `${l.layer}: cut ${maxCut} > kept ${minKept}`);
    }
    assert.ok(q.sizeBytes.gzip < q.sizeBytes.gzipBefore * 0.7, `gzip ${q.sizeBytes.gzip} vs ${q.sizeBytes.gzipBefore}`);
    const e = JSON.parse(run('eval', q.output, '--data', test10k, '--json').stdout);
    assert.equal(e.accuracy, q.metrics.accuracy.after);
    const wanda = run('prune', lenet!, '--sparsity', '0.5', '--method', 'wanda');
    assert.equal(wanda.status, 1);
    assert.match(wanda.stderr, /not available for TF\.js models yet/);
  });

  test('analyze sweeps each LeNet layer (prune and quant) with the ONNX metrics', () => {
    const r = run('analyze', lenet!, '--data', test10k, '--kind', 'both', '--sparsities', '0,0.9', '--bits', '8,2', '--limit', '256', '--no-cache', '--json');
    assert.equal(r.status, 0, r.stderr);
    const a = JSON.parse(r.stdout);
    assert.equal(a.baseline.samples, 256);
    assert.equal(a.baseline.metricName, 'accuracy drop');
    assert.match(a.ep, /^tfjs-/);
    assert.deepEqual([...a.ranking].sort(), ['conv2d_Conv2D1', 'conv2d_Conv2D2', 'dense_Dense1', 'dense_Dense2', 'dense_Dense3']);
    for (const l of a.layers) {
      assert.equal(l.prune[0].metric, 0, `${l.name} at sparsity 0 is the baseline`);
      assert.ok(Math.abs(l.quant[0].metric) <= 0.01, `${l.name} 8-bit drop ${l.quant[0].metric}`);
      assert.ok(l.quant[0].cosine > 0.999, `${l.name} 8-bit cosine ${l.quant[0].cosine}`);
      assert.ok(l.prune[1].cosine < l.quant[0].cosine, `${l.name}: 90% pruning moves the output more than 8 bits`);
    }
  });

  test('--mode static is refused for TF.js with one line', () => {
    const r = run('quantize', lenet!, '--mode', 'static');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /does not apply to TF\.js models/);
  });
});

describe('TF.js graph models of @vladmandic/human (npm devDependency)', () => {
  const models = humanModels();
  const skip = models.length ? false : 'skipped: @vladmandic/human is not installed';
  test('all load, inspect, and round-trip with identical dequantized weights; re-quantized ones run', { skip }, async () => {
    assert.ok(models.length >= 10, `${models.length} models`);
    const stored = new Set<string>();
    for (const file of models) {
      // Only the two smallest run here (the bench runs all): emotion (float32) and antispoof (float16).
      const name = path.basename(file, '.json');
      const forms = ['emotion', 'antispoof'].includes(name) ? (['uint8', 'float16'] as const) : ([] as const);
      const row = await humanRow(file, dir, [...forms]);
      assert.ok(row.roundTripIdentical, `${name}: round trip changed weights`);
      assert.ok(row.layers > 0 && row.params > 0, name);
      for (const k of Object.keys(row.stored)) stored.add(k);
      if (forms.length) {
        assert.ok((row.cosine.uint8 as number) > 0.999, `${name} uint8 cosine ${row.cosine.uint8}`);
        assert.ok((row.cosine.float16 as number) > 0.99999, `${name} float16 cosine ${row.cosine.float16}`);
      }
    }
    // The package covers TF.js's stored forms: float32, float16 and uint8 weights, and int32 constants.
    for (const k of ['float32', 'float16', 'uint8', 'int32']) assert.ok(stored.has(k), k);
  });
});

describe('TF.js backend fallback', { skip: noSharedData }, () => {
  test('without the .wasm files beside the bundle, eval runs on the cpu backend with a warning, and scores the same', () => {
    // A copy of the CLI and worker bundles in a folder with no .wasm files (inside the repo, so node_modules resolves).
    const bare = path.join(repoRoot, 'out', 'test', 'nowasm');
    fs.mkdirSync(bare, { recursive: true });
    for (const f of ['cli.js', 'worker.js']) fs.copyFileSync(path.join(repoRoot, 'dist', f), path.join(bare, f));
    const data = path.join(dir, 'fallback.dataset.json');
    const mnist = path.join(sharedData!, 'mnist');
    fs.writeFileSync(data, JSON.stringify({ inputs: { input1: { idx: path.join(mnist, 't10k-images-idx3-ubyte.gz'), scale: 1 / 255 } }, labels: { idx: path.join(mnist, 't10k-labels-idx1-ubyte.gz') }, limit: 300 }));
    const cpu = spawnSync(process.execPath, [path.join(bare, 'cli.js'), 'eval', lenet!, '--data', data, '--json'], { encoding: 'utf8' });
    assert.equal(cpu.status, 0, cpu.stderr);
    const c = JSON.parse(cpu.stdout);
    assert.equal(c.ep, 'tfjs-cpu');
    assert.ok(c.warnings.some((w: string) => /wasm backend unavailable: its \.wasm files were not found/.test(w)), c.warnings.join('; '));
    const wasm = JSON.parse(run('eval', lenet!, '--data', data, '--json').stdout);
    assert.equal(wasm.ep, 'tfjs-wasm');
    assert.equal(c.samples, 300);
    assert.equal(c.accuracy, wasm.accuracy);
  });
});
