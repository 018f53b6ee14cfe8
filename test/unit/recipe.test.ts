import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { InputError } from '../../src/core/errors';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { sha256File } from '../../src/core/hash';
import { readOrigin } from '../../src/core/origin';
import { runPrune } from '../../src/core/passes/run';
import { runQuantize } from '../../src/core/passes/quantize/run';
import { runRecipe } from '../../src/core/recipe/run';
import { recipeSchema, validateRecipe } from '../../src/core/recipe/schema';
import type { Recipe } from '../../src/core/recipe/types';
import { resolveSpec } from '../../src/core/recipe/write';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { CancelledError } from '../../src/protocol/rpc';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

const dir = tempDir('whittle-recipe-');

/** A folder holding a fresh copy of the sample model (lenet.onnx) and, when given, a recipe beside it. */
function workspace(name: string, recipe?: Recipe): { folder: string; model: string; file: string } {
  const folder = path.join(dir, name);
  fs.mkdirSync(folder, { recursive: true });
  const model = path.join(folder, 'lenet.onnx');
  writeFileAtomic(model, buildSampleModel());
  const file = path.join(folder, 'small.whittle.json');
  if (recipe) fs.writeFileSync(file, JSON.stringify(recipe, null, 2));
  return { folder, model, file };
}

const twoPass: Recipe = {
  model: 'lenet.onnx',
  seed: 3,
  limit: 16,
  ep: 'cpu',
  out: 'out',
  passes: [
    { pass: 'prune', sparsity: 0.5, scope: 'global' },
    { pass: 'quantize', mode: 'static', calibration: 'minmax' },
  ],
};

