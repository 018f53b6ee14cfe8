import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { InputError } from '../../src/core/errors';
import { runPrune, type PruneResult } from '../../src/core/passes/run';
import { accumulateGram, convOutput, im2col, sparsegptPrune, type ConvGeometry } from '../../src/core/passes/prune/sparsegpt';
import { checkNM, pruneNM } from '../../src/core/passes/prune/unstructured';
import { wandaPrune } from '../../src/core/passes/prune/wanda';
import { normal, seededRandom } from '../../src/core/random';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { resolveSpec } from '../../src/core/recipe/write';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-recovery-');

/** Correlated inputs X [n, d]: a few latent factors mixed in, per-feature scales from 0.1 to 3 (so ||x_j|| matters). */
function inputs(n: number, d: number, seed: number): Float32Array {
  const randn = normal(seededRandom(seed));
  const k = 8;
  const mix = Float64Array.from({ length: k * d }, () => randn());
  const scale = Float64Array.from({ length: d }, (_, j) => 0.1 + (2.9 * ((j * 7) % d)) / d);
  const x = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const z = Array.from({ length: k }, () => randn());
    for (let j = 0; j < d; j++) {
      let v = 0.3 * randn();
      for (let f = 0; f < k; f++) v += z[f] * mix[f * d + j];
      x[r * d + j] = scale[j] * v;
    }
  }
  return x;
}

/** ||WX - ŴX||² over the samples, W and Ŵ [rows, d], X [n, d]. */
function outputError(w: ArrayLike<number>, v: ArrayLike<number>, x: Float32Array, rows: number, d: number): number {
  const n = x.length / d;
  let e = 0;
  for (let s = 0; s < n; s++) {
    for (let r = 0; r < rows; r++) {
      let diff = 0;
      for (let j = 0; j < d; j++) diff += (w[r * d + j] - v[r * d + j]) * x[s * d + j];
      e += diff * diff;
    }
  }
  return e;
}

function gramOf(x: Float32Array, d: number): Float64Array {
  const h = new Float64Array(d * d);
  accumulateGram(h, d, x, x.length / d);
  const n = x.length / d;
  for (let i = 0; i < h.length; i++) h[i] *= 2 / n;
  return h;
}

/** Magnitude pruning of the whole matrix: the `zeros` smallest |w|, ties by position. */
function magnitude(w: Float32Array, zeros: number): Float32Array {
  const out = w.slice();
  const order = Array.from(w, (_, i) => i).sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]) || a - b);
  for (let i = 0; i < zeros; i++) out[order[i]] = 0;
  return out;
}

const zeroCount = (w: ArrayLike<number>) => Array.from(w).filter((v) => v === 0).length;

