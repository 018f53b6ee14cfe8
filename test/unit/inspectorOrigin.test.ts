import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { layerHistogram } from '../../src/core/analysis/histogram';
import { tensorTile } from '../../src/core/analysis/tiles';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { readOrigin, removedChannels } from '../../src/core/origin';
import { runQuantize } from '../../src/core/passes/quantize/run';
import { runPrune } from '../../src/core/passes/run';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, sharedData, tempDir } from './helpers/paths';
import { runQuantizeTfjs } from '../../src/core/passes/quantize/tfjs';
import { TfjsModel } from '../../src/core/formats/tfjs/read';

/**
 * What the Inspector's before/after views read from a run folder: quantized layers' weights as real
 * (dequantized) values, and a structured prune's removed output channels per layer.
 */

const dir = tempDir('whittle-inspector-origin-');

/** A private copy of the generated sample model in its own folder, so each run folder lands beside it. */
function sample(name: string): string {
  const file = path.join(dir, name, 'lenet.onnx');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, buildSampleModel());
  return file;
}

function withModels<T>(a: string, b: string, fn: (x: OnnxModel, y: OnnxModel) => T): T {
  const x = OnnxModel.open(a);
  const y = OnnxModel.open(b);
  try {
    return fn(x, y);
  } finally {
    x.close();
    y.close();
  }
}

describe('Inspector: quantized layers show dequantized values', () => {
  test('static int8: histograms and value tiles of a DequantizeLinear weight are real values close to the source', async () => {
    const source = sample('static');
    const r = await runQuantize({ model: source, mode: 'static', data: 'random', limit: 8 });
    const origin = readOrigin(r.output);
    assert.equal(origin?.pass, 'quantize');
    assert.ok(origin?.activations && origin.activations.length > 0, 'static report lists activation SQNR');
    withModels(r.output, source, (q, s) => {
      const conv = q.layers().find((l) => l.name === '/conv2/Conv')!;
      assert.ok(conv.quant, 'conv2 goes through DequantizeLinear');
      assert.notEqual(conv.weight.dtype, 1, 'stored as integers');
      const after = layerHistogram(q, '/conv2/Conv');
      const before = layerHistogram(s, '/conv2/Conv');
      assert.equal(after.dtype, 'float32');
      assert.match(after.storedAs ?? '', /^int8 per-channel$/);
      assert.equal(before.storedAs, undefined);
      const span = before.max - before.min;
      // Integer codes would span about [-127, 127]: real values stay within a quantization step of the source.
      assert.ok(Math.abs(after.min - before.min) < 0.02 * span && Math.abs(after.max - before.max) < 0.02 * span, `after [${after.min}, ${after.max}] vs before [${before.min}, ${before.max}]`);
      assert.ok(Math.abs(after.std - before.std) < 0.02 * before.std, `std ${after.std} vs ${before.std}`);
      assert.equal(after.channels.min.length, 16);
      // Same bins over a shared range: the counts sum to the same total.
      const range: [number, number] = [Math.min(before.min, after.min), Math.max(before.max, after.max)];
      const a = layerHistogram(q, '/conv2/Conv', undefined, 32, range);
      const b = layerHistogram(s, '/conv2/Conv', undefined, 32, range);
      assert.deepEqual(a.edges, b.edges);
      assert.equal(a.counts.reduce((x, y) => x + y, 0), b.counts.reduce((x, y) => x + y, 0));
      // A value tile by the stored weight's name reads the dequantized matrix too.
      const t = tensorTile(q, conv.weight.name, 0, 0, 16, 150, 1);
      const ts = tensorTile(s, 'conv2.weight', 0, 0, 16, 150, 1);
      const tv = new Float32Array(t.values);
      const sv = new Float32Array(ts.values);
      let worst = 0;
      for (let i = 0; i < sv.length; i++) worst = Math.max(worst, Math.abs(tv[i] - sv[i]));
      assert.ok(worst > 0 && worst < 0.02 * span, `largest tile difference ${worst}`);
      // The passes still see the integer initializer.
      assert.equal(q.layers().find((l) => l.name === '/conv2/Conv')!.weight, conv.weight);
    });
  });

  test('weight-only int4 (MatMulNBits): the histogram is of the [K, N] real matrix with N channels', async () => {
    const source = sample('int4');
    const r = await runQuantize({ model: source, mode: 'weight-only', bits: 4, data: 'random', limit: 4 });
    withModels(r.output, source, (q, s) => {
      const nbits = q.layers().find((l) => l.op === 'com.microsoft:MatMulNBits');
      if (!nbits) return assert.fail(`no MatMulNBits layer: ${q.layers().map((l) => `${l.name} ${l.op}`).join(', ')}`);
      const after = layerHistogram(q, nbits.name);
      const before = layerHistogram(s, nbits.name);
      assert.match(after.storedAs ?? '', /^MatMulNBits 4-bit block/);
      assert.equal(after.channels.min.length, before.channels.min.length);
      assert.equal(after.counts.reduce((x, y) => x + y, 0), before.counts.reduce((x, y) => x + y, 0));
      const span = before.max - before.min;
      assert.ok(Math.abs(after.max - before.max) < 0.15 * span && Math.abs(after.min - before.min) < 0.15 * span, `after [${after.min}, ${after.max}] vs before [${before.min}, ${before.max}]`);
    });
  });
});