describe('recipe schema and validation', () => {
  test('the committed schemas/whittle-recipe.schema.json is recipeSchema()', () => {
    const committed = JSON.parse(fs.readFileSync(path.join(repoRoot, 'schemas', 'whittle-recipe.schema.json'), 'utf8'));
    assert.deepEqual(committed, JSON.parse(JSON.stringify(recipeSchema())), 'run npm run schema');
  });

  test('the schema is draft-07, made from the pass tables, and package.json contributes it for *.whittle.json', () => {
    const s = recipeSchema() as { $schema: string; properties: { passes: { items: { properties: { pass: { enum: string[] } }; allOf: Array<{ then: { properties: Record<string, { minimum?: number; maximum?: number; enum?: unknown[] }> } }> } } } };
    assert.equal(s.$schema, 'http://json-schema.org/draft-07/schema#');
    const items = s.properties.passes.items;
    assert.deepEqual(items.properties.pass.enum, ['prune', 'quantize', 'finetune']);
    const prune = items.allOf[0].then.properties;
    assert.equal(prune.sparsity.minimum, 0);
    assert.equal(prune.sparsity.maximum, 1);
    assert.deepEqual(items.allOf[1].then.properties.mode.enum, ['weight-only', 'static', 'dynamic', 'fp16']);
    assert.ok('epochs' in items.allOf[2].then.properties && 'noMasks' in items.allOf[2].then.properties, 'finetune from its table');
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    assert.deepEqual(pkg.contributes.jsonValidation, [{ fileMatch: '*.whittle.json', url: './schemas/whittle-recipe.schema.json' }]);
  });

  test('a valid recipe has no issues', () => {
    assert.deepEqual(validateRecipe(twoPass), []);
    assert.deepEqual(validateRecipe({ model: 'm.onnx', data: 'd.gz', passes: [{ pass: 'quantize', mode: 'weight-only', bits: 4, exclude: 'a,b' }, { pass: 'finetune', epochs: 2, noMasks: true, qat: 8 }] }), []);
  });

  test('every problem is reported with its JSON pointer', () => {
    const issues = validateRecipe({
      modle: 'typo.onnx',
      seed: -1,
      ep: 'tpu',
      passes: [
        { pass: 'prune', sparsity: 1.5, method: 'random', exclud: ['x'] },
        { pass: 'quantize', mode: 'static', bits: '3', perChannel: 'yes' },
        { pass: 'shrink' },
        { pass: 'finetune', epochs: 1.5 },
        { sparsity: 0.5 },
        { pass: 'distill' },
      ],
    });
    const at = (p: string) => issues.find((i) => i.path === p)?.message ?? '(none)';
    assert.match(at('/modle'), /unknown field 'modle'/);
    assert.match(at('/model'), /missing/);
    assert.match(at('/seed'), /between 0 and inf/);
    assert.match(at('/ep'), /one of auto, cpu/);
    assert.match(at('/passes/0/sparsity'), /between 0 and 1, not 1.5/);
    assert.match(at('/passes/0/method'), /one of magnitude, wanda, sparsegpt, not 'random'/);
    assert.match(at('/passes/0/exclud'), /unknown parameter 'exclud' of pass prune/);
    assert.match(at('/passes/1/bits'), /one of 8, 4, not '3'/);
    assert.match(at('/passes/1/perChannel'), /must be a boolean, not a string/);
    assert.match(at('/passes/2/pass'), /unknown pass "shrink"/);
    assert.match(at('/passes/3/epochs'), /whole number/);
    assert.match(at('/passes/4/pass'), /missing/);
    assert.match(at('/passes/5/pass'), /'distill' is not available in recipes yet/);
    assert.equal(issues.length, 13, JSON.stringify(issues, null, 1));
    assert.deepEqual(validateRecipe([]), [{ path: '', message: 'a recipe must be a JSON object, not an array' }]);
    assert.match(validateRecipe({ model: 'm.onnx', passes: [{ pass: 'finetune' }] })[0].path, /^\/passes\/0\/data$/);
    assert.equal(validateRecipe({ model: 'm.onnx', maxDrop: 1, passes: [{ pass: 'prune', sparsity: 0.5 }] })[0].path, '/maxDrop');
  });

  // ajv (draft-07) comes with the linter; the check is skipped where it is absent.
  const Ajv = (() => {
    try {
      return module.require('ajv') as new (o: object) => { compile(s: object): ((v: unknown) => boolean) & { errors?: unknown } };
    } catch {
      return undefined;
    }
  })();
  test('a JSON Schema validator agrees with validateRecipe', { skip: Ajv ? false : 'ajv is not installed' }, () => {
    const check = new Ajv!({ allErrors: true }).compile(recipeSchema());
    const cases: unknown[] = [
      twoPass,
      { model: 'm.onnx', data: 'd.gz', maxDrop: 0.5, shapes: { x: [1, 3] }, passes: [{ pass: 'quantize', mode: 'weight-only', bits: 4, exclude: ['a'] }, { pass: 'finetune', epochs: 2, noMasks: true, qat: '8' }] },
      { model: 'm.onnx', passes: [{ pass: 'prune', sparsity: 0.5, structured: 'channels', tfjsDtype: 'uint8' }] },
      { model: 'm.onnx', passes: [] },
      { passes: [{ pass: 'prune', sparsity: 0.5 }] },
      { model: 'm.onnx', passes: [{ pass: 'prune', sparsity: 1.5 }] },
      { model: 'm.onnx', passes: [{ pass: 'prune', sparsity: 0.5, method: 'random' }] },
      { model: 'm.onnx', passes: [{ pass: 'prune', sparsity: 0.5, exclud: 'x' }] },
      { model: 'm.onnx', passes: [{ pass: 'quantize', perChannel: 'yes' }] },
      { model: 'm.onnx', passes: [{ pass: 'quantize', bits: 3 }] },
      { model: 'm.onnx', passes: [{ pass: 'shrink' }] },
      { model: 'm.onnx', ep: 'tpu', passes: [{ pass: 'quantize' }] },
      { model: 'm.onnx', modle: 'x', passes: [{ pass: 'quantize' }] },
      { model: 3, passes: [{ pass: 'quantize' }] },
    ];
    for (const c of cases) assert.equal(check(c), validateRecipe(c).length === 0, JSON.stringify(c));
  });

  test('runRecipe refuses a bad recipe with one line naming the file and the JSON path, and writes nothing', async () => {
    const w = workspace('bad', { model: 'lenet.onnx', passes: [{ pass: 'prune', sparsity: 2 }] });
    await assert.rejects(runRecipe({ file: w.file }), (err: Error) => err instanceof InputError && err.message === `${w.file}: /passes/0/sparsity: must be between 0 and 1, not 2`);
    fs.writeFileSync(w.file, '{"model": "lenet.onnx",');
    await assert.rejects(runRecipe({ file: w.file }), (err: Error) => err instanceof InputError && err.message.startsWith(`${w.file}: not valid JSON`));
    assert.deepEqual(fs.readdirSync(w.folder).sort(), ['lenet.onnx', 'small.whittle.json']);
  });
});