describe('SparseGPT reconstruction', () => {
  const rows = 24;
  const d = 96;
  const x = inputs(768, d, 5);
  const randn = normal(seededRandom(9));
  const w = Float32Array.from({ length: rows * d }, () => randn());
  const h = gramOf(x, d);
  const norms = Float64Array.from({ length: d }, (_, j) => {
    let s = 0;
    for (let r = 0; r < x.length / d; r++) s += x[r * d + j] ** 2;
    return Math.sqrt(s);
  });

  for (const sparsity of [0.5, 0.7]) {
    test(`at ${sparsity * 100}% the layer output error is well below magnitude and Wanda, and the sparsity is exact`, () => {
      const zeros = Math.round(sparsity * w.length);
      const gpt = Float64Array.from(w);
      // A small block size so the lazy updates across blocks are exercised too.
      assert.ok(sparsegptPrune(gpt, rows, d, h, { zeros, blockSize: 32 }));
      const mag = magnitude(w, zeros);
      const wanda = w.slice();
      wandaPrune(wanda, [rows, d], 'outIn', norms, sparsity);
      const eGpt = outputError(w, gpt, x, rows, d);
      const eMag = outputError(w, mag, x, rows, d);
      const eWanda = outputError(w, wanda, x, rows, d);
      process.stderr.write(`sparsegpt ${sparsity}: ||WX-ŴX||² gpt ${eGpt.toExponential(3)}, magnitude ${eMag.toExponential(3)}, wanda ${eWanda.toExponential(3)}\n`);
      assert.equal(zeroCount(gpt), zeros, 'exactly the requested zeros');
      assert.equal(zeroCount(mag), zeros);
      assert.ok(eGpt < 0.6 * eMag, `sparsegpt ${eGpt} vs magnitude ${eMag}`);
      assert.ok(eGpt < 0.6 * eWanda, `sparsegpt ${eGpt} vs wanda ${eWanda}`);
    });
  }

  test('2:4 along the input dimension: every group of 4 keeps at most 2, with less error than magnitude 2:4', () => {
    const gpt = Float64Array.from(w);
    assert.ok(sparsegptPrune(gpt, rows, d, h, { nm: [2, 4] }));
    const as32 = Float32Array.from(gpt);
    const check = checkNM(as32, [rows, d], 'outIn', 2, 4);
    assert.equal(check.groups, (rows * d) / 4);
    assert.equal(check.violations, 0);
    assert.equal(zeroCount(gpt), w.length / 2);
    const mag = w.slice();
    pruneNM(mag, [rows, d], 'outIn', 2, 4);
    assert.ok(outputError(w, gpt, x, rows, d) < 0.7 * outputError(w, mag, x, rows, d));
  });

  test('a dead input (H_ii = 0) gets its weights zeroed and the rest still solves, to the exact sparsity', () => {
    const xd = x.slice();
    for (let r = 0; r < xd.length / d; r++) {
      xd[r * d + 3] = 0;
      xd[r * d + 40] = 0;
    }
    const hd = gramOf(xd, d);
    assert.equal(hd[3 * d + 3], 0);
    const gpt = Float64Array.from(w);
    const zeros = Math.round(0.5 * w.length);
    assert.ok(sparsegptPrune(gpt, rows, d, hd, { zeros }));
    assert.ok(gpt.every(Number.isFinite));
    for (let r = 0; r < rows; r++) assert.equal(gpt[r * d + 3], 0);
    assert.equal(zeroCount(gpt), zeros);
    assert.ok(outputError(w, gpt, xd, rows, d) < 0.6 * outputError(w, magnitude(w, zeros), xd, rows, d));
  });

  // The Conv path rests on im2col: the conv output at every position must be its im2col row times the weight.
  const convCases: Array<{ name: string; geom: ConvGeometry; chw: [number, number, number]; out: number }> = [
    { name: 'stride 2, asymmetric pads, dilation 2, 2 groups', geom: { kernel: [3, 2], strides: [2, 1], pads: [1, 0, 2, 1], dilations: [2, 1], group: 2, autoPad: 'NOTSET' }, chw: [4, 9, 7], out: 6 },
    { name: 'SAME_UPPER, stride 2', geom: { kernel: [4, 3], strides: [2, 2], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, autoPad: 'SAME_UPPER' }, chw: [3, 8, 7], out: 5 },
    { name: 'SAME_LOWER', geom: { kernel: [2, 2], strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], group: 1, autoPad: 'SAME_LOWER' }, chw: [2, 5, 5], out: 3 },
  ];
  for (const c of convCases) {
    test(`im2col x W equals the ORT Conv output (${c.name})`, async () => {
      const r = normal(seededRandom(3));
      const [ch, hh, ww] = c.chw;
      const cg = ch / c.geom.group;
      const [kh, kw] = c.geom.kernel;
      const wt = Float32Array.from({ length: c.out * cg * kh * kw }, () => r());
      const bias = Float32Array.from({ length: c.out }, () => r());
      const xin = Float32Array.from({ length: ch * hh * ww }, () => r());
      const attrs: Record<string, number | number[] | string> = { group: c.geom.group, strides: c.geom.strides, dilations: c.geom.dilations, kernel_shape: c.geom.kernel };
      if (c.geom.autoPad === 'NOTSET') attrs.pads = c.geom.pads;
      else attrs.auto_pad = c.geom.autoPad;
      const file = path.join(dir, `conv-${c.name.replace(/\W+/g, '_')}.onnx`);
      const g = graph('g', [node('Conv', ['x', 'w', 'b'], ['y'], attrs)], [valueInfo('x', 1, [1, ch, hh, ww])], [valueInfo('y', 1, [1, c.out, 'h', 'w'])], [floatTensor('w', [c.out, cg, kh, kw], wt), floatTensor('b', [c.out], bias)]);
      fs.writeFileSync(file, encodeModel(model(g, 13)));
      const session = await ort.InferenceSession.create(file);
      const y = (await session.run({ x: new ort.Tensor('float32', xin, [1, ch, hh, ww]) })).y;
      await session.release();
      const { out } = convOutput(c.geom, [hh, ww]);
      assert.deepEqual(y.dims, [1, c.out, out[0], out[1]]);
      const yd = y.data as Float32Array;
      const d = cg * kh * kw;
      const og = c.out / c.geom.group;
      let worst = 0;
      for (let grp = 0; grp < c.geom.group; grp++) {
        const { cols, positions, d: dd } = im2col(xin, c.chw, c.geom, grp);
        assert.equal(dd, d);
        assert.equal(positions, out[0] * out[1]);
        for (let o = grp * og; o < (grp + 1) * og; o++) {
          for (let p = 0; p < positions; p++) {
            let v = bias[o];
            for (let j = 0; j < d; j++) v += cols[p * d + j] * wt[o * d + j];
            worst = Math.max(worst, Math.abs(v - yd[o * positions + p]));
          }
        }
      }
      assert.ok(worst < 1e-4, `worst difference ${worst}`);
    });
  }
});

