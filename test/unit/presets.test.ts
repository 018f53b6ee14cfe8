import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseParams, type ParamSpec } from '../../src/core/passes/pass';
import { pruneParams } from '../../src/core/passes/prune/unstructured';
import { normalizeQuantizeOptions } from '../../src/core/passes/quantize';
import { quantizeParams, type QuantizeOptions } from '../../src/core/passes/quantize/params';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { sha256File } from '../../src/core/hash';
import { presetById, presetRecipe, presets } from '../../src/core/recipe/presets';
import { runRecipe } from '../../src/core/recipe/run';
import { validateRecipe } from '../../src/core/recipe/schema';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { tempDir } from './helpers/paths';

const tables: Record<string, ParamSpec[]> = { prune: pruneParams, quantize: quantizeParams };

/** The Compress wizard's goal presets are plain recipe passes that the passes' own parameter tables accept. */
describe('Compress wizard presets', () => {
  test('ids are unique and every preset has passes', () => {
    assert.equal(new Set(presets.map((p) => p.id)).size, presets.length);
    assert.ok(presets.length >= 5);
    for (const p of presets) assert.ok(p.passes.length > 0, p.id);
  });

  test('every parameter of every preset pass is a flag of that pass, and its value parses', () => {
    for (const preset of presets) {
      for (const { pass, ...params } of preset.passes) {
        const table = tables[pass];
        assert.ok(table, `${preset.id}: no parameter table for pass '${pass}'`);
        const names = new Set(table.map((s) => s.name));
        for (const key of Object.keys(params)) assert.ok(names.has(key), `${preset.id}: ${pass} has no parameter '${key}'`);
        const parsed = parseParams<Record<string, unknown>>(table, params);
        for (const [k, v] of Object.entries(params)) assert.equal(String(parsed[k]), String(v), `${preset.id}: ${pass}.${k}`);
        if (pass === 'quantize') normalizeQuantizeOptions(parsed as unknown as QuantizeOptions);
      }
    }
  });

  test('a bad value in a preset would be caught by the table (the check above can fail)', () => {
    assert.throws(() => parseParams(pruneParams, { sparsity: 1.5 }), /--sparsity must be between 0 and 1/);
    assert.throws(() => normalizeQuantizeOptions(parseParams<QuantizeOptions>(quantizeParams, { mode: 'static', bits: '4' })), /--bits 4 is for --mode weight-only/);
  });

  test('presetRecipe copies the passes and carries the model, data, seed and budget', () => {
    const preset = presetById('smallest-1pct')!;
    const recipe = presetRecipe(preset, 'lenet.onnx', 'random', { seed: 3, limit: 16 });
    assert.equal(recipe.model, 'lenet.onnx');
    assert.equal(recipe.data, 'random');
    assert.equal(recipe.seed, 3);
    assert.equal(recipe.limit, 16);
    assert.equal(recipe.maxDrop, 1);
    assert.deepEqual(recipe.passes, preset.passes);
    recipe.passes[0].sparsity = 0.1;
    assert.notEqual(preset.passes[0].sparsity, 0.1, 'the preset itself was changed');
    assert.equal(presetRecipe(presetById('sparse-50')!, 'm.onnx', 'random').maxDrop, undefined);
  });

  test('every preset\'s recipe validates against the recipe schema (and a broken one does not)', () => {
    for (const preset of presets) {
      const recipe = presetRecipe(preset, 'model.onnx', 'mnist.gz', { limit: 64 });
      assert.deepEqual(validateRecipe(recipe, `${preset.id}.whittle.json`), [], preset.id);
    }
    const broken = presetRecipe(presetById('sparse-50')!, 'model.onnx', 'random');
    broken.passes[0].sparsity = 1.5;
    broken.passes.push({ pass: 'quantize', mode: 'int3' });
    const issues = validateRecipe(broken).map((i) => i.path);
    assert.ok(issues.includes('/passes/0/sparsity') && issues.includes('/passes/1/mode'), JSON.stringify(issues));
  });

  test('every preset runs on the sample model (random data, 8 samples) and leaves the source alone', async () => {
    const dir = tempDir('whittle-presets-');
    try {
      const model = path.join(dir, 'lenet.onnx');
      writeFileAtomic(model, buildSampleModel());
      const sha = sha256File(model);
      for (const preset of presets) {
        const file = path.join(dir, `${preset.id}.whittle.json`);
        writeFileAtomic(file, JSON.stringify(presetRecipe(preset, 'lenet.onnx', 'random', { limit: 8 })));
        const result = await runRecipe({ file });
        assert.equal(result.steps.length, preset.passes.length, preset.id);
        assert.deepEqual(result.steps.map((s) => s.pass), preset.passes.map((p) => p.pass), preset.id);
        assert.ok(fs.existsSync(result.output) && fs.existsSync(result.reportHtml), `${preset.id}: output or report missing`);
        assert.equal(sha256File(result.output), result.sha256, preset.id);
        assert.ok(path.basename(result.outDir).startsWith(`${preset.id}-`), `${preset.id}: run folder ${result.outDir}`);
      }
      assert.equal(sha256File(model), sha, 'the source model changed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
