import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator, Locator, Page } from 'playwright-core';
import { installCodeServer, repoRoot, startCodeServer, type CodeServer, type CodeServerInstall } from '../../scripts/codeServer';
import { makeSampleWorkspace, sampleModelName } from '../../scripts/sampleWorkspace';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../../src/core/formats/onnx/build';
import { sampleModelParams } from '../../src/core/samples/sampleModel';
import type { Frame } from 'playwright-core';
import { launchBrowser, type Browser } from './lib/browser';
import { check, Steps } from './lib/steps';
import { openUntil, runFromPalette } from './lib/workbench';
import { compressWizardSteps } from './compress';
import { polishSteps } from './polish';
import { trainingTests } from './training';

/**
 * `npm run test:e2e`: real VS Code (code-server) driven by Debian's Chromium.
 *   1. UI: open the sample workspace, right-click the model in the Explorer, pick Whittle > Inspect Model,
 *      read the parameter count inside the inspector webview, click a layer (SVG histogram, painted heatmap
 *      canvas; a 4096x4096 weight's heatmap within 1 s, zoom and pan), run a command from the palette, run
 *      the Layer Sensitivity panel (ranked table, curves, sidecar), Prune… from the Explorer (run folder, source
 *      bytes unchanged, sparsity bars, two-colour mask heatmap; copied to docs/prune-mask.png); screenshots go to
 *      test-results/.
 *   2. Integration: the extension's tests (out/test/integration) run inside the real extension host.
 *   3. Package: vsce packs the .vsix, code-server installs it, and it opens the model.
 * Every process it starts is stopped at the end, also on failure or Ctrl+C.
 */

const results = path.join(repoRoot, 'test-results');
const steps = new Steps();
const cleanups: Array<() => Promise<void>> = [];

async function cleanup(): Promise<void> {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(results, `${name}.png`) });
  steps.log(`screenshot test-results/${name}.png`);
}

/** Runs a palette command, retrying while the remote extension host is still registering commands. */
/** Waits for `locator`, failing with what was expected (a bare timeout does not say which wait ran out). */
async function expectShown(locator: Locator, what: string, timeout = 20_000): Promise<void> {
  try {
    await locator.waitFor({ timeout });
  } catch {
    throw new Error(`${what}: not shown within ${timeout / 1000} s`);
  }
}

/** Runs a step's body; on failure takes a screenshot `name`.png first, so the report shows what the page showed. */
function shotOnFail(page: Page, name: string, fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (err) {
      await shot(page, name).catch(() => {});
      throw err;
    }
  };
}

/** Answers a run of quick picks, each found by its title's text, by typing the label to filter on and pressing Enter. */
async function answerPicks(page: Page, picks: Array<[string, string]>): Promise<void> {
  // Rows of earlier, hidden quick picks linger in the DOM: go by the visible pick's title and type the label.
  const title = (t: string) => page.locator('.quick-input-widget .quick-input-title', { hasText: t });
  for (const [pick, label] of picks) {
    await title(pick).waitFor({ state: 'visible', timeout: 20_000 }).catch(() => {
      throw new Error(`the quick pick titled '${pick}' did not show`);
    });
    await page.locator('.quick-input-widget input').first().fill(label);
    await page.keyboard.press('Enter');
  }
}

/** Explorer ▸ right-click `file` ▸ Whittle ▸ `entryLabel`, until the quick pick titled `firstPick` shows. */
async function explorerWhittle(page: Page, file: string, entryLabel: string, firstPick: string): Promise<void> {
  // Only the workspace's own file: run folders beside it hold models of the same name.
  const item = page.getByRole('treeitem', { name: new RegExp(`^${file.replace('.', '\\.')}`) }).and(page.locator('[aria-level="1"]')).first();
  // Clicking the Explorer icon while the Explorer shows hides the side bar: click only when it is not showing.
  if (!(await item.isVisible())) await page.locator('.activitybar .action-item a[aria-label^="Explorer"]').first().click();
  await expectShown(item, `${file} in the Explorer`);
  const whittle = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Whittle$/ });
  await openUntil(page, () => item.click({ button: 'right' }), whittle);
  await whittle.hover();
  const entry = page.locator('.context-view .monaco-menu .action-label', { hasText: new RegExp(`^${entryLabel}$`) });
  await entry.waitFor({ timeout: 10_000 });
  const title = page.locator('.quick-input-widget .quick-input-title', { hasText: firstPick });
  // The submenu entry sits below the "Whittle" row: hover it before clicking, and click again if the first
  // click landed while the submenu was still settling.
  for (let attempt = 0; ; attempt++) {
    await entry.hover();
    await entry.click();
    try {
      await title.waitFor({ state: 'visible', timeout: 5_000 });
      return;
    } catch (err) {
      if (attempt >= 3 || !(await entry.isVisible())) throw err;
    }
  }
}

/** The large-layer fixture: one 4096x4096 Gemm (64 MB of float32), for the heatmap timing check. */
const bigModelName = 'big-4096.onnx';
const bigLayer = '/big/Gemm';

