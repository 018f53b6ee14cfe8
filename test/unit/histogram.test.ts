import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { layerHistogram, percentileBins, tensorHistogram } from '../../src/core/analysis/histogram';
import { tensorTile, tileOf } from '../../src/core/analysis/tiles';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { TensorRef } from '../../src/core/model/tensorRef';
import { normal, seededRandom } from '../../src/core/random';
import { ModelCache } from '../../src/core/worker/modelCache';
import { tempDir } from './helpers/paths';

/** Unit tier: weight histograms, per-channel ranges, heatmap tiles and the worker's model cache. */

const randn = normal(seededRandom(5));
const seeded = (n: number, zeroEvery = 0) => Float32Array.from({ length: n }, (_, i) => (zeroEvery && i % zeroEvery === 0 ? 0 : randn() * 0.1 + 0.01));

/** A model with a Gemm (transB=1), a Gemm (transB=0), a Conv and a MatMul, whose weights are given. */
function layered(w: { gemmT: Float32Array; gemm: Float32Array; conv: Float32Array; matmul: Float32Array; convT?: Float32Array }): OnnxModel {
  const inits = [
    floatTensor('gT.w', [6, 10], w.gemmT),
    floatTensor('g.w', [10, 6], w.gemm),
    floatTensor('c.w', [4, 2, 3, 3], w.conv),
    floatTensor('m.w', [7, 5], w.matmul),
    floatTensor('ct.w', [2, 3, 2, 2], w.convT ?? new Float32Array(24)),
  ];
  const nodes = [
    node('Gemm', ['x', 'gT.w'], ['a'], { transB: 1 }, 'gemmT'),
    node('Gemm', ['x', 'g.w'], ['b'], {}, 'gemm'),
    node('Conv', ['img', 'c.w'], ['c'], {}, 'conv'),
    node('MatMul', ['y', 'm.w'], ['d'], {}, 'matmul'),
    node('ConvTranspose', ['img2', 'ct.w'], ['e'], {}, 'convT'),
  ];
  const g = graph('g', nodes, [valueInfo('x', 1, [1, 10]), valueInfo('img', 1, [1, 2, 5, 5]), valueInfo('y', 1, [1, 7]), valueInfo('img2', 1, [1, 2, 3, 3])],
    [valueInfo('a', 1, [1, 6]), valueInfo('b', 1, [1, 6]), valueInfo('c', 1, [1, 4, 3, 3]), valueInfo('d', 1, [1, 5]), valueInfo('e', 1, [1, 3, 4, 4])], inits);
  return OnnxModel.fromBytes(encodeModel(model(g, 13)), 'layered.onnx');
}

/** Per-channel min, max, L1, L2 the slow way: element (o, c, i) of [outer, channels, inner]. */
function naiveChannels(values: Float32Array, shape: number[], axis: number) {
  const C = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = { min: Array(C).fill(Infinity), max: Array(C).fill(-Infinity), l1: Array(C).fill(0), l2: Array(C).fill(0) };
  values.forEach((v, i) => {
    const c = Math.floor(i / inner) % C;
    out.min[c] = Math.min(out.min[c], v);
    out.max[c] = Math.max(out.max[c], v);
    out.l1[c] += Math.abs(v);
    out.l2[c] += v * v;
  });
  out.l2 = out.l2.map(Math.sqrt);
  return out;
}

function close(a: number[], b: number[], tol: number, what: string) {
  assert.equal(a.length, b.length, what);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= tol * (1 + Math.abs(b[i])), `${what}[${i}]: ${x} vs ${b[i]}`));
}

