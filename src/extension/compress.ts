import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { readSidecar } from '../core/analysisSidecar';
import { writeFileAtomic } from '../core/atomicWrite';
import { sha256File } from '../core/hash';
import type { ModelSummary } from '../core/inspect';
import { flagName, type ParamSpec } from '../core/passes/pass';
import { plannedPasses, recipePasses } from '../core/recipe/passes';
import { presets } from '../core/recipe/presets';
import { validateRecipe } from '../core/recipe/schema';
import type { RecipeResult } from '../core/recipe/types';
import type { CompressHostRequests, CompressRequests, FromCompressEvent, ModelCard, ParamField, PassForm, ToCompressEvent } from '../protocol/compress';
import { CancelledError } from '../protocol/rpc';
import { previewData } from './dataPreview';
import type { Engine } from './engine';
import type { ExecutionProviderStatus } from './executionProvider';
import { showRunReport } from './reportView';
import { WebviewChannel } from './webviewChannel';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The Compress wizard panel's view type. */
export const compressViewType = 'whittle.compress';

/** What the wizard and the recipe commands need from the extension. */
export interface RecipeContext {
  extensionUri: vscode.Uri;
  engine: Engine;
  status: ExecutionProviderStatus;
  refreshModels: () => void;
}

/** Where the wizard saves a model's recipe: beside the model, `<model name>.whittle.json`. */
export function recipeFileFor(model: string): string {
  return path.join(path.dirname(model), `${path.basename(model).replace(/\.(onnx|json)$/i, '')}.whittle.json`);
}

/** The run folder each recipe file last wrote (this session), for the CodeLens's "Open report". */
const lastRuns = new Map<string, string>();
const lastRunsChanged = new vscode.EventEmitter<void>();
/** Fires when a recipe run finished (CodeLenses refresh). */
export const onDidRunRecipe = lastRunsChanged.event;

/** The latest run folder of a recipe that still has its report.html: this session's run, else the newest on disk. */
export function latestRun(recipeFile: string): string | undefined {
  const known = lastRuns.get(recipeFile);
  if (known && fs.existsSync(path.join(known, 'report.html'))) return known;
  // Recipe runs go to <model dir>/<model name>.whittle/<recipe name>-<stamp>/ unless the recipe sets `out`.
  let model: string | undefined;
  try {
    const recipe = JSON.parse(fs.readFileSync(recipeFile, 'utf8')) as { model?: unknown };
    if (typeof recipe.model === 'string') model = path.resolve(path.dirname(recipeFile), recipe.model);
  } catch {
    return undefined;
  }
  if (!model) return undefined;
  const recipeName = path.basename(recipeFile).replace(/\.whittle\.json$/i, '');
  const runs = path.join(path.dirname(model), `${path.basename(model).replace(/\.(onnx|json)$/i, '')}.whittle`);
  let newest: { dir: string; mtime: number } | undefined;
  for (const name of safeReaddir(runs)) {
    const dir = path.join(runs, name);
    const report = path.join(dir, 'report.html');
    if (!name.startsWith(`${recipeName}-`) || !fs.existsSync(report)) continue;
    const mtime = fs.statSync(report).mtimeMs;
    if (!newest || mtime > newest.mtime) newest = { dir, mtime };
  }
  return newest?.dir;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Runs a recipe file in a worker of its own (progress, cancel through `token`), then shows the provider used,
 * refreshes the Models tree, remembers the run for the recipe's CodeLens and opens its report.
 */
export async function runRecipeFile(ctx: RecipeContext, file: string, token?: vscode.CancellationToken, onProgress?: (fraction: number | undefined, message: string) => void): Promise<RecipeResult> {
  const result = await ctx.engine.job('runRecipe', { file }, token, onProgress);
  ctx.status.show(result.ep);
  ctx.refreshModels();
  lastRuns.set(file, result.outDir);
  lastRunsChanged.fire();
  showRunReport(result.outDir);
  return result;
}

/**
 * `whittle.runRecipe`: runs a *.whittle.json (the given one, the active editor's, or a picked one) under a
 * cancellable progress notification and opens the report. Returns the result, or undefined when cancelled.
 */
export async function runRecipeCommand(ctx: RecipeContext, uri: vscode.Uri | undefined): Promise<RecipeResult | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  let target = uri ?? (active && /\.whittle\.json$/i.test(active.fsPath) ? active : undefined);
  if (!target) {
    const found = await vscode.workspace.findFiles('**/*.whittle.json', '**/node_modules/**', 200);
    const pick = await vscode.window.showQuickPick(
      found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(u), uri: u })),
      { title: vscode.l10n.t('Whittle: pick a recipe to run'), placeHolder: found.length ? vscode.l10n.t('a *.whittle.json in this workspace') : vscode.l10n.t('no *.whittle.json recipes in this workspace') },
    );
    target = pick?.uri;
  }
  if (!target) return undefined;
  // Unsaved edits in an open editor are what the user means to run.
  const doc = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === target.fsPath);
  if (doc?.isDirty) await doc.save();
  const file = target.fsPath;
  try {
    return await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Whittle: running {0}', path.basename(file)), cancellable: true },
      (progress, token) => {
        let last = 0;
        return runRecipeFile(ctx, file, token, (fraction, message) => {
          const now = fraction === undefined ? last : Math.round(fraction * 100);
          progress.report({ message, increment: now - last });
          last = now;
        });
      },
    );
  } catch (err) {
    if (err instanceof CancelledError) {
      void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: recipe run cancelled; no output was left behind.'));
      return undefined;
    }
    throw err;
  }
}

