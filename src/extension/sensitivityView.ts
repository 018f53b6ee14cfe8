import * as path from 'node:path';
import * as vscode from 'vscode';
import { readSidecar, sidecarPath, writeAnalysis, writeChoice } from '../core/analysisSidecar';
import type { ModelSummary } from '../core/inspect';
import type { EpName } from '../core/runtime/ep';
import type { AnalyzeParams, AnalyzeResult } from '../protocol/analysis';
import { CancelledError } from '../protocol/rpc';
import type { FromSensitivityEvent, SensitivityHostRequests, SensitivityRequests, ShowModelEvent, ToSensitivityEvent } from '../protocol/sensitivity';
import { Disposable } from './dispose';
import type { Engine } from './engine';
import { WebviewChannel } from './webviewChannel';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The Layer Sensitivity view's id (package.json `views`). */
export const sensitivityViewId = 'whittle.sensitivity';

/** What a run needs besides the model. */
export interface AnalyzeOptions {
  data: string;
  kind?: AnalyzeParams['kind'];
  limit?: number;
}

/**
 * The Layer Sensitivity webview view in the Whittle side bar: the layers of the model in the active inspector,
 * and its sensitivity analysis, which runs in a worker of its own and streams each layer's sweeps to the view.
 */
export class SensitivityView extends Disposable implements vscode.WebviewViewProvider {
  private channel: WebviewChannel<SensitivityRequests, SensitivityHostRequests, ToSensitivityEvent, FromSensitivityEvent> | undefined;
  private current: ShowModelEvent['model'] = null;
  private selected: string | undefined;
  private running: { file: string; cancel: vscode.CancellationTokenSource } | undefined;
  private view: vscode.WebviewView | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly engine: Engine,
  ) {
    super();
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    view.webview.options = webviewOptions(this.extensionUri);
    this.view = view;
    this.channel?.dispose();
    const handlers = {
      pickData: async () => {
        const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: vscode.l10n.t('Calibration data for the sensitivity analysis') });
        return picked?.[0]?.fsPath ?? null;
      },
      setChoice: ({ file, layer, choice }: SensitivityHostRequests['setChoice']['params']) => writeChoice(file, layer, choice).choices,
    };
    const channel = new WebviewChannel<SensitivityRequests, SensitivityHostRequests, ToSensitivityEvent, FromSensitivityEvent>(view.webview, handlers, (event) => {
      switch (event.type) {
        case 'ready':
          channel.rpc.sendEvent(this.showEvent());
          break;
        case 'analyze':
          void vscode.commands.executeCommand('whittle.analyzeSensitivity', vscode.Uri.file(event.file), event.data ? { data: event.data, kind: event.kind, limit: event.limit } : undefined);
          break;
        case 'cancel':
          this.running?.cancel.cancel();
          break;
        default: {
          const never: never = event;
          void never;
        }
      }
    });
    this.channel = this._register(channel);
    view.webview.html = webviewHtml(view.webview, this.extensionUri, { title: vscode.l10n.t('Layer Sensitivity'), bundle: 'sensitivity' });
    this._register(view.onDidDispose(() => {
      channel.dispose();
      if (this.channel === channel) this.channel = undefined;
      if (this.view === view) this.view = undefined;
    }));
  }

  private showEvent(): ShowModelEvent {
    const file = this.current?.file;
    return { type: 'showModel', model: this.current, selected: this.selected, analysis: file ? (readSidecar(file) ?? null) : null, running: !!file && this.running?.file === file };
  }

  /** Focuses the view on a model (read in the worker), e.g. for the Analyze Layer Sensitivity command. */
  async reveal(file: string): Promise<void> {
    if (this.current?.file !== file) this.showModel(await this.engine.inspect(file));
    await vscode.commands.executeCommand(`${sensitivityViewId}.focus`).then(undefined, () => undefined);
    this.view?.show?.(true);
  }

  /**
   * Runs the sweeps of `file` in a worker of its own (progress with ETA, Cancel in the notification or the
   * view), streams each layer to the view, and saves the result to the sidecar. Undefined when cancelled.
   */
  async run(file: string, options: AnalyzeOptions): Promise<AnalyzeResult | undefined> {
    if (this.running) throw new Error(vscode.l10n.t('a sensitivity analysis of {0} is already running; cancel it first', path.basename(this.running.file)));
    const kind = options.kind ?? 'both';
    const config = vscode.workspace.getConfiguration('whittle');
    const limit = options.limit ?? config.get<number>('calibration.maxSamples', 256);
    const cancel = new vscode.CancellationTokenSource();
    this.running = { file, cancel };
    const send = (event: ToSensitivityEvent) => this.channel?.rpc.sendEvent(event);
    send({ type: 'runStarted', file, data: options.data, kind });
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Whittle: sensitivity of {0}', path.basename(file)), cancellable: true },
        (progress, token) => {
          const sub = token.onCancellationRequested(() => cancel.cancel());
          const started = Date.now();
          let last = 0;
          const params: AnalyzeParams = { model: file, data: options.data, kind, limit, ep: config.get<EpName>('executionProvider', 'auto') };
          return this.engine
            .job(
              'analyze',
              params,
              cancel.token,
              (fraction, message) => {
                // The engine's messages usually carry an ETA already; add one only where they do not.
                const eta = !/ left\b/.test(message) && fraction && fraction > 0.02 ? ` · ${vscode.l10n.t('about {0} left', formatEta(((Date.now() - started) * (1 - fraction)) / fraction))}` : '';
                const now = fraction === undefined ? last : Math.round(fraction * 100);
                progress.report({ message: message + eta, increment: now - last });
                last = now;
                send({ type: 'runProgress', file, fraction, message: message + eta });
              },
              (event) => send({ type: 'layerResult', file, layer: event.layer, done: event.done, total: event.total }),
            )
            .finally(() => sub.dispose());
        },
      );
      const analysis = writeAnalysis(file, { data: options.data, kind, result });
      send({ type: 'runFinished', file, result, analysis, sidecar: sidecarPath(file) });
      return result;
    } catch (err) {
      if (err instanceof CancelledError || cancel.token.isCancellationRequested) {
        send({ type: 'runFinished', file, cancelled: true });
        return undefined;
      }
      send({ type: 'runFinished', file, error: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      this.running = undefined;
      cancel.dispose();
    }
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
    this.channel?.rpc.sendEvent(this.showEvent());
  }

  /** Highlights a layer picked in the inspector. */
  selectLayer(name: string): void {
    this.selected = name;
    this.channel?.rpc.sendEvent(this.showEvent());
  }
}

/** 75000 -> "1 min 15 s". */
function formatEta(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}
