import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { repoRoot } from '../../scripts/codeServer';
import { sampleModelName } from '../../scripts/sampleWorkspace';
import { sampleModelParams } from '../../src/core/samples/sampleModel';
import { check, type Steps } from './lib/steps';
import { openUntil, quickOpen } from './lib/workbench';

/**
 * The Compress wizard in real VS Code (called from test/e2e/run.ts after the other UI steps, or alone by
 * out/e2e/compressOnly.js): Explorer ▸ Whittle ▸ Compress Model…, the model card, a goal preset, data (MNIST
 * with a preview when ../shared/data has it, else random), review and Run; the report opens with real numbers;
 * the output and recipe files sit beside the source, whose bytes are unchanged; the saved recipe's "▶ Run recipe"
 * CodeLens writes the same output hash; a recipe with a schema error shows squiggles; Cancel mid-run leaves no
 * run folder and the wizard is ready again within a second. Screenshots go to test-results/compress-*.png.
 */
export async function compressWizardSteps(page: Page, steps: Steps, workspace: string): Promise<void> {
  const results = path.join(repoRoot, 'test-results');
  fs.mkdirSync(results, { recursive: true });
  const shot = async (name: string) => {
    await page.screenshot({ path: path.join(results, `${name}.png`) });
    steps.log(`screenshot test-results/${name}.png`);
  };
  const source = path.join(workspace, sampleModelName);
  const runsDir = path.join(workspace, 'lenet-sample.whittle');
  const recipeFile = path.join(workspace, 'lenet-sample.whittle.json');
  const sourceSha = sha256(source);
  const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(repoRoot, '..', 'shared', 'data');
  const mnist = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
  const hasMnist = fs.existsSync(mnist);
  let wizard: Frame | undefined;
  let first: { output: string; sha: string } | undefined;

  const failShot = (name: string, fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (err) {
      await shot(`${name}-failed`).catch(() => {});
      throw err;
    }
  };

  await steps.step('Explorer ▸ Whittle ▸ Compress Model… opens the wizard on the model card', failShot('compress-1-model', async () => {
    await explorerCompress(page);
    wizard = await frameWith(page, '#card-params', 60_000);
    const params = (await wizard.locator('#card-params').textContent())?.trim();
    check(params === sampleModelParams.toLocaleString('en-US'), `the model card shows '${params}' parameters, expected ${sampleModelParams}`);
    await shot('compress-1-model');
  }));
  if (!wizard) return;
  const w = wizard;

  await steps.step('step 2: the goal presets list, and "int8 for CPU" is chosen', failShot('compress-2-goal', async () => {
    await w.locator('#next').click();
    await w.locator('#presets').waitFor({ timeout: 10_000 });
    const labels = await w.locator('#presets label.choice').allTextContents();
    check(labels.length >= 6 && labels.some((l) => l.includes('Smallest file within 1% accuracy')) && labels.some((l) => l.includes('Custom passes')), `presets: ${labels.join(' | ')}`);
    await w.locator('label[for="preset-int8-cpu"]').click();
    await w.locator('#preset-passes', { hasText: 'quantize mode=static' }).waitFor({ timeout: 5_000 });
    // The custom editor's forms come from the passes' parameter tables.
    await w.locator('label[for="preset-custom"]').click();
    const fields = await w.locator('#custom-passes [data-param]').evaluateAll((els) => els.map((e) => e.getAttribute('data-param')));
    check(fields.includes('calibration') && fields.includes('mode') && fields.includes('maxDrop'), `custom quantize form fields: ${fields.join(', ')}`);
    await w.locator('label[for="preset-int8-cpu"]').click();
    await shot('compress-2-goal');
    fs.copyFileSync(path.join(results, 'compress-2-goal.png'), path.join(repoRoot, 'docs', 'compress-wizard.png'));
  }));

  await steps.step(`step 3: data${hasMnist ? ' (MNIST t10k, previewed as images)' : ' (random, with its warning)'}`, failShot('compress-3-data', async () => {
    await w.locator('#next').click();
    await w.locator('#data-limit').waitFor({ timeout: 10_000 });
    await w.locator('#data-limit').fill('64');
    await w.locator('#data-limit').dispatchEvent('change');
    if (hasMnist) {
      await w.locator('#data-spec').fill(mnist);
      await w.locator('#data-spec').dispatchEvent('change');
      await w.locator('#data-preview canvas.sample').nth(7).waitFor({ timeout: 15_000 });
      const desc = (await w.locator('#data-description').textContent()) ?? '';
      check(/10,000 × 28 × 28/.test(desc), `data description '${desc}'`);
      // The first MNIST test digit is a 7: its canvas has ink.
      const ink = await w.locator('#data-preview canvas.sample').first().evaluate((c: HTMLCanvasElement) => {
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let on = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 128) on++;
        return on;
      });
      check(ink > 50, `the first preview sample has ${ink} bright pixels`);
    } else {
      await w.locator('label[for="data-random"]').click();
      await w.locator('#random-warning').waitFor({ timeout: 10_000 });
    }
    await shot('compress-3-data');
  }));

  await steps.step('step 4: review the recipe JSON, Run; the report opens with real numbers', failShot('compress-4-run', async () => {
    await w.locator('#next').click();
    const text = w.locator('#recipe-json');
    await text.waitFor({ timeout: 10_000 });
    const recipe = JSON.parse(await text.inputValue()) as { model: string; passes: Array<{ pass: string; mode?: string }> };
    check(recipe.model === sampleModelName && recipe.passes.length === 1 && recipe.passes[0].mode === 'static', `recipe ${JSON.stringify(recipe)}`);
    await shot('compress-4-review');
    const t0 = Date.now();
    await w.locator('#run:not([disabled])').click();
    await w.locator('#run-status[data-state="running"]').waitFor({ timeout: 10_000 });
    await w.locator('#run-status[data-state="done"], #run-status[data-state="error"]').waitFor({ timeout: 240_000 });
    const status = (await w.locator('#run-status').textContent()) ?? '';
    check((await w.locator('#run-status').getAttribute('data-state')) === 'done', `run status: ${status}`);
    const output = ((await w.locator('#result-output').textContent()) ?? '').trim();
    const sha = ((await w.locator('#result-sha256').textContent()) ?? '').trim();
    steps.log(`wizard run took ${Date.now() - t0} ms: ${status}; output ${path.relative(workspace, output)}`);
    first = { output, sha };
    const report = await frameWith(page, '#size-after', 30_000);
    const before = ((await report.locator('#size-before').textContent()) ?? '').trim();
    const after = ((await report.locator('#size-after').textContent()) ?? '').trim();
    check(/\d/.test(before) && /\d/.test(after) && before !== after, `report sizes before '${before}', after '${after}'`);
    steps.log(`report: size ${before} -> ${after}`);
    await shot('compress-5-report');
    fs.copyFileSync(path.join(results, 'compress-5-report.png'), path.join(repoRoot, 'docs', 'compress-report.png'));
    // Export HTML: VS Code's save dialog (code-server's is a path box), then the standalone page on disk.
    const exported = path.join(workspace, 'exported-report.html');
    await report.locator('#export-html').click();
    const input = page.locator('.quick-input-widget input').first();
    await input.waitFor({ state: 'visible', timeout: 15_000 });
    // The dialog fills in its default path a moment after it shows: type ours after that, and check it stuck.
    for (let i = 0; i < 25 && !(await input.inputValue()).endsWith('-report.html'); i++) await page.waitForTimeout(200);
    await input.fill(exported);
    await page.waitForTimeout(300);
    check((await input.inputValue()) === exported, `the save dialog shows '${await input.inputValue()}'`);
    await input.press('Enter');
    for (let i = 0; i < 25 && !fs.existsSync(exported); i++) await page.waitForTimeout(200);
    const ok = page.locator('.quick-input-widget .monaco-button', { hasText: /^OK$/ });
    if (!fs.existsSync(exported) && (await ok.isVisible())) await ok.click();
    for (let i = 0; i < 50 && !fs.existsSync(exported); i++) await page.waitForTimeout(200);
    check(fs.existsSync(exported), `Export HTML wrote nothing at ${exported}`);
    const html = fs.readFileSync(exported, 'utf8');
    check(html.includes('id="size-after"') && !/<script/i.test(html) && !html.includes('export-html'), 'the exported page is not the standalone report (ids, no scripts, no toolbar)');
    steps.log(`Export HTML: ${html.length} bytes, standalone`);
  }));

  await steps.step('the output and the recipe sit beside the source, whose SHA-256 is unchanged', async () => {
    check(first, 'no run to check');
    check(fs.existsSync(recipeFile), `no recipe at ${recipeFile}`);
    const saved = JSON.parse(fs.readFileSync(recipeFile, 'utf8')) as { model: string };
    check(saved.model === sampleModelName, `saved recipe names model '${saved.model}'`);
    const rel = path.relative(workspace, first.output).split(path.sep);
    check(rel.length === 3 && rel[0] === 'lenet-sample.whittle' && fs.existsSync(first.output), `output at ${first.output}`);
    check(fs.existsSync(path.join(path.dirname(first.output), 'report.html')), 'no report.html in the run folder');
    check(sha256(first.output) === first.sha, `the output's SHA-256 ${sha256(first.output)} is not the one shown (${first.sha})`);
    check(sha256(source) === sourceSha, 'the source model changed');
  });

  await steps.step('the saved recipe\'s "▶ Run recipe" CodeLens writes the same output hash', failShot('compress-codelens', async () => {
    check(first, 'no first run');
    const runsBefore = new Set(fs.readdirSync(runsDir));
    await quickOpen(page, path.basename(recipeFile));
    const lens = page.locator('.codelens-decoration a', { hasText: 'Run recipe' });
    await lens.waitFor({ timeout: 20_000 });
    await shot('compress-6-codelens');
    await lens.click();
    const deadline = Date.now() + 240_000;
    let again: string | undefined;
    while (!again && Date.now() < deadline) {
      for (const name of fs.readdirSync(runsDir).filter((n) => !runsBefore.has(n))) {
        const out = path.join(runsDir, name, path.basename(first.output));
        if (fs.existsSync(path.join(runsDir, name, 'report.html')) && fs.existsSync(out)) again = out;
      }
      if (!again) await page.waitForTimeout(500);
    }
    check(again, 'the CodeLens run wrote no new run folder with a report within 240 s');
    const sha = sha256(again);
    check(sha === first.sha, `the CodeLens run wrote ${sha}, the wizard run ${first.sha}`);
    steps.log(`CodeLens run: ${path.relative(workspace, again)}, SHA-256 ${sha.slice(0, 16)}… (same as the wizard's)`);
    // "Open report" appears beside it once the recipe has run (the report opened over the recipe's editor).
    await page.locator('.tabs-container .tab', { hasText: path.basename(recipeFile) }).first().click();
    await page.locator('.codelens-decoration a', { hasText: 'Open report' }).waitFor({ timeout: 20_000 });
    check(sha256(source) === sourceSha, 'the source model changed');
  }), false);

  await steps.step('`whittle run` of the saved recipe from the shell writes the same output hash as the UI run', async () => {
    check(first, 'no first run');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-shell-run-'));
    try {
      const text = execFileSync(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), 'run', recipeFile, '--out', out, '--json'], { encoding: 'utf8', timeout: 240_000 });
      const result = JSON.parse(text) as { output: string; sha256: string };
      check(result.sha256 === first.sha && sha256(result.output) === first.sha, `the shell run wrote ${result.sha256}, the wizard run ${first.sha}`);
      steps.log(`shell: whittle run ${path.basename(recipeFile)} -> SHA-256 ${result.sha256.slice(0, 16)}… (same as the wizard's)`);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
    check(sha256(source) === sourceSha, 'the source model changed');
  });

  await steps.step('a recipe with a schema error shows squiggles in the editor', failShot('recipe-schema-error', async () => {
    const bad = path.join(workspace, 'broken.whittle.json');
    fs.writeFileSync(bad, `{\n  "model": "${sampleModelName}",\n  "passes": [\n    { "pass": "prune", "sparsity": 1.5 }\n  ]\n}\n`);
    await quickOpen(page, 'broken.whittle.json');
    // The JSON language service marks schema problems (as warnings) from the schema Whittle contributes.
    await page.locator('.monaco-editor .squiggly-warning, .monaco-editor .squiggly-error').first().waitFor({ state: 'attached', timeout: 30_000 });
    await page.keyboard.press('Control+Shift+M');
    const marker = page.locator('.markers-panel .monaco-list-row', { hasText: /maximum/i }).first();
    await marker.waitFor({ timeout: 15_000 });
    steps.log(`schema marker: '${((await marker.textContent()) ?? '').trim()}'`);
    await shot('recipe-schema-error');
    await page.keyboard.press('Control+Shift+M');
  }), false);

  await steps.step('Cancel mid-run: the wizard is ready again within 1 s and no run folder is left', failShot('compress-cancel', async () => {
    // Back to the wizard's tab; a slower goal (a sparsity search and calibration) on more samples.
    // Compress Model… on the same model reveals its open wizard, where it was left.
    await explorerCompress(page);
    await w.locator('#back').waitFor({ state: 'visible', timeout: 10_000 });
    await w.locator('#back').click();
    await w.locator('#back').click();
    await w.locator('label[for="preset-smallest-1pct"]').click();
    await w.locator('#next').click();
    await w.locator('#data-limit').fill(hasMnist ? '2000' : '1000');
    await w.locator('#data-limit').dispatchEvent('change');
    await w.locator('#next').click();
    await w.locator('#recipe-json').waitFor({ timeout: 10_000 });
    const runsBefore = new Set(fs.existsSync(runsDir) ? fs.readdirSync(runsDir) : []);
    await w.locator('#run:not([disabled])').click();
    await w.locator('#run-status[data-state="running"]').waitFor({ timeout: 10_000 });
    // Let it get going: a run folder appears, or a couple of seconds pass.
    for (let i = 0; i < 20 && fs.readdirSync(runsDir).every((n) => runsBefore.has(n)); i++) await page.waitForTimeout(200);
    await page.waitForTimeout(500);
    const started = fs.readdirSync(runsDir).filter((n) => !runsBefore.has(n));
    const midway = ((await w.locator('#run-status').textContent()) ?? '').trim();
    check(midway !== 'Starting…' && (await w.locator('#run-status').getAttribute('data-state')) === 'running', `not mid-run when cancelling: '${midway}'`);
    const t0 = Date.now();
    await w.locator('#cancel').click();
    await w.locator('#run-status[data-state="cancelled"]').waitFor({ timeout: 5_000 });
    const ms = Date.now() - t0;
    check(ms < 1000, `the wizard took ${ms} ms to be ready after Cancel`);
    check((await w.locator('#run:not([disabled])').count()) === 1, 'Run is not enabled again after Cancel');
    await shot('compress-7-cancelled');
    // The worker removes what it had written when it stops (at its next check).
    let left: string[] = [];
    for (let i = 0; i < 60; i++) {
      left = fs.readdirSync(runsDir).filter((n) => !runsBefore.has(n));
      if (left.length === 0) break;
      await page.waitForTimeout(250);
    }
    check(left.length === 0, `cancelled run left ${left.join(', ')}`);
    steps.log(`cancel at '${midway}' (run folder ${started.join(', ') || 'not yet created'}): ready again ${ms} ms after the click; no run folder left`);
    check(sha256(source) === sourceSha, 'the source model changed');
  }), false);
}

/** Explorer ▸ right-click the sample model ▸ Whittle ▸ Compress Model…. */
async function explorerCompress(page: Page): Promise<void> {
  const item = page.getByRole('treeitem', { name: new RegExp(`^${sampleModelName.replace('.', '\\.')}`) }).and(page.locator('[aria-level="1"]')).first();
  if (!(await item.isVisible())) await page.locator('.activitybar .action-item a[aria-label^="Explorer"]').first().click();
  await item.waitFor({ timeout: 20_000 });
  const whittle = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Whittle$/ });
  await openUntil(page, () => item.click({ button: 'right' }), whittle);
  await whittle.hover();
  const entry = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Compress Model…$/ });
  await entry.waitFor({ timeout: 10_000 });
  await entry.hover();
  await entry.click();
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Polls every frame of the page for one that holds `selector` (webviews nest iframes, and several may be open). */
async function frameWith(page: Page, selector: string, timeoutMs: number): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of page.frames()) {
      if ((await f.locator(selector).count().catch(() => 0)) > 0) return f;
    }
    if (Date.now() > deadline) throw new Error(`no frame shows ${selector} within ${timeoutMs / 1000} s`);
    await page.waitForTimeout(200);
  }
}
