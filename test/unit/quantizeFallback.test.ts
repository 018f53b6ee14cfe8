import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { parseParams } from '../../src/core/passes/pass';
import { normalizeQuantizeOptions } from '../../src/core/passes/quantize/index';
import { quantizeParams, type QuantizeOptions } from '../../src/core/passes/quantize/params';
import { rankForFallback, runQuantize } from '../../src/core/passes/quantize/run';
import { quantizeStatic } from '../../src/core/passes/quantize/static';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-quantize-fallback-');
const mnist8 = () => path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx');
const images = () => path.join(sharedData!, 'mnist/t10k-images-idx3-ubyte.gz');
const options = (extra: Record<string, unknown> = {}): QuantizeOptions => parseParams<QuantizeOptions>(quantizeParams, { mode: 'static', ...extra });

describe('static --max-drop: activation ranges before layers', { skip: noSharedData }, () => {
  // The 99th percentile of |x| clips enough of mnist-8's activations to cost ~0.3 pt: work for the fallback.
  test('mnist-8, percentile 99: the fallback widens clipped ranges and reaches 0.1 pt with every layer still int8', async () => {
    const model = path.join(dir, 'entropy', 'mnist.onnx');
    fs.mkdirSync(path.dirname(model), { recursive: true });
    fs.copyFileSync(mnist8(), model);
    const r = await runQuantize({ model, mode: 'static', calibration: 'percentile', percentile: 99, maxDrop: 0.1, data: `${images()}#512:`, calibData: `${images()}#:512` });
    const f = r.fallback!;
    assert.ok(f.tries[0].dropPt > 0.1, `full percentile-99 quantization drops ${f.tries[0].dropPt} pt, so the fallback has work to do`);
    assert.equal(f.reached, true, JSON.stringify(f.tries));
    assert.ok(r.metrics.accuracy!.dropPt <= 0.1, `${r.metrics.accuracy!.dropPt}`);
    // Fewer than all 3 layers in float (measured: none), and the written model's layers are int8.
    assert.ok(f.float.length < 3, f.float.join(', '));
    assert.deepEqual(r.layers.filter((l) => f.float.includes(l.layer)).map((l) => l.format), f.float.map(() => 'float'));
    assert.ok(r.layers.some((l) => l.format === 'qdq'));
    // Which ranges were widened and why, and the recipe that replays them.
    assert.ok(f.fullRange && f.fullRange.length >= 1, JSON.stringify(f));
    for (const x of f.fullRange!) assert.match(x.reason, /^range widened to its observed min\.\.max by --max-drop 0\.1: the (\S+ )?worst of \d+ clipped activation ranges by expected SQNR \(-?[\d.]+ dB over the percentile range/);
    const recipe = JSON.parse(fs.readFileSync(r.recipe, 'utf8'));
    assert.deepEqual(recipe.passes[0].fullRange, f.fullRange!.map((x) => x.tensor));
    assert.match(fs.readFileSync(path.join(path.dirname(r.output), 'report.md'), 'utf8'), /Activation ranges widened to their observed min\.\.max/);
  });

  test('layers rank by the SQNR of the activation their Q sits on (after a folded Relu), not by weight SQNR', async () => {
    const m = OnnxModel.open(mnist8());
    try {
      const report = await quantizeStatic(m, options({ calibration: 'entropy' }), { warnings: [], calibration: { data: `${images()}#:128`, ep: 'cpu' } });
      const acts = new Map(report.activations!.map((a) => [a.tensor, a.sqnrDb]));
      for (const l of report.layers) assert.ok(l.activation && acts.has(l.activation), `${l.layer}: ${l.activation}`);
      const want = [...report.layers].sort((a, b) => acts.get(a.activation!)! - acts.get(b.activation!)! || a.layer.localeCompare(b.layer)).map((l) => l.layer);
      assert.deepEqual(rankForFallback(report, m), want);
    } finally {
      m.close();
    }
  });

  test('--full-range quantizes a tensor over its observed range, and says so when it names nothing', async () => {
    const m = OnnxModel.open(mnist8());
    try {
      const warnings: string[] = [];
      const report = await quantizeStatic(m, options({ calibration: 'percentile', percentile: 99, fullRange: 'ReLU32_Output_0,nope' }), { warnings, calibration: { data: `${images()}#:128`, ep: 'cpu' } });
      const widened = report.ranges!.find((r) => r.tensor === 'ReLU32_Output_0')!;
      assert.equal(widened.full, true);
      assert.deepEqual(widened.range, widened.observed);
      assert.equal(widened.clipped, 0);
      const other = report.ranges!.find((r) => r.tensor === 'ReLU114_Output_0')!;
      assert.equal(other.full, false);
      assert.ok(other.range[1] < other.observed[1] && other.clipped > 0, JSON.stringify(other));
      assert.ok(warnings.some((w) => /--full-range: no calibrated activation named 'nope'/.test(w)), warnings.join('\n'));
    } finally {
      m.close();
    }
    assert.throws(() => normalizeQuantizeOptions(options({ mode: 'weight-only', fullRange: 'x' })), /--full-range applies to --mode static/);
  });
});