describe('layerHistogram', () => {
  const w = { gemmT: seeded(60, 7), gemm: seeded(60), conv: seeded(72, 5), matmul: seeded(35) };
  const m = layered(w);

  test('counts sum to the element count and match a naive binning; moments and sparsity match', () => {
    const h = layerHistogram(m, 'gemmT', undefined, 7);
    const v = Array.from(w.gemmT);
    const [min, max] = [Math.min(...v), Math.max(...v)];
    const naive = Array(7).fill(0);
    for (const x of v) naive[Math.min(6, Math.floor((x - min) * (7 / (max - min))))]++;
    assert.deepEqual(h.counts, naive);
    assert.equal(h.counts.reduce((a, b) => a + b, 0), 60);
    assert.equal(h.edges.length, 8);
    assert.equal(h.edges[0], min);
    assert.equal(h.edges[7], max);
    assert.equal(h.min, min);
    assert.equal(h.max, max);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    assert.ok(Math.abs(h.mean - mean) < 1e-12);
    assert.ok(Math.abs(h.std - Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length)) < 1e-12);
    assert.ok(Math.abs(h.absMean - v.reduce((a, b) => a + Math.abs(b), 0) / v.length) < 1e-12);
    assert.equal(h.sparsity, v.filter((x) => x === 0).length / 60);
    assert.equal(h.tensor, 'gT.w');
    assert.deepEqual(h.shape, [6, 10]);
  });

  test('per-channel ranges and norms follow the layer output axis (Gemm transB=1: 0, transB=0: 1, Conv: 0, MatMul: 1)', () => {
    for (const [layer, values, shape, axis] of [
      ['gemmT', w.gemmT, [6, 10], 0],
      ['gemm', w.gemm, [10, 6], 1],
      ['conv', w.conv, [4, 2, 3, 3], 0],
      ['matmul', w.matmul, [7, 5], 1],
    ] as const) {
      const h = layerHistogram(m, layer);
      assert.equal(h.channels.axis, axis, layer);
      const n = naiveChannels(values, [...shape], axis);
      close(h.channels.min, n.min, 0, `${layer} min`);
      close(h.channels.max, n.max, 0, `${layer} max`);
      close(h.channels.l1, n.l1, 1e-12, `${layer} l1`);
      close(h.channels.l2, n.l2, 1e-12, `${layer} l2`);
    }
  });

  test('channel runs that cross streaming chunks, and percentiles within the fine-bin resolution', () => {
    const n = 3 * 700_001; // not a multiple of the 2^20 chunk
    const values = Float32Array.from({ length: n }, () => randn());
    const ref = new TensorRef('big', 1, [3, 700_001], { kind: 'bytes', bytes: new Uint8Array(values.buffer) });
    const h = tensorHistogram(ref, 0, 64);
    assert.equal(h.counts.reduce((a, b) => a + b, 0), n);
    const nv = naiveChannels(values, [3, 700_001], 0);
    close(h.channels.l1, nv.l1, 1e-9, 'l1');
    close(h.channels.l2, nv.l2, 1e-9, 'l2');
    close(h.channels.min, nv.min, 0, 'min');
    const sorted = Float64Array.from(values).sort();
    const res = (h.max - h.min) / percentileBins;
    for (const [k, q] of [['p1', 0.01], ['p50', 0.5], ['p99', 0.99]] as const) {
      const exact = sorted[Math.round(q * (n - 1))];
      assert.ok(Math.abs(h.percentiles[k] - exact) <= res, `${k}: ${h.percentiles[k]} vs ${exact} (resolution ${res})`);
    }
  });

  test('NaN and infinities are left out; a constant tensor has one full bin', () => {
    const ref = new TensorRef('t', 1, [5], { kind: 'values', values: [1, NaN, 1, Infinity, 1] });
    const h = tensorHistogram(ref, 0, 4);
    assert.deepEqual(h.counts, [3, 0, 0, 0]);
    assert.equal(h.min, 1);
    assert.equal(h.std, 0);
    assert.equal(h.percentiles.p50, 1);
  });

  test('a bias by role, and unknown names are input errors', () => {
    assert.throws(() => layerHistogram(m, 'nope'), /no layer or weight named 'nope'/);
    assert.throws(() => layerHistogram(m, 'gemmT', 'bias'), /has no tensor 'bias'/);
    assert.equal(layerHistogram(m, 'c.w').layer, 'conv');
  });
});

