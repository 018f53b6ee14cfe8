import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { repoRoot } from '../../scripts/codeServer';
import { writeToyDigits } from '../unit/helpers/toyDigits';
import { runFromPalette } from './lib/workbench';
import { check, type Steps } from './lib/steps';

/** What the training steps borrow from test/e2e/run.ts's UI session. */
export interface TrainingE2e {
  page: Page;
  steps: Steps;
  workspace: string;
  model: string;
  shot: (page: Page, name: string) => Promise<void>;
  shotOnFail: (page: Page, name: string, fn: () => Promise<void>) => () => Promise<void>;
  explorerWhittle: (page: Page, file: string, entryLabel: string, firstPick: string) => Promise<void>;
  answerPicks: (page: Page, picks: Array<[string, string]>) => Promise<void>;
  frameWith: (page: Page, selector: string, timeoutMs: number) => Promise<Frame>;
}

const toyFolder = 'toy-digits';
/** The fine-tuned sample model, copied beside it as the distillation's teacher. */
const teacherName = 'teacher-finetuned.onnx';

/** Run folders of one command beside the model (`<model>.whittle/<command>-*`). */
function runFolders(workspace: string, model: string, command: string): string[] {
  const dir = path.join(workspace, model.replace(/\.onnx$/, '.whittle'));
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => d.startsWith(command)) : [];
}

/**
 * Explorer ▸ Whittle ▸ Fine-tune… and Distill… on the sample model with a small labelled fixture (toy digits in
 * idx form): a cancelled run (the panel ready again within 1 s, no run folder), a short fine-tune whose live
 * chart and final report render, and a short distillation into a derived student with its diagnostics.
 */
