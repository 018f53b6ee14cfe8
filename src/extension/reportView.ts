import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { writeFileAtomic } from '../core/atomicWrite';
import { reportHtml } from '../core/report/render';
import type { ReportData } from '../core/report/types';
import type { EpName } from '../core/runtime/ep';
import type { Engine } from './engine';
import { escapeHtml, makeNonce } from './webviewHtml';

/** The Report panel's view type. */
export const reportViewType = 'whittle.report';

/** What a report panel shows: a standalone report page (reportHtml()) and where it came from. */
export interface ReportSource {
  /** The standalone HTML page (inline CSS and SVG, no scripts). */
  html: string;
  /** The panel title. */
  title: string;
  /** report.html on disk, when there is one (a run folder's). */
  file?: string;
  /** Suggested file name for Export HTML. */
  exportName?: string;
}

const open = new Map<string, { panel: vscode.WebviewPanel; source: ReportSource }>();

/**
 * Shows a report in a webview panel: the page reportHtml() wrote, unchanged, plus a toolbar with Export HTML.
 * The page itself has no scripts; the toolbar's one script (nonce-locked by the CSP) only posts `export`.
 * One panel per report file: showing it again reveals and refreshes it.
 */
export function showReport(source: ReportSource): vscode.WebviewPanel {
  const key = source.file ?? source.title;
  let entry = open.get(key);
  if (entry) {
    entry.source = source;
    entry.panel.reveal(vscode.ViewColumn.Active);
  } else {
    const panel = vscode.window.createWebviewPanel(reportViewType, source.title, vscode.ViewColumn.Active, { enableScripts: true, localResourceRoots: [] });
    const created = { panel, source };
    entry = created;
    open.set(key, created);
    const sub = panel.webview.onDidReceiveMessage((msg: { type?: string }) => {
      if (msg?.type === 'export') void exportReport(created.source);
    });
    panel.onDidDispose(() => {
      sub.dispose();
      open.delete(key);
    });
  }
  entry.panel.title = source.title;
  entry.panel.webview.html = withToolbar(source.html);
  return entry.panel;
}

/** Shows a run folder's report.html (reportHtml()'s page), by the folder or any file in it. */
export function showRunReport(runFolderOrFile: string): vscode.WebviewPanel {
  const dir = fs.existsSync(runFolderOrFile) && fs.statSync(runFolderOrFile).isDirectory() ? runFolderOrFile : path.dirname(runFolderOrFile);
  const file = path.join(dir, 'report.html');
  if (!fs.existsSync(file)) throw new Error(vscode.l10n.t('{0} has no report.html (is it a Whittle run folder?)', dir));
  return showReport({ html: fs.readFileSync(file, 'utf8'), title: vscode.l10n.t('Report: {0}', path.basename(dir)), file, exportName: `${path.basename(dir)}-report.html` });
}

/** Export HTML: writes the standalone page where the user chooses. Returns the path, or undefined. */
async function exportReport(source: ReportSource): Promise<string | undefined> {
  const folder = source.file ? path.dirname(path.dirname(source.file)) : vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const name = source.exportName ?? 'whittle-report.html';
  const target = await vscode.window.showSaveDialog({
    title: vscode.l10n.t('Export the Whittle report as a standalone HTML file'),
    defaultUri: folder ? vscode.Uri.file(path.join(folder, name)) : undefined,
    filters: { HTML: ['html'] },
  });
  if (!target) return undefined;
  writeFileAtomic(target.fsPath, source.html);
  void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: report exported to {0}', target.fsPath));
  return target.fsPath;
}

/**
 * The report page with a CSP (no network, no scripts but the toolbar's) and an Export HTML toolbar. The
 * page's own markup and ids (e.g. #size-after) are left as they are.
 */
export function withToolbar(html: string): string {
  const nonce = makeNonce();
  const csp = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'">`;
  const toolbar =
    `<div id="whittle-report-toolbar" style="position:sticky;top:0;z-index:10;display:flex;justify-content:flex-end;padding:6px 0;background:inherit">` +
    `<button id="export-html" type="button" style="font:inherit;padding:4px 10px;cursor:pointer;color:var(--vscode-button-foreground,#fff);background:var(--vscode-button-background,#0e639c);border:none;border-radius:2px">${escapeHtml(vscode.l10n.t('Export HTML'))}</button></div>` +
    `<script nonce="${nonce}">(function(){const api=acquireVsCodeApi();document.getElementById('export-html').addEventListener('click',function(){api.postMessage({type:'export'});});})();</script>`;
  // The page's own CSP (no scripts at all) would block the toolbar's: this one replaces it, adding only the nonce.
  const page = html.replace(/<meta\s+http-equiv=["']Content-Security-Policy["'][^>]*>/gi, '');
  let out = /<head[^>]*>/i.test(page) ? page.replace(/<head[^>]*>/i, (m) => `${m}${csp}`) : `${csp}${page}`;
  out = /<body[^>]*>/i.test(out) ? out.replace(/<body[^>]*>/i, (m) => `${m}${toolbar}`) : `${out}${toolbar}`;
  return out;
}

/**
 * Compare Models' report: the worker measures the two models (figures, per-layer changes, histograms) into the
 * report data a compression run writes, and the Report panel shows its page. `model` is the "after" side.
 */
export async function compareModelsReport(ctx: { engine: Engine }, model: string, reference: string, opts: { data: string; limit?: number; ep?: EpName }): Promise<ReportData | undefined> {
  const data = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Whittle: report on {0} against {1}', path.basename(model), path.basename(reference)), cancellable: true },
    (progress, token) => ctx.engine.job('compareModels', { a: reference, b: model, data: opts.data, limit: opts.limit, ep: opts.ep }, token, (_f, message) => progress.report({ message })),
  );
  showReport({ html: reportHtml(data), title: vscode.l10n.t('Compare: {0} vs {1}', path.basename(model), path.basename(reference)), exportName: `${path.basename(model).replace(/\.[^.]+$/, '')}-vs-${path.basename(reference).replace(/\.[^.]+$/, '')}.html` });
  return data;
}
