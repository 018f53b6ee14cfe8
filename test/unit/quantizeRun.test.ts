import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { runQuantize } from '../../src/core/passes/quantize/run';
import { readOrigin } from '../../src/core/origin';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { layerQuantError } from '../../src/core/analysis/quantError';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-quantize-run-');
const mnist8 = () => path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx');
const images = () => path.join(sharedData!, 'mnist/t10k-images-idx3-ubyte.gz');

/** A private copy of mnist-8, so each run folder lands beside it in the temp folder. */
function copyOf(name: string): string {
  const file = path.join(dir, name, 'mnist.onnx');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.copyFileSync(mnist8(), file);
  return file;
}

describe('whittle quantize: the run', { skip: noSharedData }, () => {
  test('static on mnist-8 with a calibration/evaluation split: contract fields, run folder, preflight, source untouched', async () => {
    const model = copyOf('static');
    const before = fs.readFileSync(model);
    const r = await runQuantize({ model, mode: 'static', data: `${images()}#512:1512`, calibData: `${images()}#:256` });
    assert.deepEqual(fs.readFileSync(model), before, 'the source is only read');
    for (const f of [r.output, r.report, r.recipe, path.join(path.dirname(r.output), 'report.md')]) assert.ok(fs.existsSync(f), f);
    assert.equal(path.dirname(path.dirname(r.output)), path.join(path.dirname(model), 'mnist.whittle'));
    // The contract (DESIGN.md section 7).
    for (const key of ['output', 'sizeBytes', 'params', 'sparsity', 'metrics', 'latencyMs', 'ep', 'warnings']) assert.ok(key in r, key);
    assert.equal(r.metrics.before.samples, 1000);
    assert.ok(r.metrics.accuracy!.dropPt <= 0.3, `drop ${r.metrics.accuracy!.dropPt} pt`);
    assert.ok(r.sizeBytes.after < 0.45 * r.sizeBytes.before, `size ${r.sizeBytes.after} of ${r.sizeBytes.before}`);
    assert.equal(r.params.after, r.params.before);
    assert.match(r.calibData, /#:256$/);
    assert.ok(r.preflight.baselineMs > 0 && r.preflight.candidateMs > 0 && Math.abs(r.preflight.ratio - r.preflight.candidateMs / r.preflight.baselineMs) < 1e-9);
    // A preflight that finds it no faster says so, with a reason, in the warnings.
    if (!r.preflight.faster) assert.ok(r.warnings.some((w) => /^Preflight: the quantized model is (slower|no faster) here/.test(w)), r.warnings.join('\n'));
    assert.ok(r.optimizedOps && (r.optimizedOps.QLinearConv ?? 0) === 2, JSON.stringify(r.optimizedOps));
    assert.ok(r.layers.every((l) => l.format === 'qdq'), JSON.stringify(r.layers));
    const saved = JSON.parse(fs.readFileSync(r.report, 'utf8'));
    assert.equal(saved.output, r.output);
    assert.equal(JSON.parse(fs.readFileSync(r.recipe, 'utf8')).passes[0].pass, 'quantize');
    // The Inspector finds the source from the run folder, and the per-layer weight error is measurable.
    const origin = readOrigin(r.output);
    assert.equal(origin?.source, model);
    assert.equal(origin?.pass, 'quantize');
    // Each calibrated activation: its histogram over the observed range and every calibrator's range on the same statistics.
    assert.ok(origin?.ranges && origin.ranges.length >= 3, JSON.stringify(origin?.ranges?.length));
    for (const x of origin!.ranges!) {
      assert.equal(x.histogram!.counts.length, 64);
      assert.ok(x.histogram!.counts.reduce((a, b) => a + b, 0) > 0);
      assert.deepEqual(x.calibrators!.minmax, x.observed, `${x.tensor}: minmax is the observed range`);
      assert.deepEqual(x.range, x.calibrators!.minmax, `${x.tensor}: the default calibrator (minmax) gave the range used`);
      for (const c of ['percentile', 'entropy', 'mse']) assert.ok(x.calibrators![c][1] <= x.observed[1] + 1e-9 && x.calibrators![c][0] >= x.observed[0] - 1e-9, `${x.tensor} ${c}`);
    }
    const q = OnnxModel.open(r.output);
    const s = OnnxModel.open(model);
    try {
      const e = layerQuantError(q, s, 'Convolution110');
      assert.equal(e.format, 'int8 per-channel');
      assert.ok(e.sqnrDb > 35 && e.sqnrDb < 60, `${e.sqnrDb}`);
      assert.equal(e.channelSqnrDb.length, 16);
      assert.ok(e.maxAbs > 0);
    } finally {
      q.close();
      s.close();
    }
  });

  test('--max-drop: int4 weights drop too much; the worst layer goes back to float and the target holds', async () => {
    const model = copyOf('fallback');
    const r = await runQuantize({ model, mode: 'weight-only', bits: 4, block: 128, symmetric: true, maxDrop: 0.1, data: `${images()}#512:`, calibData: `${images()}#:512` });
    const f = r.fallback!;
    assert.ok(f.tries[0].dropPt > 0.1, `full int4 drops ${f.tries[0].dropPt} pt, so the fallback has work to do`);
    assert.equal(f.reached, true);
    assert.ok(f.float.length >= 1 && f.float.length < 3, f.float.join(', '));
    assert.ok(r.metrics.accuracy!.dropPt <= 0.1, `${r.metrics.accuracy!.dropPt}`);
    for (const name of f.float) {
      const l = r.layers.find((x) => x.layer === name)!;
      assert.equal(l.format, 'float');
      assert.match(l.reason!, /kept in float by --max-drop 0\.1: the (\S+ )?worst of 3 quantized layers by weight SQNR/);
    }
    assert.ok(r.layers.some((l) => l.format === 'qdq'), 'the other layers stay quantized');
  });

  test('--max-drop with a spent time budget keeps the best model found and says the target was not reached', async () => {
    const model = copyOf('timeout');
    const r = await runQuantize({ model, mode: 'weight-only', bits: 4, block: 128, symmetric: true, maxDrop: 0.1, maxSeconds: 0, data: `${images()}#512:3512`, calibData: `${images()}#:256` });
    assert.equal(r.fallback!.reached, false);
    assert.equal(r.fallback!.tries.length, 1, 'no try starts after the deadline');
    assert.ok(r.warnings.some((w) => /--max-drop 0\.1: no try reached it within 1 tries and 0 s; the model written is the best found/.test(w)), r.warnings.join('\n'));
    assert.ok(fs.existsSync(r.output));
  });

  test('bad input: --max-drop without --data, and a bad calibration SPEC, leave nothing behind', async () => {
    const model = copyOf('bad');
    await assert.rejects(runQuantize({ model, mode: 'static', maxDrop: 0.1 }), /--max-drop needs --data/);
    await assert.rejects(runQuantize({ model, mode: 'static', data: images(), calibData: `${images()}#20000:` }), /t10k-images-idx3-ubyte\.gz/);
    assert.equal(fs.existsSync(path.join(path.dirname(model), 'mnist.whittle')) && fs.readdirSync(path.join(path.dirname(model), 'mnist.whittle')).length > 0, false);
  });

  test('the CLI prints the table and exits 0; --bits 4 outside weight-only exits 1', () => {
    const model = copyOf('cli');
    const cli = path.join(repoRoot, 'dist', 'cli.js');
    const ok = spawnSync(process.execPath, [cli, 'quantize', model, '--mode', 'fp16', '--data', `${images()}#:200`], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /mode fp16/);
    assert.match(ok.stdout, /preflight: \d+\.\d\dx the original's latency/);
    const bad = spawnSync(process.execPath, [cli, 'quantize', model, '--mode', 'dynamic', '--bits', '4'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--bits 4 is for --mode weight-only/);
  });
});
