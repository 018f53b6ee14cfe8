import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { listRuns } from '../../src/extension/runs';
import { check, type Steps } from './lib/steps';

/** What the polish steps borrow from the UI test in run.ts. */
export interface PolishContext {
  steps: Steps;
  /** The UI test's workspace folder, which holds the sample model and the runs earlier steps wrote. */
  workspace: string;
  sampleModelName: string;
  shot: (name: string) => Promise<void>;
  runFromPalette: (title: string) => Promise<void>;
}

/**
 * Product polish in real VS Code, after the UI test's prune and quantize runs: the Models view shows the sample
 * model's runs with their headline figures and run actions, the Whittle output channel has logged the jobs,
 * and the getting-started walkthrough opens with its three steps. Screenshots go to test-results/.
 */
export async function polishSteps(page: Page, ctx: PolishContext): Promise<void> {
  const { steps, shot } = ctx;
  /** A step body that leaves a screenshot `name`.png when it fails, and no menu or dialog open behind it. */
  const shotOnFail = (name: string, fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (err) {
      await shot(name).catch(() => {});
      await page.keyboard.press('Escape').catch(() => {});
      throw err;
    }
  };

  await steps.step('Models view: the sample model expands to its .whittle runs with headline figures and run actions', async () => {
    const model = path.join(ctx.workspace, ctx.sampleModelName);
    const runs = listRuns(model);
    check(runs.length > 0, `no runs under ${model}: the prune and quantize steps wrote none`);
    const prune = runs.find((r) => r.name.startsWith('prune-') && r.headline?.includes('% sparse'));
    check(prune, `no prune run with a sparsity headline among ${runs.map((r) => `${r.name}: ${r.headline}`).join('; ')}`);
    await page.locator('.activitybar .action-item a[aria-label^="Whittle"]').first().click();
    const header = page.locator('.pane-header', { hasText: /^Models/ }).first();
    await header.waitFor({ timeout: 20_000 });
    // An earlier step collapsed the Models pane to make room for the sensitivity panel.
    if ((await header.getAttribute('aria-expanded')) === 'false') await header.click();
    const pane = page.locator('.pane', { has: header });
    const modelRow = pane.locator('.monaco-list-row', { hasText: ctx.sampleModelName }).first();
    await modelRow.waitFor({ timeout: 20_000 });
    // Every run of the sample model is listed under it, and no copy of the model from a run folder at the top.
    const topLevel = await pane.locator('.monaco-list-row[aria-level="1"]', { hasText: ctx.sampleModelName }).count();
    check(topLevel === 1, `the sample model appears ${topLevel} times at the top of the Models view`);
    const runRow = pane.locator('.monaco-list-row[aria-level="2"]', { hasText: prune.name });
    // Runs written just before (the training steps) make the watcher refresh the tree, which can re-render the row
    // mid-click: expand until the run shows.
    for (let i = 0; i < 20 && !(await runRow.count()); i++) {
      if ((await modelRow.getAttribute('aria-expanded')) !== 'true') await modelRow.locator('.monaco-tl-twistie').click();
      await page.waitForTimeout(1000);
    }
    await runRow.waitFor({ timeout: 20_000 });
    const shown = (await runRow.textContent()) ?? '';
    check(shown.includes(prune.headline!), `the run row reads '${shown}', expected '${prune.name} ${prune.headline}'`);
    // Count only this model's runs: collapse any other model the earlier steps expanded (the distillation teacher).
    const tops = pane.locator('.monaco-list-row[aria-level="1"][aria-expanded="true"]');
    for (let i = (await tops.count()) - 1; i >= 0; i--) {
      const top = tops.nth(i);
      if (!((await top.textContent()) ?? '').includes(ctx.sampleModelName)) await top.locator('.monaco-tl-twistie').click();
    }
    await page.waitForTimeout(300);
    const rows = await pane.locator('.monaco-list-row[aria-level="2"]').count();
    check(rows === runs.length, `${rows} run rows for ${runs.length} runs`);
    steps.log(`Models view: ${runs.length} runs under ${ctx.sampleModelName}; ${prune.name}: ${prune.headline}`);
    await shot('models-view-runs');
    await runRow.click({ button: 'right' });
    const menu = page.locator('.context-view .monaco-menu');
    for (const label of ['Open Report', 'Inspect Output Model', 'Reveal in Explorer', 'Delete Run…']) {
      await menu.locator('.action-label', { hasText: new RegExp(`^${label}$`) }).waitFor({ timeout: 10_000 });
    }
    await page.waitForTimeout(300);
    await shot('models-view-run-menu');
    await page.keyboard.press('Escape');
  }, false);

  await steps.step('Models view: Delete Run… asks first, then removes the run folder, and the tree drops the run', shotOnFail('models-view-delete-failed', async () => {
    const model = path.join(ctx.workspace, ctx.sampleModelName);
    const victim = listRuns(model).find((r) => r.name.startsWith('quantize-'));
    check(victim, 'no quantize run to delete');
    const pane = page.locator('.pane', { has: page.locator('.pane-header', { hasText: /^Models/ }) });
    const row = pane.locator('.monaco-list-row[aria-level="2"]', { hasText: victim.name });
    await row.click({ button: 'right' });
    const entry = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Delete Run…$/ });
    await entry.waitFor({ timeout: 10_000 });
    const dialog = page.locator('.monaco-dialog-box');
    // A click that lands while the menu is still settling is lost: hover, click, and then try the keyboard.
    await entry.hover();
    await entry.click();
    for (let i = 0; i < 5 && !(await dialog.isVisible()); i++) {
      await page.waitForTimeout(1000);
      if (!(await dialog.isVisible()) && (await entry.isVisible())) await page.keyboard.press('Enter');
    }
    await dialog.waitFor({ timeout: 10_000 });
    check(((await dialog.textContent()) ?? '').includes(victim.name), 'the confirmation does not name the run');
    check(fs.existsSync(victim.dir), 'the run folder went before the confirmation');
    await shot('models-view-delete-confirm');
    await dialog.locator('.monaco-button', { hasText: /^Delete$/ }).click();
    for (let i = 0; i < 40 && ((await row.count()) > 0 || fs.existsSync(victim.dir)); i++) await page.waitForTimeout(250);
    check(!fs.existsSync(victim.dir), `${victim.dir} still exists`);
    check((await row.count()) === 0, `${victim.name} is still in the Models view`);
    check(fs.existsSync(model), 'the source model went with the run');
  }), false);

  await steps.step('Whittle: Show Log reveals the Whittle output channel with the jobs logged', shotOnFail('output-log-failed', async () => {
    await ctx.runFromPalette('Whittle: Show Log');
    const panel = page.locator('.part.panel');
    // Monaco renders only the lines in view: go to the top, where the first jobs (the provider probe) are.
    await panel.locator('.view-line').first().waitFor({ timeout: 20_000 });
    // Focus the output editor (its first rendered line can sit under the panel's header after a long log).
    await panel.locator('.output-view .monaco-editor, .monaco-editor').last().click({ force: true });
    await page.keyboard.press('Control+Home');
    // Monaco renders spaces as no-break spaces, which \s matches.
    const line = panel.locator('.view-line', { hasText: /job\s#\d+\s\w+\sfinished\sin\s[\d.]+\ss/ }).first();
    await line.waitFor({ timeout: 20_000 });
    steps.log(`log line: ${((await line.textContent()) ?? '').replace(/\s+/g, ' ').trim().slice(0, 200)}`);
    await shot('output-log');
  }), false);

  await steps.step('the getting-started walkthrough opens with its three steps and their pages', async () => {
    await ctx.runFromPalette('Whittle: Get Started with Whittle');
    const container = page.locator('.gettingStartedContainer');
    await container.locator(':text("Get started with Whittle")').first().waitFor({ timeout: 20_000 });
    for (const title of ['Open the sample model', 'Analyze layer sensitivity', 'Compress it']) {
      await container.locator('.getting-started-step', { hasText: title }).first().waitFor({ timeout: 10_000 });
    }
    await container.locator('.getting-started-step', { hasText: 'Analyze layer sensitivity' }).first().click();
    // The step's markdown page renders in a webview beside the steps.
    let found = false;
    for (let i = 0; i < 40 && !found; i++) {
      for (const f of page.frames()) if ((await f.locator('h1', { hasText: 'Layer sensitivity' }).count().catch(() => 0)) > 0) found = true;
      if (!found) await page.waitForTimeout(500);
    }
    check(found, 'the sensitivity step\'s markdown page did not render');
    await shot('walkthrough');
  }, false);
}