/** A fresh copy of mnist-8 in its own folder (run folders are written beside the model). */
function mnist8(name: string): string {
  const file = path.join(dir, name, 'mnist.onnx');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.copyFileSync(path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx'), file);
  return file;
}

describe('prune with --method sparsegpt, --calib-data and --max-drop (mnist-8)', () => {
  const images = sharedData ? path.join(sharedData, 'mnist/t10k-images-idx3-ubyte.gz') : '';
  const cli = path.join(repoRoot, 'dist', 'cli.js');

  test('SparseGPT at 70% calibrated on 300 images keeps far more accuracy than magnitude on 1,000 others', { skip: noSharedData }, async () => {
    const source = mnist8('gpt70');
    const before = fs.readFileSync(source);
    const common = { model: source, sparsity: 0.7, data: `${images}#1000:2000`, calibData: `${images}#:300` };
    const gpt = await runPrune({ ...common, method: 'sparsegpt' });
    const mag = await runPrune({ ...common });
    const drop = (r: PruneResult) => r.metrics.accuracy!.dropPt;
    process.stderr.write(`mnist-8 70% on #1000:2000: sparsegpt ${drop(gpt)} pt, magnitude ${drop(mag)} pt\n`);
    assert.equal(gpt.metrics.before.samples, 1000);
    for (const l of gpt.layers) assert.equal(l.zeros, Math.round(0.7 * l.params), `${l.layer}: the per-layer sparsity is exact`);
    assert.equal(gpt.warnings.filter((w) => /instead of SparseGPT/.test(w)).length, 0, 'every layer (the Reshape-fed MatMul included) was reconstructed');
    assert.ok(drop(gpt) < 0.5 * drop(mag), `sparsegpt ${drop(gpt)} pt vs magnitude ${drop(mag)} pt`);
    assert.equal(gpt.calibData, `${images}#:300`);
    assert.match(gpt.data, /#1000:2000$/);
    const recipe = JSON.parse(fs.readFileSync(gpt.recipe, 'utf8')) as { passes: Array<Record<string, unknown>> };
    assert.equal(recipe.passes[0].method, 'sparsegpt');
    assert.equal(resolveSpec(recipe.passes[0].calibData as string, path.dirname(gpt.recipe)), `${images}#:300`, 'data paths are relative to the recipe');
    assert.match(fs.readFileSync(path.join(path.dirname(gpt.output), 'report.md'), 'utf8'), /calibration: .*#:300/);
    assert.ok(before.equals(fs.readFileSync(source)), 'the source is unchanged');
  });

  test('the CLI: --method sparsegpt --pattern 2:4 --calib-data writes a model whose groups of 4 keep at most 2', { skip: noSharedData }, () => {
    const source = mnist8('gpt24');
    const r = spawnSync(process.execPath, [cli, 'prune', source, '--method', 'sparsegpt', '--pattern', '2:4', '--data', `${images}#1000:1500`, '--calib-data', `${images}#:200`, '--json'], { encoding: 'utf8', env: { ...process.env, WHITTLE_DEBUG: '' } });
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim()) as PruneResult;
    assert.equal(res.calibData, `${images}#:200`);
    assert.ok(res.metrics.accuracy!.dropPt < 2, `2:4 sparsegpt drop ${res.metrics.accuracy!.dropPt}`);
    const m = OnnxModel.open(res.output);
    try {
      const pruned = m.layers().filter((l) => res.layers.some((x) => x.layer === l.name));
      assert.equal(pruned.length, 2, 'conv1 (1 input channel) is skipped, conv2 and the MatMul pruned');
      for (const l of pruned) {
        const layout = l.outputAxis === 0 ? 'outIn' : 'inOut';
        const c = checkNM(l.weight.toFloat32(), l.weight.shape, layout, 2, 4);
        assert.ok(c.groups > 0 && c.violations === 0, `${l.name}: ${JSON.stringify(c)}`);
      }
    } finally {
      m.close();
    }
    const help = spawnSync(process.execPath, [cli, 'prune', '--help'], { encoding: 'utf8' });
    assert.match(help.stdout + help.stderr, /--calib-data SPEC/);
    assert.match(help.stdout + help.stderr, /--max-drop PT/);
  });

  test('--max-drop: bisects on the overall sparsity, every try evaluated, and writes the best one within budget', { skip: noSharedData }, async () => {
    process.env.WHITTLE_CACHE_DIR = path.join(dir, 'cache');
    try {
      const source = mnist8('budget');
      const r = await runPrune({ model: source, scope: 'sensitivity', maxDrop: 0.5, sparsity: 0.9, data: `${images}#1000:2000`, calibData: `${images}#:500` });
      process.stderr.write(`--max-drop 0.5: ${JSON.stringify(r.budget)} final drop ${r.metrics.accuracy!.dropPt}\n`);
      const b = r.budget!;
      assert.equal(b.maxDropPt, 0.5);
      assert.equal(b.metric, 'accuracy');
      assert.ok(b.tries.length >= 2 && b.tries.length <= 7, `${b.tries.length} tries`);
      assert.equal(b.tries[0].sparsity, 0.9, 'the upper bound is tried first');
      const passing = b.tries.filter((t) => t.dropPt <= 0.5);
      assert.ok(passing.length > 0);
      assert.equal(b.chosen, Math.max(...passing.map((t) => t.sparsity)), 'the best passing try is written');
      assert.ok(b.tries.some((t) => t.dropPt > 0.5 && t.sparsity > b.chosen), 'a failing try bounds it from above');
      assert.ok(Math.abs(r.sparsity - b.chosen) < 2e-3, `written sparsity ${r.sparsity} vs chosen ${b.chosen}`);
      assert.ok(r.metrics.accuracy!.dropPt <= 0.5, `the written model drops ${r.metrics.accuracy!.dropPt} pt`);
      assert.equal(JSON.parse(fs.readFileSync(r.recipe, 'utf8')).passes[0].sparsity, b.chosen);
      assert.match(fs.readFileSync(path.join(path.dirname(r.output), 'report.md'), 'utf8'), /Metric budget: at most 0.5 pt/);
      assert.ok(!fs.existsSync(path.join(path.dirname(r.output), '.budget')), 'the tries are cleaned up');
    } finally {
      delete process.env.WHITTLE_CACHE_DIR;
    }
  });

  test('--max-drop refuses --pattern, and errors (writing nothing) when no try meets the budget', { skip: noSharedData }, async () => {
    const source = mnist8('budget-miss');
    await assert.rejects(runPrune({ model: source, maxDrop: 1, pattern: '2:4', data: `${images}#:100` }), (e: unknown) => e instanceof InputError && /--pattern 2:4 fixes it/.test(e.message));
    // Every layer at least 90%: no overall sparsity the search can try keeps the drop within 0.05 pt.
    await assert.rejects(runPrune({ model: source, scope: 'global', minSparsity: 0.9, maxDrop: 0.05, data: `${images}#:300` }), (e: unknown) => e instanceof InputError && /no sparsity tried kept the accuracy drop within 0.05 pt/.test(e.message));
    const runs = path.join(path.dirname(source), 'mnist.whittle');
    assert.deepEqual(fs.existsSync(runs) ? fs.readdirSync(runs) : [], [], 'no run folder left behind');
  });
});