function makeBigModel(dir: string): void {
  const n = 4096;
  const w = new Float32Array(n * n);
  // A cheap deterministic pattern with structure to see: a signed ramp per row plus noise.
  let seed = 1;
  for (let i = 0; i < w.length; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    w[i] = ((i >> 12) / n - 0.5) * 0.1 + (seed / 2 ** 32 - 0.5) * 0.05;
  }
  const g = graph(
    'big',
    [node('Gemm', ['input', 'big.weight'], ['output'], { transB: 1 }, bigLayer)],
    [valueInfo('input', 1, ['batch', n])],
    [valueInfo('output', 1, ['batch', n])],
    [floatTensor('big.weight', [n, n], w)],
  );
  writeFileAtomic(path.join(dir, bigModelName), encodeModel(model(g, 17)));
}

/** The TF.js fixture: the shared LeNet (layers model, 61,706 params) as `tfjs-lenet/model.json`, when ../shared has it. */
const tfjsDir = 'tfjs-lenet';
let hasTfjs = false;
function makeTfjsModel(dir: string): boolean {
  const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
  const src = path.join(shared, 'models', 'tfjs-tensorspace-lenet-mnist');
  if (!fs.existsSync(path.join(src, 'mnist.json'))) return false;
  fs.mkdirSync(path.join(dir, tfjsDir), { recursive: true });
  // The manifest names its shard by a relative path, so the shard keeps its name beside the renamed model.json.
  fs.copyFileSync(path.join(src, 'mnist.json'), path.join(dir, tfjsDir, 'model.json'));
  fs.copyFileSync(path.join(src, 'mnist.weights.bin'), path.join(dir, tfjsDir, 'mnist.weights.bin'));
  return true;
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

/** Share of a canvas's pixels that were painted (not transparent), and how many distinct colours they use. */
function canvasInk(frame: Frame): Promise<{ painted: number; colours: number; width: number; height: number }> {
  return frame.locator('canvas.heatmap-canvas').evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    const colours = new Set<number>();
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 0) painted++;
      if (colours.size < 1000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    return { painted: painted / (d.length / 4), colours: colours.size, width: c.width, height: c.height };
  });
}

function inspectorFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
}

