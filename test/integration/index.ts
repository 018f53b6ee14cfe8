import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { sampleModelParams } from '../../src/core/samples/sampleModel';
import type { WhittleApi } from '../../src/extension/extension';

/**
 * Integration tests that run inside the real VS Code extension host (code-server), loaded through the
 * `extensionTestsPath` payload by test/e2e/run.ts. Results go to $WHITTLE_TEST_RESULTS, ending with the
 * line "N passed, M failed".
 */

const tests: Array<[string, () => Promise<void>]> = [];
const test = (name: string, fn: () => Promise<void>) => tests.push([name, fn]);

const extensionId = 'whittle.whittle';
const workspace = () => vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.env.WHITTLE_TEST_WORKSPACE ?? '';
const sample = () => path.join(workspace(), 'lenet-sample.onnx');

async function api(): Promise<WhittleApi> {
  const ext = vscode.extensions.getExtension<WhittleApi>(extensionId);
  assert.ok(ext, `extension ${extensionId} is not loaded`);
  return ext.activate();
}

test('the extension activates and registers every command it declares', async () => {
  await api();
  const ext = vscode.extensions.getExtension(extensionId)!;
  const declared: string[] = ext.packageJSON.contributes.commands.map((c: { command: string }) => c.command);
  const registered = new Set(await vscode.commands.getCommands(true));
  const missing = declared.filter((c) => !registered.has(c));
  assert.deepEqual(missing, []);
  assert.ok(declared.length >= 10);
});

test('the worker inspects the sample model inside the extension host', async () => {
  const summary = await (await api()).inspect(sample());
  assert.equal(summary.params, sampleModelParams);
  assert.deepEqual(summary.layers.map((l) => l.op), ['Conv', 'Conv', 'Gemm', 'Gemm']);
  assert.deepEqual(summary.inputs.map((i) => i.shape), [['batch', 1, 28, 28]]);
});

test('a garbage .onnx gives an error naming the file, and the host survives', async () => {
  const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-it-')), 'garbage.onnx');
  fs.writeFileSync(bad, Buffer.from('this is not a model at all, just text'));
  await assert.rejects((await api()).inspect(bad), (err: Error) => err.message.includes(bad) && /not an ONNX model|not a recognised/.test(err.message));
  // Still alive and answering after the failure.
  assert.equal((await (await api()).inspect(sample())).params, sampleModelParams);
});

test('the custom editor opens a .onnx as the Model Inspector', async () => {
  const uri = vscode.Uri.file(sample());
  await vscode.commands.executeCommand('whittle.inspect', uri);
  const deadline = Date.now() + 10_000;
  let input: unknown;
  while (Date.now() < deadline) {
    input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    if (input instanceof vscode.TabInputCustom) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(input instanceof vscode.TabInputCustom, 'active tab is not a custom editor');
  assert.equal(input.viewType, 'whittle.modelInspector');
  assert.equal(input.uri.fsPath, uri.fsPath);
  await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
});

test('Compare Models runs both models in a worker and reports agreement 1 and SQNR inf for a model against itself', async () => {
  const result = await vscode.commands.executeCommand<{ top1Agreement: number; sqnrDb: unknown; samples: number; ep: string }>('whittle.compare', vscode.Uri.file(sample()), {
    reference: sample(),
    data: 'random',
    limit: 8,
  });
  assert.ok(result, 'no result');
  assert.equal(result.samples, 8);
  assert.equal(result.top1Agreement, 1);
  assert.equal(result.sqnrDb, 'inf');
  // The comparison shows in the Report panel (reportHtml() of the two models).
  const deadline = Date.now() + 30_000;
  let tab: vscode.Tab | undefined;
  while (!tab && Date.now() < deadline) {
    tab = vscode.window.tabGroups.all.flatMap((g) => g.tabs).find((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('whittle.report'));
    if (!tab) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(tab, 'no Report panel opened');
  assert.match(tab.label, /^Compare: lenet-sample\.onnx vs lenet-sample\.onnx$/);
  await vscode.window.tabGroups.close(tab);
});

/** Every file under `dir`, relative, sorted. */
function listFiles(dir: string, prefix = ''): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]))
    .sort();
}