describe('runRecipe', () => {
  test('prune then quantize: one run folder, each step on the previous output, the same model byte for byte from another folder', async () => {
    const a = workspace('a', twoPass);
    const before = fs.readFileSync(a.model);
    const r = await runRecipe({ file: a.file });
    const out = path.join(a.folder, 'out');
    assert.equal(r.outDir, out);
    assert.equal(r.output, path.join(out, 'lenet.onnx'));
    for (const f of ['lenet.onnx', 'recipe.whittle.json', 'report.json', 'report.md', 'report.html', 'steps']) assert.ok(fs.existsSync(path.join(out, f)), f);
    assert.deepEqual(r.steps.map((s) => s.pass), ['prune', 'quantize']);
    assert.deepEqual(r.steps.map((s) => path.relative(out, path.dirname(s.output))), [path.join('steps', '1-prune'), path.join('steps', '2-quantize')]);
    // The quantize step read the pruned model: its report's source is step 1's output.
    const q = JSON.parse(fs.readFileSync(r.steps[1].report, 'utf8'));
    assert.equal(q.mode, 'static');
    assert.equal(path.resolve(path.dirname(r.steps[1].report), JSON.parse(fs.readFileSync(path.join(path.dirname(r.steps[1].report), 'recipe.whittle.json'), 'utf8')).model), r.steps[0].output);
    // The final model is pruned (about half the weights zero, kept through int8) and quantized.
    assert.ok(r.sparsity > 0.45 && r.sparsity < 0.6, `sparsity ${r.sparsity}`);
    assert.ok(r.sizeBytes.after < r.sizeBytes.before / 2, JSON.stringify(r.sizeBytes));
    assert.ok(r.params.after < r.params.before * 0.6, JSON.stringify(r.params));
    const m = OnnxModel.open(r.output);
    const ops = new Set(m.graph.node.map((n) => n.opType));
    const meta = new Map(m.proto.metadataProps.map((e) => [e.key, e.value]));
    m.close();
    assert.ok(ops.has('DequantizeLinear') && ops.has('QuantizeLinear'), [...ops].join());
    assert.equal(meta.get('whittle.source_sha256'), sha256File(a.model));
    // Provenance: the recipe as written, no time, no absolute path.
    for (const [k, v] of meta) assert.ok(!v.includes(dir) && !/\d{8}-\d{6}|\d{4}-\d\d-\d\dT/.test(v), `${k}: ${v}`);
    assert.deepEqual(JSON.parse(meta.get('whittle.recipe')!).passes, twoPass.passes);
    assert.equal(r.sha256, sha256File(r.output));
    assert.ok(before.equals(fs.readFileSync(a.model)), 'the source is unchanged');

    // The normalised recipe runs again (from inside the run folder) to the same bytes.
    const normalised = JSON.parse(fs.readFileSync(r.recipeOut, 'utf8')) as Recipe;
    assert.deepEqual(validateRecipe(normalised), []);
    assert.equal(path.resolve(out, normalised.model), a.model);
    assert.equal(normalised.sourceSha256, sha256File(a.model));
    const again = await runRecipe({ file: r.recipeOut, out: path.join(dir, 'again') });
    assert.equal(again.sha256, r.sha256, 'same recipe and seed, same bytes');

    // The same recipe in another folder, run from another working directory.
    const b = workspace('b/deeper', twoPass);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const rb = await runRecipe({ recipe: twoPass, baseDir: b.folder });
      assert.equal(rb.sha256, r.sha256, 'same bytes from another folder');
    } finally {
      process.chdir(cwd);
    }

    // The Inspector reads the run folder as a whole-chain origin.
    const origin = readOrigin(r.output);
    assert.equal(origin?.pass, 'recipe');
    assert.equal(origin?.source, a.model);
    assert.match(origin!.summary, /^prune \+ quantize/);
  });

  test('without out: <model>.whittle/<recipe name>-<stamp>/; a cancelled run leaves nothing behind and stops within 1 s', async () => {
    const w = workspace('cancel', { ...twoPass, out: undefined, passes: [{ pass: 'prune', sparsity: 0.3 }] });
    const r = await runRecipe({ file: w.file });
    assert.match(path.relative(w.folder, r.outDir), /^lenet\.whittle[/\\]small-\d{8}-\d{6}(-\d+)?$/);
    fs.rmSync(path.join(w.folder, 'lenet.whittle'), { recursive: true });

    // Cancel at several points of the run: before it starts, in the first pass and later.
    const slow: Recipe = { ...twoPass, out: undefined, limit: 64, passes: [{ pass: 'prune', sparsity: 0.5, method: 'sparsegpt' }, { pass: 'quantize', mode: 'static', calibration: 'entropy' }] };
    fs.writeFileSync(w.file, JSON.stringify(slow));
    for (const delay of [0, 150, 600]) {
      const controller = new AbortController();
      const started = runRecipe({ file: w.file }, controller.signal);
      let abortedAt = 0;
      setTimeout(() => {
        abortedAt = Date.now();
        controller.abort();
      }, delay);
      await assert.rejects(started, (err: Error) => {
        assert.ok(err instanceof CancelledError, `cancel after ${delay} ms: ${err.stack}`);
        return true;
      });
      const took = Date.now() - abortedAt;
      assert.ok(took < 1000, `stopped ${took} ms after the cancel`);
      assert.deepEqual(fs.readdirSync(w.folder).sort(), ['lenet.onnx', 'small.whittle.json'], `nothing left after a cancel at ${delay} ms`);
    }
  });

  test("each command's recipe.whittle.json is a Recipe that whittle run accepts and repeats", async () => {
    const w = workspace('commands');
    const p = await runPrune({ model: w.model, sparsity: 0.6, scope: 'global', data: 'random', limit: 8, seed: 1 });
    const q = await runQuantize({ model: w.model, mode: 'weight-only', bits: 8, limit: 8, seed: 1 });
    for (const r of [p, q]) {
      const recipe = JSON.parse(fs.readFileSync(r.recipe, 'utf8')) as Recipe;
      assert.deepEqual(validateRecipe(recipe), [], r.recipe);
      assert.equal(recipe.tool, 'whittle');
      assert.equal(path.resolve(path.dirname(r.recipe), recipe.model), w.model);
      const again = await runRecipe({ file: r.recipe, out: path.join(dir, `repeat-${recipe.passes[0].pass}`) });
      // The same weights (provenance differs: a chain records its recipe).
      const [x, y] = [OnnxModel.open(r.output), OnnxModel.open(again.output)];
      try {
        const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
        assert.deepEqual([...y.weights().keys()].sort(), [...x.weights().keys()].sort());
        for (const [name, t] of x.weights()) assert.ok(bytes(y.weights().get(name)!.ref.read()).equals(bytes(t.ref.read())), name);
      } finally {
        x.close();
        y.close();
      }
    }
    const pr = JSON.parse(fs.readFileSync(p.recipe, 'utf8')) as Recipe;
    assert.deepEqual(pr.passes, [{ pass: 'prune', sparsity: 0.6, scope: 'global' }]);
    assert.equal(pr.data, 'random');
    assert.equal(pr.seed, 1);
  });
});