export async function trainingTests(t: TrainingE2e): Promise<void> {
  const { page, steps, workspace, model } = t;
  // Pixels scaled to [0, 1] through manifests (the sample model's seeded weights see raw 0-255 as huge inputs).
  for (const [split, count, seed] of [['train', 1200, 1], ['test', 500, 2]] as const) {
    const images = writeToyDigits(path.join(workspace, toyFolder, split), count, seed);
    const spec = { inputs: { input: { idx: images, scale: 1 / 255 } }, labels: { idx: images.replace('images-idx3', 'labels-idx1') } };
    fs.writeFileSync(path.join(workspace, toyFolder, `toy-${split}.dataset.json`), JSON.stringify(spec));
  }
  const results = path.join(repoRoot, 'test-results');
  const inPanel = (frame: Frame) => ({
    state: () => frame.locator('#training-status').getAttribute('data-state'),
    lossPoints: async () => Number((await frame.locator('svg[data-chart="loss"] path[data-series="loss"]').getAttribute('data-points').catch(() => '0')) ?? 0),
  });

  await steps.step('Fine-tune… shows the live loss chart; Cancel makes the panel ready again within 1 s and leaves no run folder', t.shotOnFail(page, 'finetune-cancel-failed', async () => {
    const before = runFolders(workspace, model, 'finetune');
    await t.explorerWhittle(page, model, 'Fine-tune…', 'training data');
    await t.answerPicks(page, [['training data', 'toy-train.dataset'], ['epochs', 'Custom']]);
    const input = page.locator('.quick-input-widget input').first();
    await input.fill('50');
    await page.keyboard.press('Enter');
    await t.answerPicks(page, [['evaluation data', 'toy-test.dataset']]);
    const frame = await t.frameWith(page, '#training-status[data-state="running"]', 60_000);
    const panel = inPanel(frame);
    const deadline = Date.now() + 60_000;
    while ((await panel.lossPoints()) < 2 && Date.now() < deadline) await page.waitForTimeout(200);
    check((await panel.lossPoints()) >= 2, 'the live loss chart got fewer than 2 points within 60 s');
    const cards = (await frame.locator('#live-cards').textContent()) ?? '';
    steps.log(`live: ${await panel.lossPoints()} loss points; cards '${cards.replace(/\s+/g, ' ').trim()}'`);
    await t.shot(page, 'finetune-live-chart');
    const t0 = Date.now();
    await frame.locator('#training-cancel').click();
    await frame.locator('#training-status[data-state="stopped"]').waitFor({ timeout: 5_000 });
    const ms = Date.now() - t0;
    const text = (await frame.locator('#training-status').textContent()) ?? '';
    const inPage = Number(await frame.locator('#training-status').getAttribute('data-cancel-ms'));
    check(/Cancelled/.test(text), `status after Cancel: '${text}'`);
    // The budget is on the webview's own clock (click event to the Cancelled state, through the host and the
    // worker); Playwright's figure adds its click checks and polling, so it gets a looser sanity bound.
    check(inPage < 1000, `the panel was ready ${inPage} ms after the Cancel click`);
    check(ms < 2000, `the panel was ready ${ms} ms after Cancel as Playwright sees it`);
    // The worker drains before it ends: give it a moment, then no new run folder may be there.
    await page.waitForTimeout(3000);
    const after = runFolders(workspace, model, 'finetune');
    check(after.length === before.length, `run folders after cancel: ${JSON.stringify(after)} (before: ${JSON.stringify(before)})`);
    steps.log(`cancelled: panel ready ${inPage} ms after the click in the webview (${ms} ms as Playwright sees it); run folders ${JSON.stringify(after)}`);
  }), false);

  await steps.step('Fine-tune… (1 epoch on toy digits) ends with the report: before/after accuracy, size, output, Open in Inspector', t.shotOnFail(page, 'finetune-failed', async () => {
    await t.explorerWhittle(page, model, 'Fine-tune…', 'training data');
    await t.answerPicks(page, [['training data', 'toy-train.dataset'], ['epochs', '1'], ['evaluation data', 'toy-test.dataset']]);
    const frame = await t.frameWith(page, '#training-report[data-kind="finetune"]', 180_000);
    const acc = await frame.locator('#training-report tr[data-row="accuracy"] td').allTextContents();
    const size = await frame.locator('#training-report tr[data-row="size"] td').allTextContents();
    const output = ((await frame.locator('#training-output').textContent()) ?? '').trim();
    check(acc.length === 3 && /%$/.test(acc[0]) && /%$/.test(acc[1]), `accuracy row ${JSON.stringify(acc)}`);
    check(size.length === 3 && /B$/.test(size[0]) && /B$/.test(size[1]), `size row ${JSON.stringify(size)}`);
    check(/finetune/.test(output) && fs.existsSync(output), `output ${output}`);
    const points = await inPanel(frame).lossPoints();
    check(points >= 2, `the final loss curve has ${points} points`);
    const accDots = await frame.locator('svg[data-chart="accuracy"] circle.series-accuracy').count();
    check(accDots >= 1, 'the accuracy chart shows no evaluation');
    steps.log(`fine-tune: accuracy ${acc[0]} -> ${acc[1]} (${acc[2]}), size ${size[0]} -> ${size[1]}, ${points} loss points, ${accDots} evaluation dots; ${path.relative(workspace, output)}`);
    await t.shot(page, 'finetune-report');
    await frame.locator('#training-report').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await t.shot(page, 'finetune-report-table');
    await frame.locator('#open-inspector').click();
    await t.frameWith(page, `#model-file:has-text("${path.basename(path.dirname(output))}")`, 60_000);
    fs.copyFileSync(path.join(results, 'finetune-report.png'), path.join(repoRoot, 'docs', 'training-finetune.png'));
    // The fine-tuned model becomes the distillation's teacher (a trained teacher has soft labels worth matching).
    fs.copyFileSync(output, path.join(workspace, teacherName));
    // Room for the next run's panel: close the editors (the inspector and the panel).
    await runFromPalette(page, 'View: Close All Editors');
  }), false);

  await steps.step('Distill… (teacher: the fine-tuned sample model, student derived at 50%) ends with the report, confusion and similarity heatmaps and soft-label bars', t.shotOnFail(page, 'distill-failed', async () => {
    const teacher = fs.existsSync(path.join(workspace, teacherName)) ? teacherName : model;
    steps.log(`teacher: ${teacher}`);
    // Earlier steps leave run folders expanded, which can push the teacher below the Explorer's rendered rows.
    await runFromPalette(page, 'Collapse Folders in Explorer');
    // A file written behind the Explorer's back shows once its watcher reports it: wait for it before the menu.
    await page.getByRole('treeitem', { name: new RegExp(`^${teacher.replace('.', '\\.')}`) }).first().waitFor({ timeout: 30_000 });
    await t.explorerWhittle(page, teacher, 'Distill…', 'student');
    await t.answerPicks(page, [['student', 'Derive from the teacher: 50%'], ['training data', 'toy-train.dataset'], ['epochs', '1'], ['evaluation data', 'toy-test.dataset'], ['temperature', '4'], ['alpha', '0.5']]);
    // The feature pick is a multi-select: tick relu2 (a derived student keeps the teacher's names), then accept.
    const title = page.locator('.quick-input-widget .quick-input-title', { hasText: 'feature pairs' });
    await title.waitFor({ state: 'visible', timeout: 30_000 });
    await page.locator('.quick-input-widget input').first().fill('relu2');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'relu2' }).first().click();
    await page.keyboard.press('Enter');
    const running = await t.frameWith(page, '#training-title:has-text("Distilling")', 60_000);
    const state = await running.locator('#training-status').getAttribute('data-state');
    steps.log(`distill panel open (${state})`);
    const frame = await t.frameWith(page, '#training-report[data-kind="distill"], #training-status[data-state="stopped"]', 300_000);
    const status = ((await frame.locator('#training-status').textContent()) ?? '').trim();
    if (/distillation is not implemented yet/.test(status)) {
      // The engine lands on its own branch; until then the UI flow above is what can be checked.
      steps.log(`skipped the report checks: the distillation engine has not landed ('${status}')`);
      return;
    }
    check((await frame.locator('#training-report[data-kind="distill"]').count()) === 1, `no distillation report; status '${status}'`);
    const acc = await frame.locator('#training-report tr[data-row="accuracy"] td').allTextContents();
    const params = await frame.locator('#training-report tr[data-row="parameters"] td').allTextContents();
    const cells = await frame.locator('#confusion rect.cell').count();
    const soft = await frame.locator('#soft-labels svg.soft-label').count();
    const bars = await frame.locator('#soft-labels rect.prob').count();
    const sim = await frame.locator('#layer-similarity rect.cell').count();
    const kd = await frame.locator('svg[data-chart="loss"] path[data-series="kd"]').count();
    const output = ((await frame.locator('#training-output').textContent()) ?? '').trim();
    check(acc.length === 4 && /%$/.test(acc[0]) && /%$/.test(acc[2]), `accuracy row ${JSON.stringify(acc)}`);
    check(cells === 100, `the confusion heatmap has ${cells} cells, expected 10x10`);
    check(soft > 0 && bars === soft * 20, `soft labels: ${soft} samples, ${bars} bars`);
    check(kd === 1, 'the loss chart lacks the KD part');
    check(fs.existsSync(output), `output ${output}`);
    const caption = ((await frame.locator('#soft-labels figcaption').first().textContent()) ?? '').trim();
    steps.log(`distill: accuracy teacher ${acc[0]}, student ${acc[1]} -> ${acc[2]}; parameters ${params.join(' / ')}; confusion ${cells} cells, similarity ${sim} cells, ${soft} soft-label samples ('${caption}')`);
    await t.shot(page, 'distill-report');
    await frame.locator('#distill-diagnostics').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await t.shot(page, 'distill-diagnostics');
    fs.copyFileSync(path.join(results, 'distill-diagnostics.png'), path.join(repoRoot, 'docs', 'training-distill.png'));
  }), false);
}