describe('tensorTile', () => {
  // Matrix M[r][c] = r * 100 + c, 5 x 7: stored as is for Gemm transB=1, transposed ([7, 5]) for MatMul.
  const M = (r: number, c: number) => r * 100 + c;
  const rowMajor = new Float32Array(35).map((_, i) => M(Math.floor(i / 7), i % 7));
  const colMajor = new Float32Array(35).map((_, i) => M(i % 5, Math.floor(i / 5)));
  const convT = new Float32Array(24).map((_, i) => i);
  const m = OnnxModel.fromBytes(
    encodeModel(model(graph('t', [node('Gemm', ['x', 'a'], ['y'], { transB: 1 }, 'fc'), node('MatMul', ['x2', 'b'], ['y2'], {}, 'mm'), node('ConvTranspose', ['i', 'ct'], ['o'], {}, 'ct')],
      [valueInfo('x', 1, [1, 7]), valueInfo('x2', 1, [1, 7]), valueInfo('i', 1, [1, 2, 3, 3])], [valueInfo('y', 1, [1, 5]), valueInfo('y2', 1, [1, 5]), valueInfo('o', 1, [1, 3, 4, 4])],
      [floatTensor('a', [5, 7], rowMajor), floatTensor('b', [7, 5], colMajor), floatTensor('ct', [2, 3, 2, 2], convT)]), 13)),
    'tiles.onnx',
  );

  test('a stride-1 tile is the matrix itself; MatMul weights are viewed transposed', () => {
    for (const name of ['a', 'b', 'fc', 'mm']) {
      const t = tensorTile(m, name, 1, 2, 3, 4, 1);
      assert.equal(t.matrixRows, 5, name);
      assert.equal(t.matrixCols, 7, name);
      assert.deepEqual(Array.from(new Float32Array(t.values)), [102, 103, 104, 105, 202, 203, 204, 205, 302, 303, 304, 305], name);
      assert.equal(t.min, 0);
      assert.equal(t.max, 406);
    }
  });

  test('stride > 1 gives block means, clipped at the edges', () => {
    for (const name of ['a', 'b']) {
      const t = tensorTile(m, name, 0, 0, 10, 10, 2);
      assert.equal(t.rows, 3);
      assert.equal(t.cols, 4);
      const want: number[] = [];
      for (let y = 0; y < 3; y++) {
        for (let x = 0; x < 4; x++) {
          const cells: number[] = [];
          for (let r = 2 * y; r < Math.min(5, 2 * y + 2); r++) for (let c = 2 * x; c < Math.min(7, 2 * x + 2); c++) cells.push(M(r, c));
          want.push(cells.reduce((p, q) => p + q, 0) / cells.length);
        }
      }
      assert.deepEqual(Array.from(new Float32Array(t.values)), want, name);
    }
  });

  test('ConvTranspose [in, out, kh, kw]: rows are axis 1, columns (in, kh, kw) flattened', () => {
    const t = tensorTile(m, 'ct', 0, 0, 3, 8, 1);
    assert.equal(t.matrixRows, 3);
    assert.equal(t.matrixCols, 8);
    const v = Array.from(new Float32Array(t.values));
    for (let r = 0; r < 3; r++) for (let c = 0; c < 8; c++) assert.equal(v[r * 8 + c], Math.floor(c / 4) * 12 + r * 4 + (c % 4));
  });

  test("mode 'mask' gives the kept (nonzero) fraction of each block, in [0, 1], for stored and transposed views", () => {
    // M[0][0] = 0 is the only zero.
    for (const name of ['a', 'b']) {
      const one = tensorTile(m, name, 0, 0, 2, 3, 1, 'mask');
      assert.deepEqual(Array.from(new Float32Array(one.values)), [0, 1, 1, 1, 1, 1], name);
      assert.equal(one.min, 0);
      assert.equal(one.max, 1);
      assert.equal(one.mode, 'mask');
      const two = tensorTile(m, name, 0, 0, 10, 10, 2, 'mask');
      const v = Array.from(new Float32Array(two.values));
      assert.equal(v[0], 0.75, name);
      assert.ok(v.slice(1).every((x) => x === 1), name);
    }
    // The default stays the values view, with no mode in the reply.
    assert.equal(tensorTile(m, 'a', 0, 0, 1, 1, 1).mode, undefined);
    assert.throws(() => tensorTile(m, 'a', 0, 0, 1, 1, 1, 'zeros' as 'mask'), /mode/);
  });

  test('bad coordinates are input errors', () => {
    assert.throws(() => tensorTile(m, 'a', 5, 0, 1, 1, 1), /outside/);
    assert.throws(() => tensorTile(m, 'a', 0, 0, 1, 1, 0), /stride/);
  });

  test('a 256 x 256 overview of a 4096 x 4096 weight takes well under 1 s', () => {
    const n = 4096 * 4096;
    const values = new Float32Array(n);
    for (let i = 0; i < n; i += 97) values[i] = i % 1000;
    const ref = new TensorRef('huge', 1, [4096, 4096], { kind: 'bytes', bytes: new Uint8Array(values.buffer) });
    const t0 = performance.now();
    const t = tileOf(ref, 0, 0, 0, 256, 256, 16);
    const ms = performance.now() - t0;
    assert.equal(t.rows, 256);
    assert.equal(t.cols, 256);
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    const refT = new TensorRef('hugeT', 1, [4096, 4096], { kind: 'bytes', bytes: new Uint8Array(values.buffer) });
    const t1 = performance.now();
    tileOf(refT, 1, 0, 0, 256, 256, 16);
    assert.ok(performance.now() - t1 < 1000, 'transposed view');
  });
});

describe('ModelCache', () => {
  test('reuses an unchanged file, reopens a changed one, and keeps at most two', () => {
    const dir = tempDir();
    const write = (name: string, seed: number) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, encodeModel(model(graph('g', [node('Gemm', ['x', 'w'], ['y'], { transB: 1 }, 'fc')], [valueInfo('x', 1, [1, 2])], [valueInfo('y', 1, [1, 2])], [floatTensor('w', [2, 2], [seed, 1, 2, 3])]), 13)));
      return file;
    };
    const cache = new ModelCache(2);
    const a = write('a.onnx', 0);
    const first = cache.get(a);
    assert.equal(cache.get(a), first);
    const b = write('b.onnx', 1);
    const c = write('c.onnx', 2);
    cache.get(b);
    cache.get(c);
    assert.equal(cache.size, 2);
    assert.notEqual(cache.get(a), first, 'evicted, so opened again');
    const later = new Date(Date.now() + 5000);
    write('a.onnx', 9);
    fs.utimesSync(a, later, later);
    assert.equal(layerHistogram(cache.get(a), 'fc').min, 1);
    assert.equal(cache.size, 2);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.throws(() => cache.get(path.join(dir, 'missing.onnx')), /does not exist/);
  });
});
