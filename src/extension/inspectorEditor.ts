import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FromInspectorEvent, InspectorHostRequests, InspectorWebviewRequests, ToInspectorEvent } from '../protocol/inspector';
import { readOrigin } from '../core/origin';
import { Disposable } from './dispose';
import type { Engine } from './engine';
import type { SensitivityView } from './sensitivityView';
import { WebviewChannel } from './webviewChannel';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The Model Inspector custom editor's view type (package.json `customEditors`). */
export const inspectorViewType = 'whittle.modelInspector';

/** A model opened in the inspector; read-only, so it holds nothing but its URI. */
class ModelDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void {}
}

/** One open inspector panel. */
class InspectorPanel extends Disposable {
  constructor(
    private readonly document: ModelDocument,
    private readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    engine: Engine,
    sensitivity: SensitivityView,
  ) {
    super();
    const file = document.uri.fsPath;
    const needOrigin = () => {
      const origin = readOrigin(file);
      if (!origin) throw new Error(`${path.basename(file)} has no source model to compare with (no Whittle run folder beside it)`);
      return origin;
    };
    // Cancels the worker requests still running when the panel closes (finished ones are left alone).
    const closing = new vscode.CancellationTokenSource();
    this._register({ dispose: () => (closing.cancel(), closing.dispose()) });
    panel.webview.options = webviewOptions(extensionUri);
    const channel = this._register(
      new WebviewChannel<InspectorWebviewRequests, InspectorHostRequests, ToInspectorEvent, FromInspectorEvent>(
        panel.webview,
        {
          getSummary: (_params, signal) => engine.inspect(file, tokenFor(signal)),
          // A stale tile (the user zoomed on) is dropped by the webview rather than cancelled here: cancelling a
          // request on the shared worker retires that worker, which would cost more than finishing the tile.
          getHistogram: ({ of, ...params }) => engine.request('layerHistogram', { file: of === 'source' ? needOrigin().source : file, ...params }, closing.token),
          getTile: (params) => engine.request('tensorTile', { file, ...params, ...(params.mode === 'error' ? { source: needOrigin().source } : {}) }, closing.token),
          getOrigin: () => readOrigin(file) ?? null,
          getQuantError: ({ layer }) => engine.request('quantError', { file, source: needOrigin().source, layer }, closing.token),
        },
        (event) => {
          switch (event.type) {
            case 'ready':
              break;
            case 'layerSelected':
              sensitivity.selectLayer(event.name);
              break;
            case 'runCommand':
              void vscode.commands.executeCommand(event.command, document.uri);
              break;
            default: {
              const never: never = event;
              void never;
            }
          }
        },
      ),
    );
    panel.webview.html = webviewHtml(panel.webview, extensionUri, { title: path.basename(file), bundle: 'inspector' });

    const showInSensitivity = () => {
      engine.inspect(file).then(
        (summary) => sensitivity.showModel(summary),
        () => sensitivity.showModel(undefined),
      );
    };
    if (panel.active) showInSensitivity();
    this._register(panel.onDidChangeViewState((e) => e.webviewPanel.active && showInSensitivity()));

    // Re-read the model when it changes on disk (a pass wrote it, or the user replaced it).
    const watcher = this._register(
      vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(path.dirname(file)), path.basename(file))),
    );
    const changed = () => channel.rpc.sendEvent({ type: 'modelChanged' });
    this._register(watcher.onDidChange(changed));
    this._register(watcher.onDidCreate(changed));
    this._register(panel.onDidDispose(() => this.dispose()));
  }
}

/** Turns an AbortSignal into a CancellationToken for engine calls. */
function tokenFor(signal: AbortSignal): vscode.CancellationToken {
  const source = new vscode.CancellationTokenSource();
  if (signal.aborted) source.cancel();
  else signal.addEventListener('abort', () => source.cancel(), { once: true });
  return source.token;
}

/** Opens `*.onnx` files in the Model Inspector. */
export class InspectorEditorProvider implements vscode.CustomReadonlyEditorProvider<ModelDocument> {
  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly engine: Engine,
    private readonly sensitivity: SensitivityView,
  ) {}

  openCustomDocument(uri: vscode.Uri): ModelDocument {
    return new ModelDocument(uri);
  }

  resolveCustomEditor(document: ModelDocument, panel: vscode.WebviewPanel): void {
    new InspectorPanel(document, panel, this.extensionUri, this.engine, this.sensitivity);
  }
}
