import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { interleave } from './lib/interleave';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { isParameter } from '../src/core/formats/onnx/model';
import { writeOnnx } from '../src/core/formats/onnx/write';
import { parseParams } from '../src/core/passes/pass';
import { prunePass, type PruneOptions } from '../src/core/passes/prune/unstructured';
import { normal, seededRandom } from '../src/core/random';
import { buildResnetLike, resnetLikeInput } from '../src/core/samples/resnetLike';

/**
 * Structured channel pruning, measured: the generated ResNet-style CNN and ultraface (when ../shared/data is
 * there) lose 30% of the channels of every prunable group (L1 importance); the original and the pruned model
 * are then timed in this process on onnxruntime-node CPU, alternating, on the same input (warm-up, then
 * medians). Prints one JSON object per model with parameters, file sizes and the latency ratio pruned/original.
 * Each model is pruned twice: with --channel-multiple 1 and 8 (onnxruntime's blocked NCHWc conv kernels want
 * channel counts in multiples of 8, so odd counts can cost more than the removed work saves).
 *   node out/bench/structuredPrune.js [runs=200] [sparsity=0.3]
 */
async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 200);
  const sparsity = Number(process.argv[3] ?? 0.3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-structured-'));
  try {
    const cnn = path.join(dir, 'cnn.onnx');
    fs.writeFileSync(cnn, buildResnetLike());
    const models: Array<{ name: string; file: string; input: string; shape: number[] }> = [{ name: 'generated ResNet-style CNN', file: cnn, input: 'input', shape: resnetLikeInput }];
    const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
    const ultraface = path.join(shared, 'models', 'onnx-ultraface-rfb-320', 'Ultraface_version-RFB-320.onnx');
    if (fs.existsSync(ultraface)) models.push({ name: 'ultraface RFB-320', file: ultraface, input: 'input', shape: [1, 3, 240, 320] });
    else process.stderr.write(`ultraface not found at ${ultraface}; only the generated CNN is measured\n`);
    for (const m of models) {
      for (const multiple of [1, 8]) {
        const out = path.join(dir, `${path.basename(m.file, '.onnx')}-pruned-${multiple}.onnx`);
        process.stdout.write(JSON.stringify(await measure(m, out, runs, sparsity, multiple)) + '\n');
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function params(file: string): number {
  const m = OnnxModel.open(file);
  try {
    return [...m.weights().values()].filter((w) => w.ref.numeric && isParameter(w.ref)).reduce((a, w) => a + w.ref.count, 0);
  } finally {
    m.close();
  }
}

async function measure(m: { name: string; file: string; input: string; shape: number[] }, out: string, runs: number, sparsity: number, channelMultiple: number): Promise<Record<string, unknown>> {
  const model = OnnxModel.open(m.file);
  const t0 = performance.now();
  const report = await prunePass.apply(model, parseParams<PruneOptions>(prunePass.params, { structured: 'channels', sparsity, channelMultiple }), { warnings: [] });
  const pruneMs = performance.now() - t0;
  writeOnnx(model, out);
  model.close();

  const threads = Math.max(1, os.availableParallelism() - 1);
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, logSeverityLevel: 4 };
  const [a, b] = [await ort.InferenceSession.create(m.file, options), await ort.InferenceSession.create(out, options)];
  const randn = normal(seededRandom(5));
  const feeds = { [m.input]: new ort.Tensor('float32', Float32Array.from({ length: m.shape.reduce((x, y) => x * y, 1) }, randn), m.shape) };
  const { a: ta, b: tb } = await interleave(a, b, feeds, runs, 20);
  await a.release();
  await b.release();
  const median = (x: number[]) => {
    const s = [...x].sort((p, q) => p - q);
    return s[s.length >> 1];
  };
  const [pa, pb] = [params(m.file), params(out)];
  const [sa, sb] = [fs.statSync(m.file).size, fs.statSync(out).size];
  const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
  return {
    model: m.name,
    sparsity,
    channelMultiple,
    groups: { pruned: report.structured!.groups.length, skipped: report.structured!.skipped.length },
    params: { original: pa, pruned: pb, ratio: round(pb / pa) },
    fileBytes: { original: sa, pruned: sb, ratio: round(sb / sa) },
    latencyMs: { original: round(median(ta)), pruned: round(median(tb)), ratio: round(median(tb) / median(ta)) },
    runs,
    threads,
    pruneMs: round(pruneMs, 1),
  };
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
