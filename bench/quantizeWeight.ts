import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { writeOnnx } from '../src/core/formats/onnx/write';
import { quantizeDynamic } from '../src/core/passes/quantize/dynamic';
import { convertFp16 } from '../src/core/passes/quantize/fp16';
import type { QuantizeOptions, QuantizeReport } from '../src/core/passes/quantize/params';
import { quantizeWeightOnly } from '../src/core/passes/quantize/weightOnly';
import type { PassContext } from '../src/core/passes/pass';
import { normal, seededRandom } from '../src/core/random';
import { measureLatency } from '../src/core/runtime/session';
import { buildMlp } from '../src/core/samples/mlp';

/**
 * Weight-only int4 and int8 (MatMulNBits, block 32: the default), weight-only int8 as per-channel
 * DequantizeLinear (--format qdq), dynamic int8 and fp16 on a generated ~80 MB MLP ([1024, 4096, 3072, 1024], MatMul + Add + Relu), all in this process: file
 * size and CPU latency at batch 1 as ratios to fp32 (3 warm-up runs, median of up to 40). Prints one JSON object.
 *   node out/bench/quantizeWeight.js [runs=40]
 */
async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 40);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-qw-'));
  try {
    const sizes = [1024, 4096, 3072, 1024];
    const fp32 = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(fp32, buildMlp({ sizes, seed: 1 }));
    const base: QuantizeOptions = { mode: 'weight-only', bits: 8, perChannel: true, format: 'auto', calibration: 'minmax', percentile: 99.999, weightBits: 'auto', biasCorrection: false, exclude: [], keepFp32: [] };
    const variants: Array<{ name: string; run: (m: OnnxModel, ctx: PassContext) => Promise<QuantizeReport> }> = [
      { name: 'int4-matmulnbits-b32', run: (m, ctx) => quantizeWeightOnly(m, { ...base, bits: 4, block: 32 }, ctx) },
      { name: 'int8-matmulnbits-b32', run: (m, ctx) => quantizeWeightOnly(m, base, ctx) },
      { name: 'int8-dq-per-channel', run: (m, ctx) => quantizeWeightOnly(m, { ...base, format: 'qdq' }, ctx) },
      { name: 'int8-dynamic', run: (m, ctx) => quantizeDynamic(m, { ...base, mode: 'dynamic' }, ctx) },
      { name: 'fp16', run: (m, ctx) => convertFp16(m, { ...base, mode: 'fp16' }, ctx) },
    ];
    const files: Record<string, { file: string; quantizeMs: number; minSqnrDb: number }> = {};
    for (const v of variants) {
      const m = OnnxModel.open(fp32);
      const t0 = performance.now();
      const report = await v.run(m, { warnings: [] });
      const quantizeMs = performance.now() - t0;
      const file = path.join(dir, `${v.name}.onnx`);
      writeOnnx(m, file);
      m.close();
      files[v.name] = { file, quantizeMs, minSqnrDb: Math.min(...report.layers.map((l) => l.sqnrDb ?? Infinity)) };
    }

    const randn = normal(seededRandom(5));
    const x = new ort.Tensor('float32', Float32Array.from({ length: sizes[0] }, () => randn()), [1, sizes[0]]);
    const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: Math.max(1, os.availableParallelism() - 1), logSeverityLevel: 4 };
    const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
    const latency = async (file: string) => {
      const s = await ort.InferenceSession.create(file, options);
      const times = await measureLatency(s, { x }, { warmup: 3, runs, maxMs: 20000 });
      await s.release();
      return median(times);
    };
    // fp32 timed first and last, so a drifting machine shows up as two different baselines.
    const fp32Ms = [await latency(fp32)];
    const results: Record<string, { sizeRatio: number; latencyRatio: number; medianMs: number; quantizeMs: number; minWeightSqnrDb: number }> = {};
    for (const [name, f] of Object.entries(files)) {
      const ms = await latency(f.file);
      results[name] = { sizeRatio: 0, latencyRatio: 0, medianMs: +ms.toFixed(3), quantizeMs: Math.round(f.quantizeMs), minWeightSqnrDb: +f.minSqnrDb.toFixed(1) };
    }
    fp32Ms.push(await latency(fp32));
    const baseMs = (fp32Ms[0] + fp32Ms[1]) / 2;
    const fp32Bytes = fs.statSync(fp32).size;
    for (const [name, r] of Object.entries(results)) {
      r.sizeRatio = +(fs.statSync(files[name].file).size / fp32Bytes).toFixed(3);
      r.latencyRatio = +(r.medianMs / baseMs).toFixed(2);
    }
    console.log(JSON.stringify({
      model: { sizes, fileMB: +(fp32Bytes / 1e6).toFixed(1), batch: 1, threads: options.intraOpNumThreads, runs },
      fp32MedianMs: fp32Ms.map((v) => +v.toFixed(3)),
      variants: results,
    }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
