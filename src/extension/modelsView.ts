import * as path from 'node:path';
import * as vscode from 'vscode';
import { Disposable } from './dispose';

/** The Models tree's id (package.json `views`). */
export const modelsViewId = 'whittle.models';

const exclude = '{**/node_modules/**,**/.git/**,**/*.whittle/**/.*}';

/** A model file found in the workspace. */
export interface ModelEntry {
  uri: vscode.Uri;
  kind: 'onnx' | 'tfjs';
}

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

/** The Models tree: every model in the workspace, refreshed by a file watcher. */
export class ModelsView extends Disposable implements vscode.TreeDataProvider<ModelEntry> {
  private readonly changed = this._register(new vscode.EventEmitter<void>());
  readonly onDidChangeTreeData = this.changed.event;
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    super();
    const watcher = this._register(vscode.workspace.createFileSystemWatcher('**/{*.onnx,model.json}'));
    const refresh = () => this.refresh();
    this._register(watcher.onDidCreate(refresh));
    this._register(watcher.onDidDelete(refresh));
    this._register(watcher.onDidChange(refresh));
    this._register(vscode.workspace.onDidChangeWorkspaceFolders(refresh));
    this._register({ dispose: () => clearTimeout(this.timer) });
  }

  /** Refreshes the tree, debounced so a burst of file events costs one search. */
  refresh(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.changed.fire(), 300);
  }

  getChildren(element?: ModelEntry): Promise<ModelEntry[]> | ModelEntry[] {
    return element ? [] : findModels();
  }

  getTreeItem(entry: ModelEntry): vscode.TreeItem {
    const item = new vscode.TreeItem(entry.kind === 'tfjs' ? path.basename(path.dirname(entry.uri.fsPath)) + '/model.json' : path.basename(entry.uri.fsPath));
    item.resourceUri = entry.uri;
    item.description = vscode.workspace.asRelativePath(path.dirname(entry.uri.fsPath));
    item.tooltip = `${entry.kind === 'onnx' ? 'ONNX' : 'TensorFlow.js'} model: ${entry.uri.fsPath}`;
    item.contextValue = `whittle.model.${entry.kind}`;
    item.iconPath = new vscode.ThemeIcon(entry.kind === 'onnx' ? 'circuit-board' : 'json');
    item.command = { command: 'whittle.inspect', title: 'Inspect Model', arguments: [entry.uri] };
    return item;
  }
}
