import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { tensorHistogram } from '../src/core/analysis/histogram';
import { analyze, magnitudePrune, sortedMagnitudes } from '../src/core/analysis/sensitivity';
import { tileOf } from '../src/core/analysis/tiles';
import { encodeModel } from '../src/core/formats/onnx/build';
import { writeMlp } from './lib/mlp';
import { replaceTensorData } from '../src/core/formats/onnx/edit';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { TensorRef } from '../src/core/model/tensorRef';
import { normal, seededRandom } from '../src/core/random';
import { openSession } from '../src/core/runtime/session';

/**
 * The Identification feature's costs, in one process; prints one JSON object.
 *   sweep: the per-variant cost of a sensitivity sweep on a generated ~67 MB MLP, three ways:
 *     rebuild:  replace the layer's weights, re-encode, create a session, run, release (a session per variant);
 *     fed:      one session with every studied weight as a graph input (as analyze opens it), one run per variant;
 *     analyze:  the whole analyze() call (data, baseline, pruning the weights, runs) divided by its variants.
 *   histogram: tensorHistogram throughput over 100M float32 weights (two streaming passes), in GB/s of float32.
 *   tile: a 256 x 256 overview (stride 16) of a 4096 x 4096 weight, in ms.
 *   node out/bench/sensitivity.js [variants=6]
 */
async function main(): Promise<void> {
  const variants = Number(process.argv[2] ?? 6);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-sens-'));
  try {
    const hidden = 2048;
    const layers = 4; // 4 x 2048 x 2048 float32 = 67 MB
    const file = path.join(dir, 'mlp.onnx');
    writeMlp(file, layers, hidden);
    const randn = normal(seededRandom(12));
    const batch = 8;
    const x = new ort.Tensor('float32', Float32Array.from({ length: batch * hidden }, () => randn()), [batch, hidden]);
    const threads = Math.max(1, os.availableParallelism() - 1);
    const target = 'w2';

    const base = OnnxModel.open(file);
    const original = (base.weights().get(target)!.ref.read() as Float32Array).slice();
    const sorted = sortedMagnitudes(original);
    const datas = Array.from({ length: variants }, (_, k) => {
      const out = new Float32Array(original.length);
      magnitudePrune(original, sorted, (k + 1) / (variants + 1), out);
      return out;
    });

    // A session per variant: rebuild, create, run, release.
    const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, logSeverityLevel: 4 };
    const rebuildMs: number[] = [];
    for (const data of datas) {
      const t0 = performance.now();
      replaceTensorData(base.graph, target, data);
      const session = await ort.InferenceSession.create(encodeModel(base.proto), options);
      await session.run({ x });
      await session.release();
      rebuildMs.push(performance.now() - t0);
    }
    replaceTensorData(base.graph, target, original);
    base.close();

    // One session, every weight fed (as analyze opens it).
    const m = OnnxModel.open(file);
    const t1 = performance.now();
    const fed = await openSession(m, { ep: 'cpu', weightInputs: Array.from({ length: layers }, (_, i) => `w${i}`), threads });
    const createMs = performance.now() - t1;
    const feeds = { x, ...fed.weightFeeds };
    await fed.session.run(feeds);
    const fedMs: number[] = [];
    for (const data of datas) {
      const t0 = performance.now();
      await fed.session.run({ ...feeds, [target]: new ort.Tensor('float32', data, [hidden, hidden]) });
      fedMs.push(performance.now() - t0);
    }
    await fed.release();
    m.close();

    // The whole analyze() call: 8 random samples, one batch per variant.
    const levels = Array.from({ length: variants }, (_, k) => (k + 1) / (variants + 1));
    const t2 = performance.now();
    const result = await analyze({ model: file, data: 'random', kind: 'prune', limit: batch, seed: 1, ep: 'cpu', sparsities: levels });
    const analyzeMs = performance.now() - t2;
    const analyzeVariants = result.layers.length * levels.length;

    // Histogram throughput over 100M weights.
    const n = 100_000_000;
    const values = new Float32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) | 0;
      values[i] = (s >> 8) / 8388608;
    }
    const ref = new TensorRef('big', 1, [10_000, 10_000], { kind: 'bytes', bytes: new Uint8Array(values.buffer) });
    tensorHistogram(new TensorRef('warm', 1, [100, 10_000], { kind: 'bytes', bytes: new Uint8Array(values.buffer, 0, 4_000_000) }), 0);
    const t3 = performance.now();
    const h = tensorHistogram(ref, 0, 64);
    const histSec = (performance.now() - t3) / 1000;

    const tileRef = new TensorRef('tile', 1, [4096, 4096], { kind: 'bytes', bytes: new Uint8Array(values.buffer, 0, 4096 * 4096 * 4) });
    const t4 = performance.now();
    tileOf(tileRef, 0, 0, 0, 256, 256, 16);
    const tileMs = performance.now() - t4;
    const tileRefT = new TensorRef('tileT', 1, [4096, 4096], { kind: 'bytes', bytes: new Uint8Array(values.buffer, 0, 4096 * 4096 * 4) });
    const t5 = performance.now();
    tileOf(tileRefT, 1, 0, 0, 256, 256, 16);
    const tileTMs = performance.now() - t5;

    const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
    const r1 = (v: number) => +v.toFixed(1);
    console.log(
      JSON.stringify({
        model: { layers, hidden, fileMB: r1(fs.statSync(file).size / 1e6), batch, variants, threads },
        medianMs: { rebuildPerVariant: r1(median(rebuildMs)), fedPerVariant: r1(median(fedMs)), analyzePerVariant: r1(analyzeMs / analyzeVariants), fedSessionCreate: r1(createMs) },
        ratios: { rebuildVsFed: r1(median(rebuildMs) / median(fedMs)), rebuildVsAnalyze: r1(median(rebuildMs) / (analyzeMs / analyzeVariants)) },
        histogram: { weights: n, seconds: +histSec.toFixed(3), gbPerSec: +((n * 4) / 1e9 / histSec).toFixed(2), checkCount: h.counts.reduce((a, b) => a + b, 0) === n },
        tile4096: { overviewMs: r1(tileMs), transposedOverviewMs: r1(tileTMs) },
      }),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
