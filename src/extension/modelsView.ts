import * as path from 'node:path';
import * as vscode from 'vscode';
import { Disposable } from './dispose';
import { showError } from './log';
import { isRunOutput, listRuns, type RunInfo } from './runs';

/** The Models tree's id (package.json `views`). */
export const modelsViewId = 'whittle.models';

const exclude = '{**/node_modules/**,**/.git/**,**/*.whittle/**/.*}';

/** A model file found in the workspace. */
export interface ModelEntry {
  uri: vscode.Uri;
  kind: 'onnx' | 'tfjs';
}

/** A `.whittle` run of a model in the Models tree; the run commands receive it. */
export interface RunNode {
  run: RunInfo;
  model: ModelEntry;
}

type Node = ModelEntry | RunNode;

const isRun = (n: unknown): n is RunNode => typeof n === 'object' && n !== null && 'run' in n && 'model' in n;

/** Lists the workspace's ONNX and TF.js models (`model.json` with a weights manifest or topology). */
export async function findModels(token?: vscode.CancellationToken): Promise<ModelEntry[]> {
  const [onnx, json] = await Promise.all([
    vscode.workspace.findFiles('**/*.onnx', exclude, undefined, token),
    vscode.workspace.findFiles('**/model.json', exclude, undefined, token),
  ]);
  const tfjs: vscode.Uri[] = [];
  for (const uri of json) {
    try {
      const head = Buffer.from(await vscode.workspace.fs.readFile(uri)).subarray(0, 65536).toString('utf8');
      if (/"(modelTopology|weightsManifest)"/.test(head)) tfjs.push(uri);
    } catch {
      // Unreadable files are simply not listed.
    }
  }
  return [...onnx.map((uri) => ({ uri, kind: 'onnx' as const })), ...tfjs.map((uri) => ({ uri, kind: 'tfjs' as const }))].sort((a, b) =>
    a.uri.fsPath.localeCompare(b.uri.fsPath),
  );
}

/**
 * The Models tree: every model in the workspace (models written into run folders appear under their run, not
 * beside their source), each expanding to its `.whittle` runs with their headline figures; refreshed by file
 * watchers on models and run folders.
 */
export class ModelsView extends Disposable implements vscode.TreeDataProvider<Node> {
  private readonly changed = this._register(new vscode.EventEmitter<void>());
  readonly onDidChangeTreeData = this.changed.event;
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    super();
    const refresh = () => this.refresh();
    // Models come and go; runs are folders under `<name>.whittle/` whose report.json is written last.
    for (const glob of ['**/{*.onnx,model.json}', '**/*.whittle/**']) {
      const watcher = this._register(vscode.workspace.createFileSystemWatcher(glob));
      this._register(watcher.onDidCreate(refresh));
      this._register(watcher.onDidDelete(refresh));
      this._register(watcher.onDidChange(refresh));
    }
    this._register(vscode.workspace.onDidChangeWorkspaceFolders(refresh));
    this._register({ dispose: () => clearTimeout(this.timer) });
    this._register(vscode.commands.registerCommand('whittle.openRunReport', (n: unknown) => isRun(n) && vscode.commands.executeCommand('whittle.openReport', vscode.Uri.file(n.run.dir))));
    this._register(vscode.commands.registerCommand('whittle.inspectRunOutput', (n: unknown) => isRun(n) && n.run.output && vscode.commands.executeCommand('whittle.inspect', vscode.Uri.file(n.run.output))));
    this._register(vscode.commands.registerCommand('whittle.revealRun', (n: unknown) => isRun(n) && vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(n.run.dir))));
    this._register(vscode.commands.registerCommand('whittle.deleteRun', (n: unknown) => (isRun(n) ? this.deleteRun(n) : undefined)));
  }

  /** Refreshes the tree, debounced so a burst of file events costs one search. */
  refresh(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.changed.fire(), 300);
  }

  /** Deletes a run folder after a modal confirmation; returns whether it was deleted. */
  async deleteRun(node: RunNode): Promise<boolean> {
    const remove = vscode.l10n.t('Delete');
    const answer = await vscode.window.showWarningMessage(
      vscode.l10n.t('Delete the run {0} of {1}?', node.run.name, path.basename(node.model.uri.fsPath)),
      { modal: true, detail: vscode.l10n.t('Its folder {0} and everything in it will be deleted. The source model is not touched.', node.run.dir) },
      remove,
    );
    if (answer !== remove) return false;
    try {
      await vscode.workspace.fs.delete(vscode.Uri.file(node.run.dir), { recursive: true, useTrash: false });
    } catch (err) {
      void showError(vscode.l10n.t('Whittle: could not delete {0}: {1}', node.run.dir, err instanceof Error ? err.message : String(err)), err);
      return false;
    }
    this.refresh();
    return true;
  }

  async getChildren(element?: Node): Promise<Node[]> {
    if (!element) return (await findModels()).filter((m) => !isRunOutput(m.uri.fsPath));
    if (isRun(element)) return [];
    return listRuns(element.uri.fsPath, vscode.l10n.t).map((run) => ({ run, model: element }));
  }

  getTreeItem(node: Node): vscode.TreeItem {
    if (isRun(node)) return runItem(node);
    const entry = node;
    const runs = listRuns(entry.uri.fsPath).length;
    const item = new vscode.TreeItem(
      entry.kind === 'tfjs' ? path.basename(path.dirname(entry.uri.fsPath)) + '/model.json' : path.basename(entry.uri.fsPath),
      runs ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None,
    );
    item.id = entry.uri.toString();
    item.resourceUri = entry.uri;
    item.description = vscode.workspace.asRelativePath(path.dirname(entry.uri.fsPath));
    item.tooltip = entry.kind === 'onnx' ? vscode.l10n.t('ONNX model: {0}', entry.uri.fsPath) : vscode.l10n.t('TensorFlow.js model: {0}', entry.uri.fsPath);
    item.contextValue = `whittle.model.${entry.kind}`;
    item.iconPath = new vscode.ThemeIcon(entry.kind === 'onnx' ? 'circuit-board' : 'json');
    item.command = { command: 'whittle.inspect', title: vscode.l10n.t('Inspect Model'), arguments: [entry.uri] };
    return item;
  }
}

/** A run's tree item: its folder name, its headline figures, and the run context actions. */
function runItem(node: RunNode): vscode.TreeItem {
  const { run } = node;
  const item = new vscode.TreeItem(run.name, vscode.TreeItemCollapsibleState.None);
  item.id = vscode.Uri.file(run.dir).toString();
  item.description = run.headline ?? vscode.l10n.t('report.json is unreadable');
  item.tooltip = new vscode.MarkdownString().appendText(`${run.dir}\n${item.description}`);
  // `.output` gates Inspect Output Model (package.json menus).
  item.contextValue = run.output ? 'whittle.run.output' : 'whittle.run';
  item.iconPath = new vscode.ThemeIcon('history');
  item.command = { command: 'whittle.openRunReport', title: vscode.l10n.t('Open Report'), arguments: [node] };
  return item;
}