async function uiTest(install: CodeServerInstall, workspace: string): Promise<void> {
  const server: CodeServer = await startCodeServer({ install, extensionDir: repoRoot });
  cleanups.push(() => server.stop());
  const browser: Browser = await launchBrowser();
  cleanups.push(() => browser.close());
  const { page } = browser;
  cleanups.push(() => shot(page, 'last-state'));
  const expectedParams = sampleModelParams.toLocaleString('en-US');

  await steps.step('open the workspace in VS Code', async () => {
    await page.goto(`${server.base}/?folder=${encodeURIComponent(workspace)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 90_000 });
    await page.getByRole('treeitem', { name: new RegExp(sampleModelName.replace('.', '\\.')) }).waitFor({ timeout: 60_000 });
  });

  await steps.step('Explorer context menu on the .onnx shows Whittle entries', async () => {
    const item = page.getByRole('treeitem', { name: new RegExp(sampleModelName.replace('.', '\\.')) });
    const whittle = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Whittle$/ });
    await openUntil(page, () => item.click({ button: 'right' }), whittle);
    await whittle.hover();
    const entry = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Inspect Model$/ });
    await entry.waitFor({ timeout: 10_000 });
    const labels = await page.locator('.context-view .monaco-menu .action-label').allTextContents();
    for (const want of ['Inspect Model', 'Compress Model…', 'Analyze Layer Sensitivity', 'Prune…', 'Quantize…']) {
      check(labels.includes(want), `context menu lacks '${want}' (has: ${labels.filter(Boolean).join(', ')})`);
    }
    await shot(page, 'explorer-context-menu');
    await entry.click();
  });

  await steps.step(`Model Inspector webview shows the model's parameter count (${expectedParams})`, async () => {
    const frame = inspectorFrame(page);
    const params = frame.locator('#params');
    await params.waitFor({ timeout: 60_000 });
    const text = (await params.textContent())?.trim();
    check(text === expectedParams, `inspector shows '${text}' parameters, expected ${expectedParams}`);
    const rows = await frame.locator('#layers tbody tr').count();
    check(rows === 4, `inspector lists ${rows} layers, expected 4`);
    check((await frame.locator('#op-chart').count()) === 1, 'op chart missing');
    await shot(page, 'model-inspector');
  });

  await steps.step('clicking a layer shows its SVG histogram, per-channel plot and a painted heatmap', async () => {
    const frame = await frameWith(page, '#layers tbody tr.layer', 10_000);
    const row = frame.locator('#layers tbody tr.layer').nth(1);
    const name = await row.getAttribute('data-layer');
    await row.click();
    await frame.locator('svg.histogram rect.bar').first().waitFor({ timeout: 20_000 });
    const bars = await frame.locator('svg.histogram rect.bar').count();
    check(bars > 0, 'histogram has no bars');
    check((await frame.locator('svg.channel-plot rect.range').count()) === 16, 'per-channel plot lacks 16 channel ranges (conv2 has 16 output channels)');
    await frame.locator('canvas.heatmap-canvas[data-drawn]').waitFor({ timeout: 20_000 });
    const ink = await canvasInk(frame);
    check(ink.painted > 0.95 && ink.colours > 10, `heatmap canvas is blank: ${JSON.stringify(ink)}`);
    // The log toggle redraws with the same bars.
    await frame.locator('#histogram-log').check();
    check((await frame.locator('svg.histogram rect.bar').count()) === bars, 'log toggle changed the bar count');
    steps.log(`layer ${name}: ${bars} histogram bars, heatmap ${ink.width}x${ink.height}, ${Math.round(ink.painted * 100)}% painted, ${ink.colours} colours`);
    await frame.locator('svg.histogram').evaluate((el) => el.scrollIntoView({ block: 'end' }));
    await shot(page, 'inspector-histogram');
  }, false);

  await steps.step('the heatmap of a 4096x4096 weight appears within 1 s of the click, from tiles; zoom fetches finer ones', async () => {
    const item = page.getByRole('treeitem', { name: new RegExp(bigModelName.replace('.', '\\.')) });
    await item.dblclick();
    const frame = await frameWith(page, `#layers tr[data-layer="${bigLayer}"]`, 60_000);
    const row = frame.locator(`#layers tr[data-layer="${bigLayer}"]`);
    await row.scrollIntoViewIfNeeded();
    const t0 = Date.now();
    await row.click();
    const canvas = frame.locator('canvas.heatmap-canvas[data-drawn]');
    await canvas.waitFor({ timeout: 30_000 });
    const elapsed = Date.now() - t0;
    const inPage = await canvas.getAttribute('data-first-draw-ms');
    const overview = Number(await canvas.getAttribute('data-overview-stride'));
    steps.log(`4096x4096 heatmap: drawn ${elapsed} ms after the click (in the webview: ${inPage} ms from the click event), overview stride ${overview}`);
    // The budget is on the webview's own clock (click event to drawn canvas); Playwright's figure adds its
    // actionability checks before the click and its polling after, so it only gets a looser sanity bound.
    check(Number(inPage) < 1000, `heatmap drawn ${inPage} ms after the click event, over 1 s`);
    check(elapsed < 2000, `heatmap took ${elapsed} ms as Playwright sees it`);
    check(overview >= 16, `overview stride ${overview}: the first tile should be <= 256x256`);
    const ink = await canvasInk(frame);
    check(ink.painted > 0.95, `heatmap canvas is blank: ${JSON.stringify(ink)}`);
    // Zoom in with the wheel: a finer tile (smaller stride) replaces the overview in view.
    // Wheel events sent before the webview has settled its layout can miss the canvas: retry a few times.
    const detail = frame.locator('canvas.heatmap-canvas[data-drawn="detail"]');
    for (let attempt = 0; ; attempt++) {
      await canvas.scrollIntoViewIfNeeded();
      await canvas.hover();
      for (let i = 0; i < 6; i++) await page.mouse.wheel(0, -400);
      try {
        await detail.waitFor({ timeout: 5_000 });
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
    const stride = Number(await canvas.getAttribute('data-stride'));
    check(stride < overview, `zoomed tile has stride ${stride}, not finer than the overview's ${overview}`);
    // Drag to pan: the view moves.
    const before = await canvas.getAttribute('data-view');
    // hover() resolves positions inside the nested webview frames; raw page coordinates do not always land there.
    await canvas.hover({ position: { x: 300, y: 150 } });
    await page.mouse.down();
    await canvas.hover({ position: { x: 240, y: 130 } });
    await canvas.hover({ position: { x: 180, y: 110 } });
    await page.mouse.up();
    const after = await canvas.getAttribute('data-view');
    check(before !== after, `dragging did not pan (view ${before})`);
    const readout = await frame.locator('.heatmap-readout').textContent();
    check(/out \d+, in \d+: /.test(readout ?? ''), `hover readout '${readout}'`);
    steps.log(`zoomed to stride ${stride}, view ${before} -> ${after}; readout '${readout?.trim()}'`);
    await shot(page, 'inspector-heatmap');
  }, false);

  await steps.step('command palette: Whittle: Select Execution Provider sets cpu and the status bar shows it', async () => {
    await runFromPalette(page, 'Whittle: Select Execution Provider');
    const cpu = page.locator('.quick-input-list .monaco-list-row', { hasText: /^cpu/ }).first();
    await cpu.waitFor({ timeout: 10_000 });
    await cpu.click();
    await page.locator('.statusbar-item', { hasText: 'Whittle: cpu' }).waitFor({ timeout: 15_000 });
    // The status bar can show cpu before the setting is written (auto resolves to cpu here): wait for the file.
    const settingsFile = path.join(workspace, '.vscode', 'settings.json');
    const read = () => {
      try {
        return JSON.parse(fs.readFileSync(settingsFile, 'utf8'))['whittle.executionProvider'];
      } catch {
        return undefined; // not written yet, or caught mid-write
      }
    };
    for (let i = 0; i < 150 && read() !== 'cpu'; i++) await page.waitForTimeout(100);
    check(read() === 'cpu', `workspace settings: ${fs.existsSync(settingsFile) ? fs.readFileSync(settingsFile, 'utf8') : '(no file)'}`);
  });

  await steps.step('Whittle side bar: Models tree and Layer Sensitivity view', async () => {
    await page.locator('.activitybar .action-item a[aria-label^="Whittle"]').first().click();
    const tree = page.locator('.pane-body .monaco-list-row', { hasText: sampleModelName }).first();
    await tree.waitFor({ timeout: 20_000 });
    await page.locator('.monaco-list-row', { hasText: sampleModelName }).first().click();
    // The sensitivity view is the other webview; find the frame that holds its table.
    const deadline = Date.now() + 30_000;
    let found = false;
    while (!found && Date.now() < deadline) {
      for (const f of page.frames()) {
        if ((await f.locator('#sensitivity-layers tbody tr').count().catch(() => 0)) === 4) found = true;
      }
      if (!found) await page.waitForTimeout(500);
    }
    check(found, 'Layer Sensitivity view does not list the 4 layers');
    await shot(page, 'whittle-sidebar');
  }, false);

  await steps.step('Layer Sensitivity panel runs on the sample model with random data and ranks its 4 layers', async () => {
    const frame = await frameWith(page, '#sensitivity-run', 20_000);
    // Room for the panel: a wider side bar, and the Models tree collapsed.
    const sash = page.locator('.part.sidebar').boundingBox();
    const sb = await sash;
    if (sb) {
      await page.mouse.move(sb.x + sb.width + 1, sb.y + 200);
      await page.mouse.down();
      await page.mouse.move(sb.x + 560, sb.y + 200, { steps: 5 });
      await page.mouse.up();
    }
    await page.locator('.pane-header', { hasText: 'Models' }).first().click();
    await frame.locator('#sensitivity-data').selectOption('random');
    await frame.locator('#sensitivity-limit').fill('16');
    await frame.locator('#sensitivity-limit').dispatchEvent('change');
    const t0 = Date.now();
    await frame.locator('#sensitivity-run').click();
    const ranked = frame.locator('#sensitivity-ranking tbody tr');
    await frame.locator('#run-status', { hasText: /^Done/ }).waitFor({ timeout: 120_000 });
    const rows = await ranked.count();
    check(rows === 4, `ranked table lists ${rows} layers, expected 4`);
    check((await frame.locator('svg.curves-prune path.curve').count()) === 4, 'no pruning curve per layer');
    check((await frame.locator('svg.curves-quant path.curve').count()) === 4, 'no quantization curve per layer');
    check((await frame.locator('#sensitivity-heat tbody tr').count()) === 4, 'heat table lacks 4 rows');
    steps.log(`sensitivity (both kinds, 16 random samples) took ${Date.now() - t0} ms; ranking: ${(await ranked.locator('td.mono').allTextContents()).join(' > ')}`);
    const sidecar = path.join(workspace, 'lenet-sample.whittle', 'analysis.json');
    check(fs.existsSync(sidecar), `no sidecar at ${sidecar}`);
    // "Exclude" on the most sensitive layer goes to the sidecar.
    const top = await ranked.first().getAttribute('data-layer');
    await ranked.first().locator('input.choice-exclude').check();
    const deadline = Date.now() + 10_000;
    let choices: Record<string, { exclude?: boolean }> = {};
    while (Date.now() < deadline && !choices[top ?? '']?.exclude) {
      choices = JSON.parse(fs.readFileSync(sidecar, 'utf8')).choices;
      await page.waitForTimeout(200);
    }
    check(choices[top ?? '']?.exclude === true, `sidecar choices ${JSON.stringify(choices)} lack exclude for ${top}`);
    await frame.locator('#sensitivity-ranking').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(page, 'sensitivity-panel');
  }, false);

  await steps.step('Explorer ▸ Whittle ▸ Prune… at 50% per layer on random data opens the pruned model; its mask heatmap shows kept and pruned weights', async () => {
    const source = path.join(workspace, sampleModelName);
    const bytesBefore = fs.readFileSync(source);
    await explorerWhittle(page, sampleModelName, 'Prune…', 'pattern');
    await answerPicks(page, [['pattern', 'None'], ['sparsity', '50%'], ['scope', 'Per layer'], ['method', 'Magnitude'], ['data for pruning', 'Random inputs']]);
    const frame = await frameWith(page, '#model-file:has-text("prune-")', 120_000);
    const shown = (await frame.locator('#model-file').textContent())?.trim() ?? '';
    const rel = path.relative(workspace, shown).split(path.sep);
    check(rel.length === 3 && rel[0] === 'lenet-sample.whittle' && /^prune-/.test(rel[1]) && fs.existsSync(shown), `pruned model opened from ${shown}`);
    check(fs.readFileSync(source).equals(bytesBefore), 'the source model changed');
    const bars = await frame.locator('#layers .sparsity-bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-sparsity'))));
    check(bars.length === 4 && bars.every((v) => Math.abs(v - 0.5) < 0.02), `sparsity bars ${JSON.stringify(bars)}`);
    const row = frame.locator('#layers tbody tr.layer').nth(1);
    await row.click();
    await frame.locator('canvas.heatmap-canvas[data-drawn]').waitFor({ timeout: 20_000 });
    await frame.locator('#heatmap-mode').selectOption('mask');
    const canvas = frame.locator('canvas.heatmap-canvas[data-scale="mask"][data-drawn]');
    await canvas.waitFor({ timeout: 20_000 });
    // A mask at stride 1 is two colours (kept, pruned); at 50% each covers a good share of the canvas.
    const ink = await canvas.evaluate((c: HTMLCanvasElement) => {
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const counts = new Map<number, number>();
      let painted = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] === 0) continue;
        painted++;
        const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      const top = [...counts.values()].sort((x, y) => y - x);
      return { painted: painted / (d.length / 4), colours: counts.size, top1: (top[0] ?? 0) / painted, top2: (top[1] ?? 0) / painted, stride: c.dataset.stride };
    });
    check(ink.painted > 0.95, `mask canvas is blank: ${JSON.stringify(ink)}`);
    check(ink.top1 + ink.top2 > 0.95 && ink.top2 > 0.2, `mask canvas is not two colours: ${JSON.stringify(ink)}`);
    // The before/after histogram: about half of the source's mass is gone from its bins (moved to zero).
    const compare = frame.locator('svg.histogram-compare');
    await compare.waitFor({ timeout: 20_000 });
    const gone = Number(await compare.getAttribute('data-gone'));
    const total = Number(await compare.getAttribute('data-before'));
    // Weights already in the bin holding 0 stay in it when zeroed, so the mass that leaves its bins is a bit under 50%.
    check(gone > 0.4 * total && gone <= 0.5 * total + 1, `before/after histogram: pruned mass ${gone} of ${total}`);
    steps.log(`pruned model at ${rel.join('/')}; before/after histogram: ${gone} of ${total} values pruned; sparsity bars ${bars.map((v) => `${(v * 100).toFixed(1)}%`).join(', ')}; mask ${ink.colours} colours, top two ${(ink.top1 * 100).toFixed(0)}% + ${(ink.top2 * 100).toFixed(0)}% (stride ${ink.stride})`);
    await canvas.scrollIntoViewIfNeeded();
    await shot(page, 'prune-mask');
    fs.copyFileSync(path.join(results, 'prune-mask.png'), path.join(repoRoot, 'docs', 'prune-mask.png'));
  }, false);

  await steps.step('Explorer ▸ Whittle ▸ Quantize… static int8 on random data opens the quantized model: activation-SQNR chart, quantization-error heatmap and per-channel SQNR', shotOnFail(page, 'quantize-failed', async () => {
    const source = path.join(workspace, sampleModelName);
    const bytesBefore = fs.readFileSync(source);
    await explorerWhittle(page, sampleModelName, 'Quantize…', 'mode');
    await answerPicks(page, [['mode', 'Static int8'], ['calibration', 'MinMax'], ['data for calibration', 'Random inputs']]);
    const frame = await frameWith(page, '#model-file:has-text("quantize-")', 180_000);
    const shown = (await frame.locator('#model-file').textContent())?.trim() ?? '';
    const rel = path.relative(workspace, shown).split(path.sep);
    check(rel.length === 3 && rel[0] === 'lenet-sample.whittle' && /^quantize-/.test(rel[1]) && fs.existsSync(shown), `quantized model opened from ${shown}`);
    check(fs.readFileSync(source).equals(bytesBefore), 'the source model changed');
    const banner = (await frame.locator('#origin-banner').textContent()) ?? '';
    check(banner.includes(`Written by Whittle from ${sampleModelName}`) && banner.includes('quantized (static)'), `origin banner '${banner}'`);
    // The activation-SQNR chart: bars worst first, in dB, each matching report.json.
    const report = JSON.parse(fs.readFileSync(path.join(path.dirname(shown), 'report.json'), 'utf8')) as { activations?: Array<{ tensor: string; sqnrDb: number | null }> };
    const dbs = await frame.locator('svg.sqnr-chart rect.bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-db'))));
    const expected = (report.activations ?? []).map((a) => a.sqnrDb ?? Infinity).sort((a, b) => a - b).slice(0, 30);
    check(dbs.length > 0 && dbs.length === expected.length, `activation-SQNR chart has ${dbs.length} bars, report.json ${expected.length}`);
    check(dbs.every((v, i) => v === expected[i] || Math.abs(v - expected[i]) < 1e-6), `chart ${JSON.stringify(dbs)} vs report ${JSON.stringify(expected)}`);
    await frame.locator('#activation-sqnr-section').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(page, 'quantize-activation-sqnr');
    // The calibration view: the worst activation's histogram with the range used and every calibrator's range.
    const markers = await frame.locator('svg.calibration-histogram line.range-marker').evaluateAll((els) => els.map((e) => ({ cal: e.getAttribute('data-calibrator'), end: e.getAttribute('data-end'), x: Number(e.getAttribute('x1')) })));
    const calibrators = new Set(markers.map((k) => k.cal));
    check(markers.length === 10 && ['used', 'minmax', 'percentile', 'entropy', 'mse'].every((c) => calibrators.has(c)), `calibration markers ${JSON.stringify(markers)}`);
    // MinMax was chosen in the picks, so the range used sits exactly on the MinMax markers.
    const at = (cal: string, end: string) => markers.find((k) => k.cal === cal && k.end === end)!.x;
    check(at('used', 'low') === at('minmax', 'low') && at('used', 'high') === at('minmax', 'high'), 'the range used is the MinMax range');
    check((await frame.locator('svg.calibration-histogram rect.bar').count()) === 64, 'the calibration histogram has 64 bins');
    await frame.locator('#calibration-section').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(page, 'quantize-calibration-ranges');
    // A quantized layer: the heatmap's error mode, centred on zero, painted; its format, SQNR and channel bars.
    const row = frame.locator('#layers tbody tr.layer[data-layer="/conv2/Conv"]');
    await row.click();
    await expectShown(frame.locator('canvas.heatmap-canvas[data-drawn]'), 'the values heatmap of the quantized conv2');
    // The stats line fills in when the histogram arrives from the worker.
    await frame.locator('.layer-stats', { hasText: 'stored as' }).waitFor({ timeout: 20_000 }).catch(() => {});
    const stats = (await frame.locator('.layer-stats').textContent()) ?? '';
    check(/stored as int8 per-channel, shown dequantized/.test(stats), `layer stats '${stats}'`);
    await frame.locator('#heatmap-mode').selectOption('error');
    const canvas = frame.locator('canvas.heatmap-canvas[data-mode="error"][data-drawn]');
    await expectShown(canvas, 'the quantization-error heatmap');
    const ink = await canvasInk(frame);
    check(ink.painted > 0.95 && ink.colours > 10, `error heatmap is blank or flat: ${JSON.stringify(ink)}`);
    const legend = await frame.locator('.heatmap-legend-labels span').allTextContents();
    check(legend.length === 3 && legend[1] === '0' && Number(legend[0]) === -Number(legend[2]), `error heatmap legend ${JSON.stringify(legend)} is not centred on 0`);
    const errStats = (await frame.locator('#quant-error-stats').textContent({ timeout: 20_000 })) ?? '';
    const sqnr = /SQNR ([\d.]+) dB/.exec(errStats);
    check(/^int8 per-channel/.test(errStats) && sqnr && Number(sqnr[1]) > 20 && Number(sqnr[1]) < 80, `quantization error stats '${errStats}'`);
    const channelBars = await frame.locator('svg.channel-sqnr rect.bar').count();
    check(channelBars === 16, `per-channel SQNR chart has ${channelBars} bars, expected 16 (conv2's output channels)`);
    steps.log(`quantized model at ${rel.join('/')}; ${dbs.length} activation-SQNR bars (worst ${dbs[0]?.toFixed(1)} dB); conv2 error: '${errStats.trim()}', heatmap ${ink.colours} colours`);
    await canvas.scrollIntoViewIfNeeded();
    await shot(page, 'quantize-error-heatmap');
    fs.copyFileSync(path.join(results, 'quantize-error-heatmap.png'), path.join(repoRoot, 'docs', 'quantize-error-heatmap.png'));
  }), false);

  await steps.step('Prune… structured (remove whole channels, 50%) opens the smaller model: removed channels as rows beside the mask, before/after histogram with the pruned mass', shotOnFail(page, 'structured-failed', async () => {
    const source = path.join(workspace, sampleModelName);
    const bytesBefore = fs.readFileSync(source);
    await explorerWhittle(page, sampleModelName, 'Prune…', 'pattern');
    await answerPicks(page, [['pattern', 'Structured'], ['sparsity', '50%'], ['data for pruning', 'Random inputs']]);
    const frame = await frameWith(page, '#origin-banner:has-text("structured: removed")', 180_000);
    const shown = (await frame.locator('#model-file').textContent())?.trim() ?? '';
    check(/prune-/.test(shown) && fs.existsSync(shown), `structured model opened from ${shown}`);
    check(fs.readFileSync(source).equals(bytesBefore), 'the source model changed');
    // fc1 (64 outputs) loses half its channels; the convs keep theirs (kept counts round to multiples of 8, and
    // conv2's channels reach fc1 through a Reshape).
    const row = frame.locator('#layers tbody tr.layer[data-layer="/fc1/Gemm"]');
    await row.click();
    await frame.locator('#heatmap-mode').selectOption('mask');
    await expectShown(frame.locator('canvas.heatmap-canvas[data-scale="mask"][data-drawn]'), 'the mask heatmap of the structured model');
    const strip = frame.locator('#removed-channels');
    await expectShown(strip, 'the removed-channel rows');
    const removed = Number(await strip.getAttribute('data-removed'));
    const channels = Number(await strip.getAttribute('data-channels'));
    const marked = await frame.locator('svg.channel-strip rect.channel.removed').count();
    const kept = await frame.locator('svg.channel-strip rect.channel.kept').count();
    check(channels === 64 && removed === 32 && marked === 32 && kept === 32, `removed-channel rows: ${removed} of ${channels}, ${marked} marked, ${kept} kept`);
    const report = JSON.parse(fs.readFileSync(path.join(path.dirname(shown), 'report.json'), 'utf8')) as { layers: Array<{ layer: string; removedChannels?: number[] }> };
    const want = report.layers.find((l) => l.layer === '/fc1/Gemm')?.removedChannels ?? [];
    const got = await frame.locator('svg.channel-strip rect.channel.removed').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-channel'))));
    check(JSON.stringify(got) === JSON.stringify(want), `marked rows ${JSON.stringify(got)}, report ${JSON.stringify(want)}`);
    const compare = frame.locator('svg.histogram-compare');
    await expectShown(compare, 'the before/after histogram');
    const [gone, before, after] = await Promise.all(['data-gone', 'data-before', 'data-after'].map(async (a) => Number(await compare.getAttribute(a))));
    const goneBars = await frame.locator('svg.histogram-compare rect.gone').count();
    check(before === 25_600 && after === 12_800 && gone >= before - after && goneBars > 0, `before/after histogram: before ${before}, after ${after}, pruned mass ${gone} in ${goneBars} bins`);
    steps.log(`structured model ${path.relative(workspace, shown)}: fc1 rows removed ${JSON.stringify(got)}; histogram before ${before}, after ${after}, pruned mass ${gone}`);
    await strip.scrollIntoViewIfNeeded();
    await shot(page, 'structured-removed-channels');
    await compare.scrollIntoViewIfNeeded();
    await shot(page, 'prune-before-after-histogram');
  }), false);

  await steps.step('Explorer ▸ a TF.js model.json ▸ Whittle ▸ Inspect Model shows its layer table and a histogram', shotOnFail(page, 'tfjs-failed', async () => {
    if (!hasTfjs) {
      steps.log('skipped: ../shared/data has no TF.js LeNet (set WHITTLE_SHARED_DATA)');
      return;
    }
    const folder = page.getByRole('treeitem', { name: new RegExp(`^${tfjsDir}`) }).and(page.locator('[aria-level="1"]')).first();
    if (!(await folder.isVisible())) await page.locator('.activitybar .action-item a[aria-label^="Explorer"]').first().click();
    await expectShown(folder, `${tfjsDir} in the Explorer`);
    if ((await folder.getAttribute('aria-expanded')) !== 'true') await folder.click();
    const item = page.getByRole('treeitem', { name: /^model\.json/ }).and(page.locator('[aria-level="2"]')).first();
    await expectShown(item, 'model.json in the Explorer');
    const whittle = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Whittle$/ });
    await openUntil(page, () => item.click({ button: 'right' }), whittle);
    await whittle.hover();
    const entry = page.locator('.context-view .monaco-menu .action-label', { hasText: /^Inspect Model$/ });
    await entry.waitFor({ timeout: 10_000 });
    await entry.hover();
    await entry.click();
    const frame = await frameWith(page, '#model-file:has-text("model.json")', 60_000);
    await frame.locator('#params').waitFor({ timeout: 60_000 });
    const params = (await frame.locator('#params').textContent())?.trim();
    check(params === '61,706', `the TF.js LeNet shows '${params}' parameters, expected 61,706`);
    const rows = frame.locator('#layers tbody tr.layer');
    check((await rows.count()) >= 4, `the layer table lists ${await rows.count()} layers`);
    const conv = frame.locator('#layers tbody tr.layer', { hasText: 'Conv2D' }).first();
    await conv.click();
    await frame.locator('svg.histogram rect.bar').first().waitFor({ timeout: 30_000 });
    check((await frame.locator('svg.histogram rect.bar').count()) > 0, 'the TF.js layer histogram has no bars');
    await expectShown(frame.locator('canvas.heatmap-canvas[data-drawn]'), 'the TF.js layer heatmap');
    steps.log(`TF.js LeNet: ${params} parameters, ${await rows.count()} layers; ${(await conv.getAttribute('data-layer')) ?? '?'} histogram drawn`);
    await shot(page, 'tfjs-inspector');
    await frame.locator('#layer-detail').evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await shot(page, 'tfjs-inspector-layer');
  }), false);

  await compressWizardSteps(page, steps, workspace);
  await trainingTests({ page, steps, workspace, model: sampleModelName, shot, shotOnFail, explorerWhittle, answerPicks, frameWith });
  await polishSteps(page, { steps, workspace, sampleModelName, shot: (name) => shot(page, name), runFromPalette: (title) => runFromPalette(page, title) });
}

