import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { latestRun, onDidRunRecipe } from './compress';
import { showRunReport } from './reportView';

/** Which documents get the recipe CodeLenses. */
export const recipeSelector: vscode.DocumentSelector = { pattern: '**/*.whittle.json' };

/**
 * CodeLenses on a *.whittle.json: "▶ Run recipe" (whittle.runRecipe) and, once it has run, "Open report" (the
 * latest run folder of that recipe).
 */
export class RecipeLensProvider implements vscode.CodeLensProvider {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;
  private readonly sub = onDidRunRecipe(() => this.changed.fire());

  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    const top = new vscode.Range(0, 0, 0, 0);
    const lenses = [new vscode.CodeLens(top, { title: vscode.l10n.t('▶ Run recipe'), command: 'whittle.runRecipe', arguments: [doc.uri], tooltip: vscode.l10n.t('Run this recipe: every pass in order, then the report') })];
    const run = latestRun(doc.uri.fsPath);
    if (run) lenses.push(new vscode.CodeLens(top, { title: vscode.l10n.t('Open report'), command: 'whittle.openReport', arguments: [vscode.Uri.file(run)], tooltip: run }));
    return lenses;
  }

  dispose(): void {
    this.sub.dispose();
    this.changed.dispose();
  }
}

/**
 * `whittle.openReport`: shows the report of a run folder, of a report.json/report.html/report.md in one, or of a
 * recipe's latest run; with nothing given, asks for a run folder. Returns the run folder shown, or undefined.
 */
export async function openReportCommand(uri: vscode.Uri | undefined): Promise<string | undefined> {
  let target = uri?.fsPath;
  if (!target) {
    const active = vscode.window.activeTextEditor?.document.uri.fsPath;
    if (active && /\.whittle\.json$/i.test(active)) target = active;
  }
  if (!target) {
    const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: vscode.l10n.t('A Whittle run folder (or its report.json)') });
    target = picked?.[0]?.fsPath;
  }
  if (!target) return undefined;
  let folder: string;
  if (/\.whittle\.json$/i.test(target)) {
    const run = latestRun(target);
    if (!run) throw new Error(vscode.l10n.t('{0} has not been run yet: run it first (▶ Run recipe)', path.basename(target)));
    folder = run;
  } else folder = fs.existsSync(target) && fs.statSync(target).isDirectory() ? target : path.dirname(target);
  showRunReport(folder);
  return folder;
}