/** A pass's parameter table as plain data for the wizard's forms (planned enum values left out). */
export function passForm(pass: PassForm['pass'], summary: string, table: ParamSpec[]): PassForm {
  return {
    pass,
    summary,
    params: table.map((s): ParamField => ({
      name: s.name,
      flag: `--${flagName(s)}`,
      type: s.type,
      ...(s.default !== undefined ? { default: s.default } : {}),
      ...(s.min !== undefined ? { min: s.min } : {}),
      ...(s.max !== undefined ? { max: s.max } : {}),
      ...(s.choices ? { choices: s.choices.filter((c) => !s.planned?.includes(c)) } : {}),
      help: s.help,
    })),
  };
}

/** The model card of step 1: the inspect summary, and the cached sensitivity ranking when there is one. */
export function modelCard(summary: ModelSummary): ModelCard {
  const ops = Object.entries(summary.opCounts)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([op, n]) => `${op} ×${n}`);
  const card: ModelCard = {
    file: summary.file,
    name: path.basename(summary.file),
    format: summary.format,
    fileBytes: summary.fileBytes,
    params: summary.params,
    layers: summary.layers.length,
    ops,
    inputs: summary.inputs.map((i) => ({ name: i.name, shape: i.shape })),
  };
  const sidecar = readSidecar(summary.file);
  if (sidecar) {
    let stale = false;
    try {
      stale = !!sidecar.sha256 && sidecar.sha256 !== sha256File(summary.file);
    } catch {
      stale = true;
    }
    const byName = new Map(sidecar.result.layers.map((l) => [l.name, l]));
    card.sensitivity = {
      data: sidecar.data,
      metric: sidecar.result.baseline.metricName,
      stale,
      ranking: sidecar.result.ranking.map((layer) => {
        const c = sidecar.choices[layer];
        const choice = c ? [c.exclude ? vscode.l10n.t('exclude') : '', c.sparsity !== undefined ? vscode.l10n.t('sparsity {0}', c.sparsity) : '', c.bits !== undefined ? vscode.l10n.t('{0} bits', c.bits) : ''].filter(Boolean).join(', ') : undefined;
        return { layer, cost: byName.get(layer)?.score ?? null, ...(choice ? { choice } : {}) };
      }),
    };
  }
  return card;
}

const panels = new Map<string, CompressPanel>();

/** Opens (or reveals) the Compress wizard for a model. */
export function openCompressWizard(ctx: RecipeContext, model: string): CompressPanel {
  const open = panels.get(model);
  if (open) {
    open.panel.reveal(vscode.ViewColumn.Active);
    return open;
  }
  const panel = new CompressPanel(ctx, model);
  panels.set(model, panel);
  panel.panel.onDidDispose(() => panels.delete(model));
  return panel;
}

/**
 * The Compress wizard: a webview panel in four steps (model card, goal, data, review and run). The recipe is
 * saved beside the model, then run in a worker of its own with progress in the panel and Cancel; the report
 * opens when it is done.
 */
export class CompressPanel {
  readonly panel: vscode.WebviewPanel;
  private readonly channel: WebviewChannel<CompressRequests, CompressHostRequests, ToCompressEvent, FromCompressEvent>;
  private running: vscode.CancellationTokenSource | undefined;
  private lastRun: string | undefined;