async function integrationTests(install: CodeServerInstall, workspace: string): Promise<void> {
  const resultsFile = path.join(results, 'integration.txt');
  fs.rmSync(resultsFile, { force: true });
  const server = await startCodeServer({
    install,
    env: { WHITTLE_TEST_RESULTS: resultsFile, WHITTLE_TEST_WORKSPACE: workspace },
    // 1.139 ignores the test payload unless the smoke-test driver is on.
    args: ['--vscode-option', 'enable-smoke-test-driver'],
  });
  cleanups.push(() => server.stop());
  const browser = await launchBrowser();
  cleanups.push(() => browser.close());
  const authority = `127.0.0.1:${server.port}`;
  const payload = [
    ['extensionDevelopmentPath', `vscode-remote://${authority}${repoRoot}`],
    ['extensionTestsPath', `vscode-remote://${authority}${path.join(repoRoot, 'out', 'test', 'integration', 'index')}`],
  ];
  await browser.page.exposeFunction('codeAutomationExit', () => {});
  await browser.page.goto(`${server.base}/?folder=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
  const deadline = Date.now() + 180_000;
  let text = '';
  while (Date.now() < deadline) {
    text = fs.existsSync(resultsFile) ? fs.readFileSync(resultsFile, 'utf8') : '';
    if (/^\d+ passed, \d+ failed$/m.test(text)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const m = /^(\d+) passed, (\d+) failed$/m.exec(text);
  for (const line of text.split('\n').filter((l) => /^(ok|FAIL) /.test(l))) steps.log(`  [extension host] ${line}`);
  await steps.step('integration tests inside the real extension host', async () => {
    check(m, `no result from the extension host within 180 s; server log ${server.logFile}`);
    check(Number(m[2]) === 0 && Number(m[1]) > 0, `${m[1]} passed, ${m[2]} failed`);
  }, false);
}

/** Packs the extension with vsce, installs the .vsix into a fresh code-server, and opens the model in it. */
async function vsixTest(install: CodeServerInstall, workspace: string): Promise<void> {
  const vsix = path.join(repoRoot, 'whittle-linux-x64.vsix');
  await steps.step('npm run package produces a .vsix', async () => {
    fs.rmSync(vsix, { force: true });
    const res = spawnSync('npm', ['run', 'package'], { cwd: repoRoot, encoding: 'utf8' });
    check(res.status === 0 && fs.existsSync(vsix), `npm run package failed: ${(res.stdout + res.stderr).slice(-500)}`);
    steps.log(`vsix: ${(fs.statSync(vsix).size / 1024 / 1024).toFixed(1)} MB`);
  });
  const server = await startCodeServer({ install, vsix });
  cleanups.push(() => server.stop());
  const browser = await launchBrowser();
  cleanups.push(() => browser.close());
  const { page } = browser;
  await steps.step('the installed .vsix opens a model in the Model Inspector', async () => {
    await page.goto(`${server.base}/?folder=${encodeURIComponent(workspace)}`);
    const item = page.getByRole('treeitem', { name: new RegExp(sampleModelName.replace('.', '\\.')) });
    await item.waitFor({ timeout: 90_000 });
    // *.onnx opens in the inspector by default.
    const params = inspectorFrame(page).locator('#params');
    await openUntil(page, () => item.dblclick(), params, 10);
    const text = (await params.textContent())?.trim();
    check(text === sampleModelParams.toLocaleString('en-US'), `inspector shows '${text}'`);
    await shot(page, 'vsix-inspector');
  }, false);
}

async function main(): Promise<number> {
  fs.mkdirSync(results, { recursive: true });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanup().then(() => process.exit(130)));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-e2e-'));
  try {
    steps.log('installing code-server (cached after the first run)');
    const install = installCodeServer();
    const uiWorkspace = path.join(root, 'ui-workspace');
    makeSampleWorkspace(uiWorkspace);
    makeBigModel(uiWorkspace);
    hasTfjs = makeTfjsModel(uiWorkspace);
    await uiTest(install, uiWorkspace).catch(async (err) => {
      steps.log(`UI test stopped: ${err instanceof Error ? err.message.split('\n')[0] : err}`);
    });
    await cleanup();
    const itWorkspace = path.join(root, 'it-workspace');
    makeSampleWorkspace(itWorkspace);
    await integrationTests(install, itWorkspace);
    await cleanup();
    await vsixTest(install, uiWorkspace);
  } catch (err) {
    steps.failed++;
    steps.log(`FAIL e2e harness: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await cleanup();
    fs.rmSync(root, { recursive: true, force: true });
  }
  console.log(`e2e: ${steps.passed} passed, ${steps.failed} failed`);
  return steps.failed === 0 && steps.passed > 0 ? 0 : 1;
}

main().then((code) => process.exit(code));