test('Analyze Layer Sensitivity sweeps the sample model in a worker, ranks its 4 layers and writes only its sidecar', async () => {
  const before = listFiles(workspace());
  const result = await vscode.commands.executeCommand<{ ranking: string[]; layers: Array<{ name: string; prune?: Array<{ sparsity: number; metric: number }>; quant?: unknown }>; baseline: { samples: number } }>(
    'whittle.analyzeSensitivity',
    vscode.Uri.file(sample()),
    { data: 'random', kind: 'prune', limit: 8 },
  );
  assert.ok(result, 'no result');
  assert.equal(result.baseline.samples, 8);
  assert.equal(result.ranking.length, 4);
  const summary = await (await api()).inspect(sample());
  assert.deepEqual([...result.ranking].sort(), summary.layers.map((l) => l.name).sort());
  for (const layer of result.layers) {
    assert.ok(layer.prune?.length, `${layer.name} has no pruning sweep`);
    assert.equal(layer.quant, undefined, `${layer.name} has a quantization sweep though kind was prune`);
    // Pruning a layer to 0% leaves the model unchanged.
    assert.equal(layer.prune.find((p) => p.sparsity === 0)?.metric, 0);
  }
  const added = listFiles(workspace()).filter((f) => !before.includes(f));
  assert.deepEqual(added.filter((f) => f !== 'lenet-sample.whittle/analysis.json'), [], `unexpected files: ${added.join(', ')}`);
  const sidecar = JSON.parse(fs.readFileSync(path.join(workspace(), 'lenet-sample.whittle', 'analysis.json'), 'utf8'));
  assert.equal(sidecar.model, 'lenet-sample.onnx');
  assert.equal(sidecar.kind, 'prune');
  assert.equal(sidecar.data, 'random');
  assert.match(sidecar.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(sidecar.result.ranking, result.ranking);
  assert.deepEqual(sidecar.choices, {});
});

test('Prune… writes the pruned model into lenet-sample.whittle/prune-*/, leaves the source bytes alone, and the result is ~50% sparse', async () => {
  const before = fs.readFileSync(sample());
  const result = await vscode.commands.executeCommand<{ output: string; sparsity: number; layers: Array<{ layer: string; sparsity: number }>; report: string } | undefined>(
    'whittle.prune',
    vscode.Uri.file(sample()),
    { sparsity: 0.5, data: 'random', limit: 8 },
  );
  assert.ok(result, 'no result');
  const rel = path.relative(workspace(), result.output).split(path.sep);
  assert.equal(rel.length, 3, `output ${result.output} is not <ws>/lenet-sample.whittle/prune-*/<model>`);
  assert.equal(rel[0], 'lenet-sample.whittle');
  assert.match(rel[1], /^prune-/);
  assert.equal(rel[2], 'lenet-sample.onnx');
  assert.ok(fs.existsSync(result.output) && fs.existsSync(result.report), 'run folder files missing');
  assert.ok(fs.readFileSync(sample()).equals(before), 'the source model changed');
  assert.ok(Math.abs(result.sparsity - 0.5) < 0.01, `result sparsity ${result.sparsity}`);
  // Read back independently: every layer of the pruned file is ~50% zeros; the source's are not.
  const pruned = await (await api()).inspect(result.output);
  assert.equal(pruned.layers.length, 4);
  for (const layer of pruned.layers) assert.ok(Math.abs(layer.weights[0].sparsity - 0.5) < 0.02, `${layer.name} sparsity ${layer.weights[0].sparsity}`);
  const original = await (await api()).inspect(sample());
  assert.ok(original.layers.every((l) => l.weights[0].sparsity < 0.1), 'the source looks pruned');
  // The command opened the pruned model in the inspector.
  const deadline = Date.now() + 10_000;
  let input: unknown;
  while (Date.now() < deadline) {
    input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    if (input instanceof vscode.TabInputCustom && input.uri.fsPath === result.output) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(input instanceof vscode.TabInputCustom && input.uri.fsPath === result.output, 'the pruned model is not open in the inspector');
  await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
});

test('Prune… with structured channels removes whole channels: the written model has fewer parameters, and the dense layers shrink', async () => {
  const before = fs.readFileSync(sample());
  const result = await vscode.commands.executeCommand<{ output: string; params: { before: number; after: number }; structured?: { groups: unknown[] } } | undefined>(
    'whittle.prune',
    vscode.Uri.file(sample()),
    { sparsity: 0.5, structured: true, data: 'random', limit: 4 },
  );
  assert.ok(result?.structured && result.structured.groups.length > 0, `no structured section: ${JSON.stringify(result)?.slice(0, 300)}`);
  assert.ok(fs.readFileSync(sample()).equals(before), 'the source model changed');
  assert.ok(result.params.after < 0.8 * result.params.before, `params ${result.params.before} -> ${result.params.after}`);
  const pruned = await (await api()).inspect(result.output);
  // Kept counts round to multiples of 8 by default: fc1's 64 outputs become 32, and fc2 reads 32 inputs.
  const fc1 = pruned.layers.find((l) => l.name === '/fc1/Gemm');
  const fc2 = pruned.layers.find((l) => l.name === '/fc2/Gemm');
  assert.deepEqual(fc1?.weights[0].shape, [32, 400], `fc1 weight ${JSON.stringify(fc1?.weights[0].shape)}`);
  assert.deepEqual(fc2?.weights[0].shape, [10, 32], `fc2 weight ${JSON.stringify(fc2?.weights[0].shape)}`);
  await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
});

test('Select Execution Provider is backed by the whittle.executionProvider setting', async () => {
  const config = vscode.workspace.getConfiguration('whittle');
  assert.equal(config.inspect('executionProvider')?.defaultValue, 'auto');
  assert.equal(config.inspect('calibration.maxSamples')?.defaultValue, 256);
});

/** Entry point called by the extension host (the extensionTestsPath contract). */
test('Run Recipe runs a *.whittle.json into a run folder beside the model, and Open Report finds its latest run', async () => {
  const recipe = path.join(workspace(), 'it-sparse.whittle.json');
  fs.writeFileSync(recipe, JSON.stringify({ model: 'lenet-sample.onnx', data: 'random', limit: 8, passes: [{ pass: 'prune', sparsity: 0.5 }] }));
  const before = fs.readFileSync(sample());
  const result = await vscode.commands.executeCommand<{ outDir: string; output: string; sha256: string; reportHtml: string; sparsity: number } | undefined>('whittle.runRecipe', vscode.Uri.file(recipe));
  assert.ok(result, 'no result');
  assert.equal(path.relative(workspace(), result.outDir).split(path.sep)[0], 'lenet-sample.whittle');
  assert.match(path.basename(result.outDir), /^it-sparse-/);
  assert.ok(fs.existsSync(result.output) && fs.existsSync(result.reportHtml), 'run folder files missing');
  assert.ok(result.sparsity > 0.4, `sparsity ${result.sparsity}`);
  assert.ok(fs.readFileSync(sample()).equals(before), 'the source model changed');
  const shown = await vscode.commands.executeCommand<string | undefined>('whittle.openReport', vscode.Uri.file(recipe));
  assert.equal(shown, result.outDir);
  // The tab model catches up with a new webview panel a moment later.
  const reportTabs = () => vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('whittle.report'));
  const wanted = `Report: ${path.basename(result.outDir)}`;
  const deadline = Date.now() + 30_000;
  while (!reportTabs().some((t) => t.label === wanted) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const tabs = reportTabs();
  assert.ok(tabs.some((t) => t.label === wanted), `report tabs: ${tabs.map((t) => t.label).join(', ')}`);
  await vscode.window.tabGroups.close(tabs);
});

export async function run(): Promise<void> {
  const out = process.env.WHITTLE_TEST_RESULTS ?? path.join(os.tmpdir(), 'whittle-integration.txt');
  const lines: string[] = [];
  let passed = 0;
  let failed = 0;
  for (const [name, fn] of tests) {
    try {
      await fn();
      passed++;
      lines.push(`ok   ${name}`);
    } catch (err) {
      failed++;
      lines.push(`FAIL ${name}: ${err instanceof Error ? err.message.replace(/\n/g, ' ') : String(err)}`);
    }
    fs.writeFileSync(out, lines.join('\n') + '\n');
  }
  fs.writeFileSync(out, `${lines.join('\n')}\n${passed} passed, ${failed} failed\n`);
  if (failed) throw new Error(`${failed} integration test(s) failed`);
}
