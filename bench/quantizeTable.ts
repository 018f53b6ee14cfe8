import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runQuantize, type QuantizeParams } from '../src/core/passes/quantize/run';

/**
 * Post-training quantization of mnist-8 and opt-mnist end to end through `runQuantize` (what `whittle quantize`
 * runs): calibrated on the first 512 MNIST test images, evaluated on the other 9,488. Every mode and each
 * static calibrator (MinMax, Percentile, Entropy, MSE), with accuracy, its drop against fp32, the file size
 * ratio and the preflight latency ratio (quantized / fp32 at batch 1, interleaved in this process). Prints a
 * markdown table per model, then a pass/fail line per issue-7 criterion.
 *   node out/bench/quantizeTable.js [calibration=512]
 */
async function main(): Promise<void> {
  const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
  const images = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
  if (!fs.existsSync(images)) {
    console.log(`skipped: no MNIST at ${images} (set WHITTLE_SHARED_DATA)`);
    return;
  }
  const calibration = Number(process.argv[2] ?? 512);
  const models = { 'mnist-8': 'models/onnx-mnist-8/mnist.onnx', 'opt-mnist': 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx' };
  const variants: Array<[string, Partial<QuantizeParams>]> = [
    ['static U8S8 per-channel, MinMax', { mode: 'static', calibration: 'minmax' }],
    ['static, Percentile 99.999', { mode: 'static', calibration: 'percentile' }],
    ['static, Entropy (KL)', { mode: 'static', calibration: 'entropy' }],
    ['static, MSE', { mode: 'static', calibration: 'mse' }],
    ['static, MinMax + bias correction', { mode: 'static', calibration: 'minmax', biasCorrection: true }],
    ['weight-only int8', { mode: 'weight-only', bits: 8 }],
    ['weight-only int4 block 32', { mode: 'weight-only', bits: 4, block: 32 }],
    ['dynamic int8', { mode: 'dynamic' }],
    ['fp16', { mode: 'fp16' }],
  ];
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-quantize-table-'));
  const checks: string[] = [];
  try {
    for (const [name, rel] of Object.entries(models)) {
      const src = path.join(shared, rel);
      const rows: string[] = [];
      let fp32: number | undefined;
      const drops: Record<string, { drop: number; size: number }> = {};
      for (const [variant, extra] of variants) {
        const r = await runQuantize({ model: src, ...extra, data: `${images}#${calibration}:`, calibData: `${images}#:${calibration}`, out: path.join(work, `${name}-${rows.length}`), ep: 'cpu' });
        const a = r.metrics.accuracy!;
        fp32 ??= a.before;
        const size = r.sizeBytes.after / r.sizeBytes.before;
        drops[variant] = { drop: a.dropPt, size };
        rows.push(`| ${variant} | ${(a.after * 100).toFixed(2)}% | ${a.dropPt.toFixed(2)} | ${size.toFixed(3)}x | ${r.preflight.ratio.toFixed(2)}x |`);
      }
      console.log(`\n### ${name}: fp32 ${(fp32! * 100).toFixed(2)}%; calibration #:${calibration}, evaluation #${calibration}: (${10_000 - calibration} images)\n`);
      console.log('| variant | accuracy | drop (pt) | file | latency (preflight) |\n|---|---:|---:|---:|---:|');
      for (const row of rows) console.log(row);
      const st = drops['static U8S8 per-channel, MinMax'];
      const wo = drops['weight-only int8'];
      checks.push(`- ${name}: static U8S8 per-channel drop <= 0.3 pt: ${st.drop <= 0.3 ? 'PASS' : 'FAIL'} (${st.drop.toFixed(2)} pt)`);
      checks.push(`- ${name}: static file <= 0.3x: ${st.size <= 0.3 ? 'PASS' : 'FAIL'} (${st.size.toFixed(3)}x)`);
      checks.push(`- ${name}: weight-only int8 drop <= 0.2 pt: ${wo.drop <= 0.2 ? 'PASS' : 'FAIL'} (${wo.drop.toFixed(2)} pt)`);
    }
    console.log(`\n${checks.join('\n')}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

void main();
