import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { randomWarning } from '../../src/core/data/synthetic';
import { plannedPasses, recipePasses } from '../../src/core/recipe/passes';
import { presets } from '../../src/core/recipe/presets';
import { repoRoot } from './helpers/paths';

/**
 * The translations cannot drift from the sources: every %key% of package.json is in package.nls.json and
 * package.nls.th.json, and every message the extension host (vscode.l10n.t) or a webview (t from
 * webview/common/l10n.ts) shows has a Thai entry in l10n/bundle.l10n.th.json, found by scanning the sources (plus
 * the core's texts the host translates through a variable: command titles, goal presets, pass help).
 */

const read = (file: string) => fs.readFileSync(path.join(repoRoot, file), 'utf8');
const json = (file: string) => JSON.parse(read(file)) as Record<string, string>;

/** Every "%key%" string anywhere in a JSON value. */
function nlsKeys(value: unknown, out = new Set<string>()): Set<string> {
  if (typeof value === 'string') {
    const m = /^%(.+)%$/.exec(value);
    if (m) out.add(m[1]!);
  } else if (Array.isArray(value)) for (const v of value) nlsKeys(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) nlsKeys(v, out);
  return out;
}

/** The `.ts` files under a folder, recursively. */
function sources(dir: string): string[] {
  return fs.readdirSync(path.join(repoRoot, dir), { withFileTypes: true }).flatMap((d) => {
    const rel = path.join(dir, d.name);
    return d.isDirectory() ? sources(rel) : d.name.endsWith('.ts') ? [rel] : [];
  });
}

/** The `{0}`, `{1}`… placeholders of a message, sorted. */
const placeholders = (s: string) => (s.match(/\{\d+\}/g) ?? []).sort();

/**
 * The string literals passed first to `vscode.l10n.t(…)` or to a translator named `t(…)`, with their file.
 * A call whose first argument is not a literal (commandTitles[id]) is covered by the checks on its values.
 */
export function scanMessages(files: string[]): Map<string, string> {
  const found = new Map<string, string>();
  const call = /(?:\bl10n\.t|(?<![\w.$])t)\(\s*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)"|`((?:[^`\\$]|\\.)*)`)/g;
  for (const file of files) {
    const text = read(file);
    for (const m of text.matchAll(call)) {
      const raw = m[1] ?? m[2] ?? m[3] ?? '';
      const message = raw.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
      if (!found.has(message)) found.set(message, file);
    }
  }
  return found;
}

const pkg = JSON.parse(read('package.json')) as Record<string, unknown>;
const nls = json('package.nls.json');
const nlsTh = json('package.nls.th.json');
const bundleTh = json('l10n/bundle.l10n.th.json');
const thai = /[\u0E00-\u0E7F]/;

test('package.json names its l10n folder and every %key% is in package.nls.json and package.nls.th.json', () => {
  assert.equal(pkg.l10n, './l10n');
  const keys = nlsKeys(pkg);
  assert.ok(keys.size >= 30, `only ${keys.size} %keys% in package.json`);
  for (const k of keys) {
    assert.ok(k in nls, `package.nls.json lacks ${k}`);
    assert.ok(k in nlsTh, `package.nls.th.json lacks ${k}`);
  }
  // No stale or one-sided entries either.
  assert.deepEqual(Object.keys(nls).sort(), [...keys].sort());
  assert.deepEqual(Object.keys(nlsTh).sort(), [...keys].sort());
});