describe('Inspector origin: structured pruning', () => {
  test('readOrigin gives the removed output channels per layer, matching the written model; old reports by their groups', async () => {
    const source = sample('structured');
    const r = await runPrune({ model: source, sparsity: 0.5, structured: 'channels', channelMultiple: 1, limit: 4 });
    const origin = readOrigin(r.output);
    assert.equal(origin?.pass, 'prune');
    const total = r.structured!.groups.reduce((a, g) => a + g.channels - g.kept, 0);
    assert.ok(total > 0);
    assert.match(origin?.summary ?? '', new RegExp(`^structured: removed ${total} of \\d+ channels in ${r.structured!.groups.length} group`));
    const removed = origin?.removedRows ?? {};
    assert.ok(Object.keys(removed).length > 0, `no removed rows: ${JSON.stringify(origin)}`);
    withModels(r.output, source, (p, s) => {
      for (const [layer, rows] of Object.entries(removed)) {
        const before = s.layers().find((l) => l.name === layer)!;
        const after = p.layers().find((l) => l.name === layer)!;
        const channels = before.weight.shape[before.outputAxis];
        assert.ok(rows.length > 0 && rows.every((i) => Number.isInteger(i) && i >= 0 && i < channels), `${layer}: ${rows}`);
        assert.equal(new Set(rows).size, rows.length);
        assert.equal(after.weight.shape[after.outputAxis], channels - rows.length, `${layer} keeps channels - removed`);
      }
      assert.ok('/conv1/Conv' in removed, 'conv1 lost channels');
    });
    // A report written before `removedChannels` existed: the groups' members give the same for the convs.
    const report = JSON.parse(fs.readFileSync(r.report, 'utf8'));
    for (const l of report.layers) delete l.removedChannels;
    const legacy = removedChannels(report);
    assert.deepEqual(legacy['/conv1/Conv'], removed['/conv1/Conv']);
    assert.deepEqual(legacy['/conv2/Conv'], removed['/conv2/Conv']);
  });
});

describe('Inspector origin: TF.js runs', { skip: noSharedData }, () => {
  test('a quantized TF.js model.json finds its source through the TF.js recipe, and its histogram is comparable', async () => {
    const out = path.join(tempDir('whittle-origin-tfjs-'), 'q');
    const source = path.join(sharedData!, 'models/tfjs-tensorspace-lenet-mnist/mnist.json');
    const r = await runQuantizeTfjs({ model: source, dtype: 'uint8', out });
    const origin = readOrigin(r.output);
    assert.equal(origin?.source, source);
    assert.equal(origin?.pass, 'quantize');
    assert.equal(origin?.summary, 'quantized (uint8)');
    // The Inspector's before/after histogram reads both models by content, on shared bins.
    const [a, b] = [TfjsModel.open(source), TfjsModel.open(r.output)];
    const before = layerHistogram(a, 'conv2d_Conv2D1', undefined, 32);
    const after = layerHistogram(b, 'conv2d_Conv2D1', undefined, 32, [before.min, before.max]);
    assert.equal(after.edges[0], before.min);
    assert.equal(after.counts.reduce((x, y) => x + y, 0), before.counts.reduce((x, y) => x + y, 0));
    assert.notDeepEqual(after.counts, before.counts, 'uint8 rounding moves some values between bins');
  });
});
