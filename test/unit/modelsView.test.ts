import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { runQuantize } from '../../src/core/passes/quantize/run';
import { runPrune } from '../../src/core/passes/run';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { english, isRunOutput, jobHeadline, listRuns, runHeadline, runsDirOf } from '../../src/extension/runs';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

/**
 * The Models tree's runs (src/extension/runs.ts, free of 'vscode'): the `.whittle` run folders that real
 * prune and quantize runs write, found under their model with their headline figures.
 */

const dir = tempDir('whittle-models-view-');

function sample(name: string): string {
  const file = path.join(dir, name, 'lenet.onnx');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, buildSampleModel());
  return file;
}

describe('Models view: runs of a model', () => {
  test('a model without runs has none; a .whittle folder without report.json is not a run', () => {
    const model = sample('none');
    assert.deepEqual(listRuns(model), []);
    fs.mkdirSync(path.join(runsDirOf(model), 'prune-half-written'), { recursive: true });
    assert.deepEqual(listRuns(model), []);
  });

  test('real prune and quantize runs are listed newest first with their figures from report.json', async () => {
    const model = sample('two');
    const pruned = await runPrune({ model, sparsity: 0.5, limit: 8 });
    const quantized = await runQuantize({ model, mode: 'weight-only', data: 'random', limit: 4 });
    // The second run's report must be newer even on coarse file-time clocks.
    const later = new Date(Date.now() + 2000);
    fs.utimesSync(quantized.report, later, later);
    const runs = listRuns(model);
    assert.deepEqual(runs.map((r) => r.dir), [path.dirname(quantized.report), path.dirname(pruned.report)]);
    const [q, p] = runs as [(typeof runs)[0], (typeof runs)[0]];
    assert.match(p.name, /^prune-\d{8}-\d{6}/);
    assert.equal(p.output, pruned.output);
    assert.equal(q.output, quantized.output);
    const size = (r: { sizeBytes: { before: number; after: number } }) => (r.sizeBytes.after / r.sizeBytes.before).toFixed(2);
    // Random data has no labels: the headline falls back to top-1 agreement with the source.
    assert.equal(p.headline, `${(pruned.sparsity * 100).toFixed(1)}% sparse, ${size(pruned)}x size, top-1 agreement ${((pruned.metrics.top1Agreement ?? NaN) * 100).toFixed(1)}%`);
    assert.ok(pruned.sparsity > 0.45 && pruned.sparsity < 0.55, `sparsity ${pruned.sparsity}`);
    assert.match(q.headline ?? '', new RegExp(`^weight-only, ${size(quantized).replace('.', '\\.')}x size, top-1 agreement \\d+\\.\\d%$`));
    assert.ok(Number(size(quantized)) < 0.5, `weight-only int8 should be under half the size, got ${size(quantized)}`);
    // Models inside run folders belong to their run, not to the top level of the tree.
    assert.ok(isRunOutput(pruned.output));
    assert.ok(!isRunOutput(model));
  });

  test('a structured prune run reads as the share of parameters it removed, not as sparsity', async () => {
    const model = sample('structured');
    const r = await runPrune({ model, sparsity: 0.5, structured: 'channels', channelMultiple: 1, limit: 4 });
    const [run] = listRuns(model);
    const removed = ((1 - r.params.after / r.params.before) * 100).toFixed(1);
    assert.ok(Number(removed) > 10, `structured pruning removed only ${removed}% of the parameters`);
    assert.match(run?.headline ?? '', new RegExp(`^${removed.replace('.', '\\.')}% fewer parameters, ${(r.sizeBytes.after / r.sizeBytes.before).toFixed(2).replace('.', '\\.')}x size, `));
  });

  test('an unreadable report.json still lists the run, without a headline; a translator formats the figures', () => {
    const model = sample('broken');
    const run = path.join(runsDirOf(model), 'quantize-20260101-000000');
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(path.join(run, 'report.json'), '{ not json');
    const runs = listRuns(model);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.headline, undefined);
    assert.equal(runs[0]!.output, undefined);
    const th: typeof english = (m, ...a) => english(m === '{0}% sparse' ? 'เบาบาง {0}%' : m, ...a);
    assert.equal(runHeadline({ sparsity: 0.25, sizeBytes: { before: 400, after: 100 }, metrics: { accuracy: { dropPt: 0.04 } } }, th), 'เบาบาง 25.0%, 0.25x size, -0.0 pt');
    assert.equal(runHeadline({ sparsity: 0.5, sizeBytes: { before: 100, after: 100 }, metrics: { accuracy: { dropPt: -1.26 } } }), '50.0% sparse, 1.00x size, +1.3 pt');
    assert.equal(runHeadline({ mode: 'weight-only', bits: 4, sparsity: 0, sizeBytes: { before: 800, after: 100 } }), 'weight-only int4, 0.13x size');
    assert.equal(runHeadline({ sparsity: 0, metrics: { accuracy: { gainPt: 2 } } }), '+2.0 pt');
    assert.equal(runHeadline({}), '');
  });

  test('a labelled run shows the accuracy change in points (mnist-8 pruned to 50% on MNIST t10k)', { skip: noSharedData }, async () => {
    // A copy, so the run folder lands in the temp folder and the shared model is only read.
    const model = path.join(dir, 'mnist', 'mnist.onnx');
    fs.mkdirSync(path.dirname(model), { recursive: true });
    fs.copyFileSync(path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx'), model);
    const r = await runPrune({ model, sparsity: 0.5, data: path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz'), limit: 500 });
    const [run] = listRuns(model);
    const drop = r.metrics.accuracy?.dropPt;
    assert.ok(drop !== undefined, 'labelled data gives an accuracy change');
    const headline = `${(r.sparsity * 100).toFixed(1)}% sparse, ${(r.sizeBytes.after / r.sizeBytes.before).toFixed(2)}x size, ${drop > 0 ? '-' : '+'}${Math.abs(drop).toFixed(1)} pt`;
    assert.equal(run?.headline, headline);
    console.log(`mnist-8 run: ${run?.name}: ${run?.headline} (accuracy ${(r.metrics.accuracy!.before * 100).toFixed(2)}% -> ${(r.metrics.accuracy!.after * 100).toFixed(2)}%)`);
  });
});

describe('log: job headlines', () => {
  test('a written model, an analysis, an evaluation and an unknown result', () => {
    assert.equal(jobHeadline({ output: '/x/y.onnx', sizeBytes: { before: 10, after: 5 }, sparsity: 0.5, metrics: { top1Agreement: 0.9 } }), '50.0% sparse, 0.50x size, top-1 agreement 90.0% → /x/y.onnx');
    assert.equal(jobHeadline({ ranking: ['fc1', 'conv1'] }), 'ranked 2 layers, most sensitive first: fc1');
    assert.equal(jobHeadline({ samples: 100, accuracy: 0.9812, ep: 'cpu' }), '100 samples, accuracy 98.12%, ep cpu');
    assert.equal(jobHeadline({ inUse: 'cpu', warnings: [] }), 'provider in use cpu');
    assert.equal(jobHeadline({}), 'done');
    assert.equal(jobHeadline(undefined), 'undefined');
  });
});