test('every command title, view name and walkthrough text in package.json is translated', () => {
  const contributes = pkg.contributes as Record<string, unknown>;
  const commands = contributes.commands as Array<{ command: string; title: string; category: string }>;
  for (const c of commands) {
    assert.match(c.title, /^%.+%$/, `${c.command}'s title is not a %key%`);
    assert.match(c.category, /^%.+%$/, `${c.command}'s category is not a %key%`);
  }
  const walkthroughs = contributes.walkthroughs as Array<{ title: string; steps: Array<{ title: string; description: string }> }>;
  for (const s of walkthroughs.flatMap((w) => w.steps)) {
    assert.match(s.title, /^%.+%$/);
    assert.match(s.description, /^%.+%$/);
  }
  for (const [k, en] of Object.entries(nls)) {
    const th = nlsTh[k]!;
    assert.ok(th.trim(), `${k} is empty in Thai`);
    // Brand names and technical labels may stay as they are; sentences must be Thai.
    if (en.split(' ').length > 2) assert.match(th, thai, `${k} is not Thai: ${th}`);
    // Command links in walkthrough and welcome texts must survive translation.
    assert.deepEqual(th.match(/\(command:[\w.]+\)/g) ?? [], en.match(/\(command:[\w.]+\)/g) ?? [], `${k}: command links differ`);
  }
});

test('every vscode.l10n.t message in src/extension and every t message in webview/ has a Thai entry', () => {
  const found = scanMessages([...sources('src/extension'), ...sources('webview')]);
  assert.ok(found.size >= 100, `only ${found.size} messages found: the scanner is broken`);
  // Messages translated through a variable: the command titles.
  const commands = read('src/extension/commands.ts');
  const titles = /export const commandTitles = \{([\s\S]*?)\} as const;/.exec(commands)?.[1] ?? '';
  for (const m of titles.matchAll(/'whittle\.\w+': '([^']+)'/g)) found.set(m[1]!, 'src/extension/commands.ts (commandTitles)');
  // And the Compress wizard's goal presets (core data, translated by the host in src/extension/compress.ts).
  for (const p of presets) for (const m of [p.label, p.detail]) found.set(m, 'src/core/recipe/presets.ts');
  // The passes' summaries and parameter help, as the Compress wizard's custom-pass forms show them.
  for (const [name, def] of Object.entries(recipePasses)) {
    if (plannedPasses.includes(name)) continue;
    const shown = [...def.params, ...(def.extra ?? []).filter((x) => !def.params.some((p) => p.name === x.name))];
    for (const m of [def.summary, ...shown.map((s) => s.help)]) found.set(m, `src/core/recipe/passes.ts (${name})`);
  }
  // The core's random-data warning, which the Compress wizard's data preview translates.
  found.set(randomWarning, 'src/core/data/synthetic.ts (randomWarning)');
  const missing = [...found].filter(([m]) => !(m in bundleTh)).map(([m, file]) => `${file}: ${m}`);
  assert.deepEqual(missing, [], 'messages without a Thai entry in l10n/bundle.l10n.th.json');
  const stale = Object.keys(bundleTh).filter((k) => !found.has(k));
  assert.deepEqual(stale, [], 'Thai entries that no source uses any more');
  for (const [en, th] of Object.entries(bundleTh)) {
    assert.deepEqual(placeholders(th), placeholders(en), `placeholders differ: ${en} -> ${th}`);
    assert.ok(th.trim(), `empty Thai entry for ${en}`);
  }
  const translated = Object.values(bundleTh).filter((v) => thai.test(v)).length;
  assert.ok(translated / Object.keys(bundleTh).length > 0.9, `only ${translated} of ${Object.keys(bundleTh).length} entries contain Thai`);
});

test('the scanner finds literals in both call forms and skips look-alikes', () => {
  const dir = fs.mkdtempSync(path.join(repoRoot, 'out', 'l10n-scan-'));
  try {
    const file = path.join(dir, 'x.ts');
    fs.writeFileSync(file, "vscode.l10n.t('A {0}', x); t(\"B\"); t(`C`); const d = foo.t('no'); at('no'); l10n.t('it\\'s');\n");
    const found = scanMessages([path.relative(repoRoot, file)]);
    assert.deepEqual([...found.keys()].sort(), ['A {0}', 'B', 'C', "it's"]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