  constructor(
    private readonly ctx: RecipeContext,
    readonly model: string,
  ) {
    this.panel = vscode.window.createWebviewPanel(compressViewType, vscode.l10n.t('Compress {0}', path.basename(model)), vscode.ViewColumn.Active, {
      ...webviewOptions(ctx.extensionUri),
      retainContextWhenHidden: true,
    });
    const recipeFile = recipeFileFor(model);
    const handlers = {
      pickData: async () => {
        const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: vscode.l10n.t('Data for compression and evaluation') });
        return picked?.[0]?.fsPath ?? null;
      },
      previewData: ({ data }: { data: string }) => previewData(path.resolve(path.dirname(recipeFile), data), vscode.l10n.t),
      validate: ({ recipe }: { recipe: unknown }) => validateRecipe(recipe, recipeFile),
    };
    this.channel = new WebviewChannel<CompressRequests, CompressHostRequests, ToCompressEvent, FromCompressEvent>(this.panel.webview, handlers, (event) => {
      switch (event.type) {
        case 'ready':
          void this.sendInit(recipeFile);
          break;
        case 'run':
          void this.run(recipeFile, event.recipe);
          break;
        case 'cancel':
          this.running?.cancel();
          break;
        case 'openReport':
          if (this.lastRun) showRunReport(this.lastRun);
          break;
        default: {
          const never: never = event;
          void never;
        }
      }
    });
    this.panel.webview.html = webviewHtml(this.panel.webview, ctx.extensionUri, { title: vscode.l10n.t('Compress Model'), bundle: 'compress' });
    this.panel.onDidDispose(() => {
      this.running?.cancel();
      this.channel.dispose();
    });
  }

  private async sendInit(recipeFile: string): Promise<void> {
    try {
      const summary = await this.ctx.engine.inspect(this.model);
      let existing: unknown;
      try {
        existing = fs.existsSync(recipeFile) ? JSON.parse(fs.readFileSync(recipeFile, 'utf8')) : undefined;
      } catch {
        existing = undefined;
      }
      this.channel.rpc.sendEvent({
        type: 'init',
        model: modelCard(summary),
        // The presets' and the passes' texts are core data (shared with the CLI's help): translated here, their Thai
        // entries checked by test/unit/l10n.test.ts.
        presets: presets.map((p) => ({ ...p, label: vscode.l10n.t(p.label), detail: vscode.l10n.t(p.detail) })),
        passes: Object.entries(recipePasses)
          .filter(([name]) => !plannedPasses.includes(name))
          .map(([name, def]) =>
            passForm(
              name as PassForm['pass'],
              vscode.l10n.t(def.summary),
              [...def.params, ...(def.extra ?? []).filter((x) => !def.params.some((p) => p.name === x.name))].map((s) => ({ ...s, help: vscode.l10n.t(s.help) })),
            ),
          ),
        recipeFile,
        recipeRelative: vscode.workspace.asRelativePath(recipeFile),
        modelRef: path.relative(path.dirname(recipeFile), this.model).split(path.sep).join('/'),
        limit: vscode.workspace.getConfiguration('whittle').get<number>('calibration.maxSamples', 256),
        ...(existing !== undefined ? { existing } : {}),
      });
    } catch (err) {
      this.channel.rpc.sendEvent({ type: 'runFinished', error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Validates and saves the reviewed recipe beside the model, then runs it. */
  private async run(recipeFile: string, recipe: unknown): Promise<void> {
    if (this.running) return;
    if (!vscode.workspace.isTrusted) {
      this.channel.rpc.sendEvent({ type: 'runFinished', error: vscode.l10n.t('Running models needs a trusted workspace.') });
      return;
    }
    const issues = validateRecipe(recipe, recipeFile);
    if (issues.length) {
      this.channel.rpc.sendEvent({ type: 'runFinished', error: issues.map((i) => `${i.path || '/'}: ${i.message}`).join('\n') });
      return;
    }
    writeFileAtomic(recipeFile, `${JSON.stringify(recipe, null, 2)}\n`);
    const cancel = new vscode.CancellationTokenSource();
    this.running = cancel;
    try {
      const result = await runRecipeFile(this.ctx, recipeFile, cancel.token, (fraction, message) => this.channel.rpc.sendEvent({ type: 'runProgress', fraction, message }));
      this.lastRun = result.outDir;
      const ratio = result.sizeBytes.before > 0 ? result.sizeBytes.after / result.sizeBytes.before : 1;
      const acc = result.metrics.accuracy;
      const quality = acc ? vscode.l10n.t('accuracy {0}% ({1} pt)', (acc.after * 100).toFixed(2), `${acc.dropPt > 0 ? '−' : '+'}${Math.abs(acc.dropPt).toFixed(2)}`) : result.metrics.top1Agreement !== undefined ? vscode.l10n.t('top-1 agreement {0}%', (result.metrics.top1Agreement * 100).toFixed(1)) : '';
      const summary = [vscode.l10n.t('{0}x the size', ratio.toFixed(2)), quality].filter(Boolean).join(', ');
      this.channel.rpc.sendEvent({
        type: 'runFinished',
        result: { output: result.output, outDir: result.outDir, sha256: result.sha256, sizeBytes: result.sizeBytes, reportHtml: result.reportHtml, warnings: result.warnings, summary },
      });
    } catch (err) {
      if (err instanceof CancelledError || cancel.token.isCancellationRequested) this.channel.rpc.sendEvent({ type: 'runFinished', cancelled: true });
      else this.channel.rpc.sendEvent({ type: 'runFinished', error: err instanceof Error ? err.message : String(err) });
    } finally {
      this.running = undefined;
      cancel.dispose();
    }
  }
}
