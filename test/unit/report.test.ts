import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { InputError } from '../../src/core/errors';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { runPrune } from '../../src/core/passes/run';
import { runQuantize } from '../../src/core/passes/quantize/run';
import { compareModels } from '../../src/core/report/compare';
import { reportHtml, reportMarkdown } from '../../src/core/report/render';
import type { ReportData } from '../../src/core/report/types';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { WorkerClient } from '../../src/core/worker/client';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-report-');
const model = path.join(dir, 'lenet.onnx');
writeFileAtomic(model, buildSampleModel());

/** The number in an element with this id (its data-value), or undefined when there is none. */
function valueOf(html: string, id: string): number | undefined {
  const m = new RegExp(`id="${id}" data-value="([^"]*)"`).exec(html);
  return m ? Number(m[1]) : undefined;
}

/** Zeros over the weights of the model's layers, counted here from the file. */
function layerSparsity(file: string): number {
  const m = OnnxModel.open(file);
  try {
    let z = 0;
    let n = 0;
    for (const l of m.layers()) {
      const v = l.weight.toFloat32();
      n += v.length;
      for (const x of v) if (x === 0) z++;
    }
    return z / n;
  } finally {
    m.close();
  }
}

function checkStandalone(html: string): void {
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.doesNotMatch(html, /<script/i, 'no scripts');
  assert.doesNotMatch(html, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, 'no external src or href');
  assert.doesNotMatch(html, /url\(\s*["']?(https?:)?\/\//i, 'no external url() in CSS');
  assert.doesNotMatch(html, /<link\b/i, 'no linked stylesheets');
  assert.match(html, /<style>/);
}

describe('report data', () => {
  let pruned: ReportData;

  test('pruned against its source: summary, per-layer table, histograms and mask heatmaps of the most changed layers', async () => {
    const r = await runPrune({ model, sparsity: 0.7, scope: 'layer', data: 'random', limit: 8, seed: 0, out: path.join(dir, 'pruned') });
    pruned = await compareModels(model, r.output, { limit: 8, seed: 0, ep: 'cpu' });
    const s = pruned.summary;
    assert.equal(s.sizeBytes.before, r.sizeBytes.before);
    assert.equal(s.sizeBytes.after, r.sizeBytes.after);
    assert.equal(s.params.before, r.params.before);
    assert.equal(s.params.after, r.params.after, 'the same count as prune reports (zeroed weights excluded)');
    assert.ok(Math.abs(s.sparsity.after - layerSparsity(r.output)) < 1e-6, `${s.sparsity.after}`);
    assert.equal(s.sparsity.before, 0);
    assert.equal(s.samples, 8);
    assert.ok(s.top1Agreement !== undefined && s.top1Agreement >= 0 && s.top1Agreement <= 1);
    assert.equal(pruned.data, 'random');
    assert.ok(pruned.warnings.some((w) => /random inputs/.test(w)));
    // Every layer is listed and pruned to 70%.
    assert.equal(pruned.layers.length, r.layers.length);
    for (const l of pruned.layers) {
      const p = r.layers.find((x) => x.layer === l.layer)!;
      assert.ok(Math.abs(l.sparsity.after! - p.sparsity) < 1e-6, l.layer);
      assert.ok(l.changed && l.change > 0 && l.sqnrDb! < 999, l.layer);
      assert.deepEqual(l.shape.after, l.shape.before);
    }
    assert.equal(pruned.histograms.length, 3);
    for (const h of pruned.histograms) {
      assert.equal(h.edges.length, h.before.length + 1);
      const n = pruned.layers.find((l) => l.layer === h.layer)!.params.before;
      assert.equal(h.before.reduce((a, b) => a + b, 0), n);
      assert.equal(h.after.reduce((a, b) => a + b, 0), n);
    }
    const masks = pruned.heatmaps.filter((m) => m.kind === 'mask');
    assert.equal(masks.length, 3);
    for (const m of masks) {
      assert.equal(m.values.length, m.rows * m.cols);
      assert.ok(m.rows <= 24 && m.cols <= 48);
      const mean = m.values.reduce((a, b) => a + b, 0) / m.values.length;
      assert.ok(mean > 0.15 && mean < 0.45, `kept fraction ${mean} of ${m.layer}`);
    }
    assert.equal(pruned.heatmaps.filter((m) => m.kind === 'error').length, 0, 'pruning moves no kept weight');
  });

  test('quantized against its source: formats, SQNR and error heatmaps', async () => {
    const q = await runQuantize({ model, mode: 'weight-only', bits: 8, limit: 8, seed: 0, out: path.join(dir, 'quantized') });
    const d = await compareModels(model, q.output, { limit: 8, seed: 0, ep: 'cpu' });
    assert.ok(d.summary.sizeBytes.after < d.summary.sizeBytes.before / 2);
    for (const l of d.layers) {
      const ql = q.layers.find((x) => x.layer === l.layer)!;
      assert.match(l.format.after!, /^int8|MatMulNBits|uint8/, `${l.layer}: ${l.format.after}`);
      assert.equal(l.format.before, 'float32');
      assert.ok(Math.abs(l.sqnrDb! - ql.sqnrDb!) < 0.1, `${l.layer}: ${l.sqnrDb} vs the pass's ${ql.sqnrDb}`);
    }
    const errors = d.heatmaps.filter((m) => m.kind === 'error');
    assert.equal(errors.length, 3);
    for (const m of errors) assert.ok(m.max > 0 && m.values.every((v) => v >= 0 && v <= m.max));
  });

  test('a model against itself changes nothing', async () => {
    const d = await compareModels(model, model, { limit: 4, ep: 'cpu' });
    assert.ok(d.layers.every((l) => !l.changed && l.sqnrDb === 999));
    assert.deepEqual(d.histograms, []);
    assert.deepEqual(d.heatmaps, []);
    assert.equal(d.summary.top1Agreement, 1);
  });

  test('the worker answers compareModels and runRecipe with progress events', async () => {
    const events: string[] = [];
    const client = new WorkerClient(path.join(repoRoot, 'dist', 'worker.js'), (e) => {
      if (e.type === 'progress') events.push(e.message);
    });
    try {
      const d = await client.request('compareModels', { a: model, b: model, limit: 4, ep: 'cpu' });
      assert.equal(d.summary.top1Agreement, 1);
      assert.ok(events.some((m) => /^evaluating lenet\.onnx/.test(m)), events.join('; '));
      const r = await client.request('runRecipe', { recipe: { model: 'lenet.onnx', limit: 4, out: 'via-worker', passes: [{ pass: 'prune', sparsity: 0.5 }] }, baseDir: dir });
      assert.equal(r.outDir, path.join(dir, 'via-worker'));
      assert.ok(fs.existsSync(r.reportHtml));
      assert.ok(events.some((m) => /^step 1\/1 prune: /.test(m)), events.join('; '));
    } finally {
      client.dispose();
    }
  });

  test('Compare Models takes ONNX models', async () => {
    await assert.rejects(compareModels(model, path.join(dir, 'missing.onnx')), InputError);
  });

  test('report.html is standalone and its key numbers carry stable ids; report.md has the same numbers', () => {
    const html = reportHtml(pruned);
    checkStandalone(html);
    const s = pruned.summary;
    assert.equal(valueOf(html, 'size-before'), s.sizeBytes.before);
    assert.equal(valueOf(html, 'size-after'), s.sizeBytes.after);
    assert.equal(valueOf(html, 'params-after'), s.params.after);
    assert.equal(valueOf(html, 'sparsity-after'), s.sparsity.after);
    assert.equal(valueOf(html, 'latency-after'), s.latencyMs.after);
    assert.equal(valueOf(html, 'top1-agreement'), s.top1Agreement);
    assert.equal(valueOf(html, 'accuracy-after'), undefined, 'no labels, no accuracy row');
    assert.equal((html.match(/<svg class="histogram"/g) ?? []).length, 3);
    assert.equal((html.match(/<svg class="heatmap"[^>]*data-kind="mask"/g) ?? []).length, 3);
    assert.equal((html.match(/<tr class="layer changed"/g) ?? []).length, pruned.layers.length);
    const md = reportMarkdown(pruned);
    assert.match(md, new RegExp(`\\| file size \\| ${(s.sizeBytes.before / 1024).toFixed(1)} KiB \\| ${(s.sizeBytes.after / 1024).toFixed(1)} KiB \\|`));
    assert.match(md, new RegExp(`\\| sparsity of the layer weights \\| 0\\.00% \\| ${(s.sparsity.after * 100).toFixed(2)}% \\|`));
    // Names are escaped.
    const tricky = reportHtml({ ...pruned, title: '<img src="http://x">', warnings: ['a & b <script>'] });
    checkStandalone(tricky);
    assert.match(tricky, /&lt;img src=&quot;http:\/\/x&quot;&gt;/);
  });

  test('candidates of a search are charted with the chosen one marked', () => {
    const html = reportHtml({ ...pruned, pareto: { x: 'sparsity', y: 'dropPt', metric: 'accuracy', maxDropPt: 1, points: [{ label: 'a', x: 0.9, y: 4, chosen: false }, { label: 'b', x: 0.45, y: 0.5, chosen: true }, { label: 'c', x: 0.67, y: 1.5, chosen: false }] } });
    checkStandalone(html);
    assert.equal((html.match(/<circle class="candidate"/g) ?? []).length, 2);
    assert.match(html, /<circle class="candidate chosen"[^>]*data-x="0.45" data-y="0.5"/);
    assert.match(html, /class="budget"/);
    assert.match(reportMarkdown({ ...pruned, pareto: { x: 'sparsity', y: 'dropPt', metric: 'accuracy', points: [{ label: 'b', x: 0.45, y: 0.5, chosen: true }] } }), /\| b \| 45\.00% \| 0\.5 \| yes \|/);
  });
});

describe('report on mnist-8', { skip: noSharedData }, () => {
  test('accuracy before and after on labelled data, with the drop', async () => {
    const mnist = path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx');
    const data = `${path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz')}#:300`;
    const r = await runPrune({ model: mnist, sparsity: 0.8, data, out: path.join(dir, 'mnist-pruned'), ep: 'cpu' });
    const d = await compareModels(mnist, r.output, { data, ep: 'cpu' });
    assert.ok(d.summary.accuracy);
    assert.equal(d.summary.accuracy.before, r.metrics.accuracy!.before);
    assert.equal(d.summary.accuracy.after, r.metrics.accuracy!.after);
    assert.equal(d.summary.accuracy.dropPt, r.metrics.accuracy!.dropPt);
    const html = reportHtml(d);
    assert.equal(valueOf(html, 'accuracy-before'), d.summary.accuracy.before);
    assert.equal(valueOf(html, 'accuracy-drop'), d.summary.accuracy.dropPt);
    assert.ok(fs.existsSync(r.output));
  });
});