describe('whittle run (CLI)', () => {
  const cli = path.join(repoRoot, 'dist', 'cli.js');
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, WHITTLE_DEBUG: '' } });

  test('a schema error exits 1 with one stderr line naming the file and the JSON path', () => {
    const w = workspace('cli-bad', { model: 'lenet.onnx', passes: [{ pass: 'quantize', mode: 'int3' }] });
    const r = run('run', w.file, '--json');
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `whittle: ${w.file}: /passes/0/mode: must be one of weight-only, static, dynamic, fp16, not 'int3'\n`);
  });

  test('gives the same output hash as runRecipe, and --out overrides the recipe', async () => {
    const w = workspace('cli', twoPass);
    const direct = await runRecipe({ file: w.file });
    const out = path.join(dir, 'cli-out');
    const r = run('run', w.file, '--out', out, '--json');
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.outDir, out);
    assert.equal(res.sha256, direct.sha256);
    assert.equal(sha256File(path.join(out, 'lenet.onnx')), direct.sha256);
    const text = run('run', w.file, '--out', path.join(dir, 'cli-text'));
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /prune -> quantize/);
    // Common flags replace the recipe's top-level settings.
    const seeded = run('run', w.file, '--out', path.join(dir, 'cli-seed'), '--seed', '4', '--limit', '8', '--json');
    assert.equal(seeded.status, 0, seeded.stderr);
    const s = JSON.parse(seeded.stdout);
    assert.equal(s.metrics.after.samples, 8);
    assert.deepEqual(JSON.parse(fs.readFileSync(s.recipeOut, 'utf8')).seed, 4);
    const bad = run('run', w.file, '--limit', '0');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /\/limit: must be between 1 and inf, not 0/);
  });
});

