import * as fs from 'node:fs';
import * as path from 'node:path';
import { openDataset } from '../src/core/data';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { parseParams } from '../src/core/passes/pass';
import { quantizeParams, type QuantizeOptions } from '../src/core/passes/quantize/params';
import { cloneModel, quantizeStatic } from '../src/core/passes/quantize/static';
import { modelInputs, openSession } from '../src/core/runtime/session';
import { outputFloats, toOrt } from '../src/core/runtime/tensors';

/**
 * Static U8S8 per-channel quantization of mnist-8 and opt-mnist with each calibrator (and MinMax with bias
 * correction, and with 7-bit weights forced), calibrated on the first 512 MNIST test images and evaluated on the other 9,488. Prints one
 * JSON object: accuracy per calibrator, its drop against fp32 in points, and the calibration time.
 *   node out/bench/calibrators.js [calibration=512]
 */
async function main(): Promise<void> {
  const data = path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
  const shared = process.env.WHITTLE_SHARED_DATA ?? data;
  const images = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
  if (!fs.existsSync(images)) {
    console.log(JSON.stringify({ skipped: `no MNIST at ${images} (set WHITTLE_SHARED_DATA)` }));
    return;
  }
  const calibration = Number(process.argv[2] ?? 512);
  const models = { 'mnist-8': 'models/onnx-mnist-8/mnist.onnx', 'opt-mnist': 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx' };
  const variants: Array<[string, Record<string, unknown>]> = [
    ['minmax', { calibration: 'minmax' }],
    ['percentile', { calibration: 'percentile' }],
    ['entropy', { calibration: 'entropy' }],
    ['mse', { calibration: 'mse' }],
    ['minmax+biasCorrection', { calibration: 'minmax', biasCorrection: true }],
    ['minmax, 7-bit weights', { calibration: 'minmax', weightBits: '7' }],
  ];
  const out: Record<string, unknown> = { calibrationImages: calibration, evaluationImages: 10_000 - calibration };
  for (const [name, rel] of Object.entries(models)) {
    const src = path.join(shared, rel);
    const fp32 = await accuracy(OnnxModel.open(src), images, calibration);
    const rows: Record<string, unknown> = { fp32 };
    for (const [variant, extra] of variants) {
      const m = OnnxModel.open(src);
      const p = parseParams<QuantizeOptions>(quantizeParams, { mode: 'static', ...extra });
      const t0 = performance.now();
      const report = await quantizeStatic(m, p, { warnings: [], calibration: { data: images, limit: calibration, ep: 'cpu' } });
      const quantizeMs = performance.now() - t0;
      const acc = await accuracy(cloneModel(m), images, calibration);
      rows[variant] = { accuracy: acc, dropPt: +(fp32 - acc).toFixed(2), weightBits: report.weightBits?.bits, quantizeMs: Math.round(quantizeMs) };
    }
    out[name] = rows;
  }
  console.log(JSON.stringify(out, null, 1));
}

/** Top-1 accuracy (%) on the MNIST test images from `skip` on. */
async function accuracy(m: OnnxModel, images: string, skip: number): Promise<number> {
  const dataset = await openDataset(images, modelInputs(m));
  const s = await openSession(m, { ep: 'cpu', dynamicBatch: true });
  let right = 0;
  let seen = 0;
  try {
    for await (const batch of dataset.batches(s.batched ? 128 : 1)) {
      if (batch.start < skip) continue;
      const feeds = Object.fromEntries(Object.entries(batch.inputs).map(([k, v]) => [k, toOrt(v)]));
      const logits = outputFloats((await s.session.run(feeds))[s.outputs[0]]);
      const classes = logits.length / batch.count;
      for (let i = 0; i < batch.count; i++) {
        let best = 0;
        for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
        if (best === batch.labels![i]) right++;
        seen++;
      }
    }
  } finally {
    await s.release();
  }
  return +((100 * right) / seen).toFixed(2);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
