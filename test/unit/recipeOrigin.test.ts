import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { readOrigin } from '../../src/core/origin';
import { runPruneTfjs } from '../../src/core/passes/prune/tfjs';
import { runRecipe } from '../../src/core/recipe/run';
import { validateRecipe } from '../../src/core/recipe/schema';
import type { Recipe } from '../../src/core/recipe/types';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-recipe-origin-');

/** A run folder by hand: a model file, report.json naming it, and the recipe given. */
function runDir(name: string, recipe: object, report: object = {}): { model: string; source: string } {
  const source = path.join(dir, name, 'lenet.onnx');
  fs.mkdirSync(path.dirname(source), { recursive: true });
  writeFileAtomic(source, buildSampleModel());
  const run = path.join(dir, name, 'lenet.whittle', 'x');
  fs.mkdirSync(run, { recursive: true });
  const model = path.join(run, 'lenet.onnx');
  fs.copyFileSync(source, model);
  fs.writeFileSync(path.join(run, 'report.json'), JSON.stringify({ output: model, ...report }));
  fs.writeFileSync(path.join(run, 'recipe.whittle.json'), JSON.stringify(recipe));
  return { model, source };
}

describe('readOrigin: the run folder of any command', () => {
  test('a Recipe (model relative to the recipe file)', () => {
    const { model, source } = runDir('new', { tool: 'whittle', model: '../../lenet.onnx', passes: [{ pass: 'prune', sparsity: 0.5 }] }, { sparsity: 0.5 });
    assert.deepEqual(readOrigin(model), { source, pass: 'prune', summary: 'pruned to 50.0% sparsity' });
  });

  test('a chain of passes', () => {
    const { model, source } = runDir('chain', { model: '../../lenet.onnx', passes: [{ pass: 'prune', sparsity: 0.5 }, { pass: 'quantize' }] }, { sparsity: 0.25 });
    assert.deepEqual(readOrigin(model), { source, pass: 'recipe', summary: 'prune + quantize (25.0% sparsity)' });
  });

  test('the recipe shape written before (absolute source, steps) is still read', () => {
    const first = runDir('legacy', {});
    const { model, source } = runDir('legacy', { tool: 'whittle', version: '0.1.0', source: { file: first.source, sha256: 'x' }, steps: [{ pass: 'quantize', params: {} }] }, { mode: 'static' });
    assert.deepEqual(readOrigin(model), { source, pass: 'quantize', summary: 'quantized (static)' });
  });

  test('no origin when the source is gone or the report names another model', () => {
    const { model, source } = runDir('gone', { model: '../../lenet.onnx', passes: [{ pass: 'prune' }] });
    fs.rmSync(source);
    assert.equal(readOrigin(model), undefined);
    const other = runDir('other', { model: '../../lenet.onnx', passes: [{ pass: 'prune' }] }, { output: '/elsewhere.onnx' });
    assert.equal(readOrigin(other.model), undefined);
  });
});

describe('TF.js recipes', { skip: noSharedData }, () => {
  test("the TF.js prune command's recipe runs again with whittle run, to the same weights", async () => {
    const lenet = path.join(sharedData!, 'models', 'tfjs-tensorspace-lenet-mnist', 'mnist.json');
    const r = await runPruneTfjs({ model: lenet, sparsity: 0.6, scope: 'global', out: path.join(dir, 'tfjs-prune'), limit: 8 });
    const recipe = JSON.parse(fs.readFileSync(r.recipe, 'utf8')) as Recipe;
    assert.deepEqual(validateRecipe(recipe), []);
    assert.deepEqual(recipe.passes, [{ pass: 'prune', sparsity: 0.6, scope: 'global' }]);
    const again = await runRecipe({ file: r.recipe, out: path.join(dir, 'tfjs-again') });
    assert.equal(path.basename(again.output), 'mnist.json');
    for (const s of r.shards) assert.ok(fs.readFileSync(s.file).equals(fs.readFileSync(path.join(again.outDir, path.basename(s.file)))), `${path.basename(s.file)}: the same bytes`);
    assert.ok(Math.abs(again.sparsity - r.sparsity) < 1e-9);
    for (const f of ['report.json', 'report.md', 'report.html', 'recipe.whittle.json']) assert.ok(fs.existsSync(path.join(again.outDir, f)), f);
    assert.equal(again.reportData.summary.sizeBytes.after, r.sizeBytes.after);
  });
});
