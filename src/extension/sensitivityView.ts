import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelSummary } from '../core/inspect';
import type { FromSensitivityEvent, SensitivityRequests, ShowModelEvent, ToSensitivityEvent } from '../protocol/sensitivity';
import { Disposable } from './dispose';
import { WebviewChannel } from './webviewChannel';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The Layer Sensitivity view's id (package.json `views`). */
export const sensitivityViewId = 'whittle.sensitivity';

/**
 * The Layer Sensitivity webview view in the Whittle side bar. It lists the weight-bearing layers of the model
 * in the active inspector; the sweeps themselves arrive with the Analysis issue.
 */
export class SensitivityView extends Disposable implements vscode.WebviewViewProvider {
  private channel: WebviewChannel<SensitivityRequests, SensitivityRequests, ToSensitivityEvent, FromSensitivityEvent> | undefined;
  private current: ShowModelEvent['model'] = null;
  private selected: string | undefined;

  constructor(private readonly extensionUri: vscode.Uri) {
    super();
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    view.webview.options = webviewOptions(this.extensionUri);
    this.channel?.dispose();
    const channel = new WebviewChannel<SensitivityRequests, SensitivityRequests, ToSensitivityEvent, FromSensitivityEvent>(view.webview, {}, (event) => {
      switch (event.type) {
        case 'ready':
          channel.rpc.sendEvent({ type: 'showModel', model: this.current, selected: this.selected });
          break;
        case 'analyze':
          void vscode.commands.executeCommand('whittle.analyzeSensitivity', vscode.Uri.file(event.file));
          break;
        default: {
          const never: never = event;
          void never;
        }
      }
    });
    this.channel = this._register(channel);
    view.webview.html = webviewHtml(view.webview, this.extensionUri, { title: 'Layer Sensitivity', bundle: 'sensitivity' });
    this._register(view.onDidDispose(() => {
      channel.dispose();
      if (this.channel === channel) this.channel = undefined;
    }));
  }

  /** Shows a model's layers, or clears the view. */
  showModel(summary: ModelSummary | undefined): void {
    this.current = summary
      ? {
          file: summary.file,
          name: path.basename(summary.file),
          params: summary.params,
          layers: summary.layers.map((l) => ({ name: l.name, op: l.op, params: l.weights.reduce((a, w) => a + w.params, 0) })),
        }
      : null;
    this.selected = undefined;
    this.channel?.rpc.sendEvent({ type: 'showModel', model: this.current, selected: undefined });
  }

  /** Highlights a layer picked in the inspector. */
  selectLayer(name: string): void {
    this.selected = name;
    this.channel?.rpc.sendEvent({ type: 'showModel', model: this.current, selected: name });
  }
}