describe('runRecipe on mnist-8', { skip: noSharedData }, () => {
  test('prune then quantize with labelled data: accuracy before and after, and the chain budget holds', async () => {
    const folder = path.join(dir, 'mnist');
    fs.mkdirSync(folder, { recursive: true });
    const model = path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx');
    const images = path.join(sharedData!, 'mnist', 't10k-images-idx3-ubyte.gz');
    const file = path.join(folder, 'mnist.whittle.json');
    const recipe: Recipe = {
      model: path.relative(folder, model),
      data: `${path.relative(folder, images)}#500:1000`,
      seed: 0,
      ep: 'cpu',
      out: 'run',
      maxDrop: 2,
      passes: [
        { pass: 'prune', sparsity: 0.5 },
        { pass: 'quantize', mode: 'static', calibData: `${path.relative(folder, images)}#:256` },
      ],
    };
    fs.writeFileSync(file, JSON.stringify(recipe));
    const r = await runRecipe({ file });
    assert.ok(r.metrics.accuracy, 'labelled data gives accuracy');
    assert.equal(r.metrics.after.samples, 500);
    assert.ok(r.metrics.accuracy.before > 0.95, `accuracy before ${r.metrics.accuracy.before}`);
    assert.ok(r.budget && r.budget.metric === 'accuracy' && r.budget.dropPt <= 2, JSON.stringify(r.budget));
    assert.equal(r.metrics.accuracy.dropPt, r.budget.dropPt);
    // The prune step took the chain's budget as its own: a --max-drop search whose tries the report charts.
    const prune = JSON.parse(fs.readFileSync(r.steps[0].report, 'utf8'));
    assert.equal(prune.budget.maxDropPt, 2);
    assert.ok(r.reportData.pareto && r.reportData.pareto.points.some((p) => p.chosen), 'the chosen candidate is marked');
    const normalised = JSON.parse(fs.readFileSync(r.recipeOut, 'utf8')) as Recipe;
    assert.equal(resolveSpec(normalised.passes[1].calibData as string, r.outDir), `${images}#:256`, 'data paths relative to the run folder');
    assert.ok(!path.isAbsolute(normalised.passes[1].calibData as string));
  });

  test('prune then finetune: the step trains on its own data, pruned zeros stay, and the recipe it writes validates', async () => {
    const folder = path.join(dir, 'mnist-ft');
    fs.mkdirSync(folder, { recursive: true });
    const model = path.join(sharedData!, 'models', 'onnx-mnist-8', 'mnist.onnx');
    const mnist = path.join(sharedData!, 'mnist');
    const file = path.join(folder, 'ft.whittle.json');
    const recipe: Recipe = {
      model: path.relative(folder, model),
      data: `${path.relative(folder, path.join(mnist, 't10k-images-idx3-ubyte.gz'))}#:500`,
      seed: 1,
      ep: 'cpu',
      out: 'run',
      passes: [
        { pass: 'prune', sparsity: 0.7 },
        { pass: 'finetune', data: `${path.relative(folder, path.join(mnist, 'train-images-idx3-ubyte.gz'))}#:2000`, evalData: `${path.relative(folder, path.join(mnist, 't10k-images-idx3-ubyte.gz'))}#500:1000`, epochs: 1, lr: 0.0005 },
      ],
    };
    fs.writeFileSync(file, JSON.stringify(recipe));
    const r = await runRecipe({ file });
    const prune = JSON.parse(fs.readFileSync(r.steps[0].report, 'utf8'));
    const ft = JSON.parse(fs.readFileSync(r.steps[1].report, 'utf8'));
    assert.equal(ft.training.epochs, 1);
    assert.ok(ft.metrics.after.accuracy > prune.metrics.accuracy.after, `fine-tuning recovers: ${prune.metrics.accuracy.after} -> ${ft.metrics.after.accuracy}`);
    assert.ok(Math.abs(r.sparsity - prune.sparsity) < 0.01, `pruned zeros kept: ${prune.sparsity} -> ${r.sparsity}`);
    assert.equal(r.metrics.after.samples, 500);
    const written = JSON.parse(fs.readFileSync(path.join(path.dirname(r.steps[1].output), 'recipe.whittle.json'), 'utf8')) as Recipe;
    assert.deepEqual(validateRecipe(written), []);
    assert.equal(written.passes[0].pass, 'finetune');
    assert.equal(written.passes[0].lr, 0.0005);
    assert.equal(resolveSpec(written.data, path.dirname(r.steps[1].output)), `${path.join(mnist, 'train-images-idx3-ubyte.gz')}#:2000`, 'the step trained on its own data');
    assert.equal(resolveSpec(written.passes[0].evalData as string, path.dirname(r.steps[1].output)), `${path.join(mnist, 't10k-images-idx3-ubyte.gz')}#500:1000`);
  });
});
