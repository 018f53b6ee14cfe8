import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { repoRoot } from './helpers/paths';

/** The extension manifest is a contract with VS Code and vsce; these checks keep it whole. */
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
const contributes = pkg.contributes;
const declared: string[] = contributes.commands.map((c: { command: string }) => c.command);
/** package.json's user-visible strings are %keys% into package.nls.json (English): resolve them. */
const nls = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.nls.json'), 'utf8')) as Record<string, string>;
const en = (s: string) => s.replace(/^%(.+)%$/, (_m, k: string) => nls[k] ?? s);

test('engine floor, extension kind and restricted-mode support', () => {
  assert.equal(pkg.engines.vscode, '^1.100.0');
  assert.deepEqual(pkg.extensionKind, ['workspace']);
  assert.equal(pkg.capabilities.untrustedWorkspaces.supported, 'limited');
  // vsce refuses @types/vscode newer than the engine floor.
  assert.match(pkg.devDependencies['@types/vscode'], /^\^?~?1\.100\./);
});

test('every command is whittle.*, titled, in the Whittle category, and activates the extension', () => {
  for (const c of contributes.commands) {
    assert.match(c.command, /^whittle\.[a-zA-Z]+$/);
    assert.ok(c.title, c.command);
    assert.equal(en(c.category), 'Whittle');
    assert.ok(pkg.activationEvents.includes(`onCommand:${c.command}`), `activation for ${c.command}`);
  }
  const titles = contributes.commands.map((c: { title: string }) => en(c.title));
  for (const t of ['Inspect Model', 'Compress Model…', 'Analyze Layer Sensitivity', 'Prune…', 'Quantize…', 'Distill…', 'Run Recipe', 'Compare Models', 'Select Execution Provider', 'Open Report']) {
    assert.ok(titles.includes(t), t);
  }
  assert.ok(pkg.activationEvents.includes('workspaceContains:**/*.onnx'));
  assert.ok(pkg.activationEvents.includes('onCustomEditor:whittle.modelInspector'));
});

test('every menu entry names a declared command or submenu', () => {
  const submenus = new Set((contributes.submenus ?? []).map((s: { id: string }) => s.id));
  for (const [menu, entries] of Object.entries(contributes.menus) as Array<[string, Array<{ command?: string; submenu?: string }>]>) {
    for (const e of entries) {
      if (e.command) assert.ok(declared.includes(e.command), `${menu}: ${e.command}`);
      else assert.ok(submenus.has(e.submenu), `${menu}: submenu ${e.submenu}`);
    }
  }
  const explorer = contributes.menus['explorer/context'];
  assert.ok(explorer.every((e: { when: string }) => e.when.includes('resourceExtname == .onnx') && e.when.includes('resourceFilename == model.json')));
  assert.ok(contributes.menus['editor/title'].length > 0);
});

test('custom editor, views, settings and webview bundles line up', () => {
  assert.deepEqual(contributes.customEditors.map((e: { viewType: string }) => e.viewType), ['whittle.modelInspector']);
  assert.deepEqual(contributes.customEditors[0].selector, [{ filenamePattern: '*.onnx' }]);
  assert.deepEqual(contributes.viewsContainers.activitybar.map((v: { id: string }) => v.id), ['whittle']);
  assert.deepEqual(contributes.views.whittle.map((v: { id: string }) => v.id), ['whittle.models', 'whittle.sensitivity']);
  assert.equal(contributes.views.whittle[1].type, 'webview');
  assert.deepEqual(Object.keys(contributes.configuration.properties).sort(), ['whittle.calibration.maxSamples', 'whittle.executionProvider', 'whittle.outputDirectory']);
  assert.deepEqual(contributes.configuration.properties['whittle.executionProvider'].enum, ['auto', 'cpu', 'cuda', 'webgpu', 'dml', 'coreml']);
  for (const bundle of ['extension.js', 'cli.js', 'worker.js', 'webview/inspector.js', 'webview/sensitivity.js']) {
    assert.ok(fs.existsSync(path.join(repoRoot, 'dist', bundle)), `dist/${bundle}`);
  }
  assert.ok(fs.existsSync(path.join(repoRoot, contributes.viewsContainers.activitybar[0].icon)));
});

test('only onnxruntime-node ships as a runtime dependency (everything else is bundled)', () => {
  assert.deepEqual(Object.keys(pkg.dependencies), ['onnxruntime-node']);
  assert.equal(pkg.bin.whittle, './dist/cli.js');
  const npmrc = fs.readFileSync(path.join(repoRoot, '.npmrc'), 'utf8');
  assert.match(npmrc, /^onnxruntime-node-install=skip$/m);
});
