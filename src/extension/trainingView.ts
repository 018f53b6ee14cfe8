import * as vscode from 'vscode';
import { CancelledError } from '../protocol/rpc';
import type { FromTrainingEvent, ToTrainingEvent, TrainingPoint, TrainingReport, TrainingRequests } from '../protocol/training';
import { Disposable } from './dispose';
import { inspectorViewType } from './inspectorEditor';
import { WebviewChannel } from './webviewChannel';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The training panel's view type. */
export const trainingViewType = 'whittle.training';

/** What a run shows above its chart. */
export interface TrainingRunInfo {
  kind: TrainingReport['kind'];
  title: string;
  facts: Array<[string, string]>;
}

/** What a job gets: the cancel token and the sinks for its live numbers and status lines. */
export interface TrainingJobContext {
  token: vscode.CancellationToken;
  onStep: (point: TrainingPoint) => void;
  onProgress: (fraction: number | undefined, message: string) => void;
}

/** Live steps kept for a panel that reloads (hidden and shown again): older ones are thinned out. */
const maxLogged = 2000;

/**
 * The training panel (Fine-tune…, Distill…): a webview beside the editor with the live chart, a Cancel button
 * and the final report. One run at a time; its events are logged so a reloaded webview redraws the whole run.
 */
export class TrainingPanel extends Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private channel: WebviewChannel<TrainingRequests, TrainingRequests, ToTrainingEvent, FromTrainingEvent> | undefined;
  private log: ToTrainingEvent[] = [];
  private cancel: vscode.CancellationTokenSource | undefined;

  constructor(private readonly extensionUri: vscode.Uri) {
    super();
  }

  /** True while a run is in progress. */
  get running(): boolean {
    return this.cancel !== undefined;
  }

  /**
   * Opens the panel and runs `job` (a worker request) under a cancellable notification; Cancel in the panel or
   * the notification stops it. Returns the job's result, or undefined when cancelled.
   */
  async run<T>(info: TrainingRunInfo, job: (ctx: TrainingJobContext) => Promise<T>, toReport: (result: T) => TrainingReport): Promise<T | undefined> {
    if (this.cancel) throw new Error(vscode.l10n.t('a training run is already in progress; cancel it first'));
    const cancel = new vscode.CancellationTokenSource();
    this.cancel = cancel;
    this.log = [];
    this.show();
    this.send({ type: 'runStarted', kind: info.kind, title: info.title, facts: info.facts });
    try {
      const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Whittle: ${info.title}`, cancellable: true }, (progress, token) => {
        const sub = token.onCancellationRequested(() => cancel.cancel());
        let last = 0;
        // A cancelled job's worker drains after the request has been rejected, and may still report a step.
        const live = () => !cancel.token.isCancellationRequested && this.cancel === cancel;
        return job({
          token: cancel.token,
          onStep: (point) => {
            if (live()) this.send({ type: 'step', point });
          },
          onProgress: (fraction, message) => {
            if (!live()) return;
            const now = fraction === undefined ? last : Math.round(fraction * 100);
            progress.report({ message, increment: now - last });
            last = now;
            this.send({ type: 'runProgress', fraction, message });
          },
        }).finally(() => sub.dispose());
      });
      this.send({ type: 'runFinished', report: toReport(result) });
      return result;
    } catch (err) {
      if (err instanceof CancelledError || cancel.token.isCancellationRequested) {
        this.send({ type: 'runFinished', cancelled: true });
        return undefined;
      }
      this.send({ type: 'runFinished', error: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      this.cancel = undefined;
      cancel.dispose();
    }
  }

  private send(event: ToTrainingEvent): void {
    if (event.type === 'step') {
      // Keep the log bounded: drop every other step once it is full (the chart thins the same way).
      if (this.log.length >= maxLogged) this.log = this.log.filter((e, i) => e.type !== 'step' || i % 2 === 0);
    }
    this.log.push(event);
    this.channel?.rpc.sendEvent(event);
  }

  private show(): void {
    if (this.panel) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
      return;
    }
    const panel = vscode.window.createWebviewPanel(trainingViewType, vscode.l10n.t('Whittle Training'), { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, webviewOptions(this.extensionUri));
    this.panel = panel;
    const channel = new WebviewChannel<TrainingRequests, TrainingRequests, ToTrainingEvent, FromTrainingEvent>(panel.webview, {}, (event) => {
      switch (event.type) {
        case 'ready':
          // A fresh or reloaded webview: replay the run so far (the channel flushes nothing twice: it was reset).
          for (const e of this.log) channel.rpc.sendEvent(e);
          break;
        case 'cancel':
          this.cancel?.cancel();
          break;
        case 'open':
          void (event.as === 'inspector'
            ? vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(event.file), inspectorViewType)
            : vscode.window.showTextDocument(vscode.Uri.file(event.file), { viewColumn: vscode.ViewColumn.One }));
          break;
        default: {
          const never: never = event;
          void never;
        }
      }
    });
    this.channel = channel;
    panel.webview.html = webviewHtml(panel.webview, this.extensionUri, { title: vscode.l10n.t('Whittle Training'), bundle: 'training' });
    panel.onDidChangeViewState(() => {
      // Without retainContextWhenHidden the webview reloads when shown again; it says `ready` and is replayed.
      if (!panel.visible) channel.reset();
    });
    panel.onDidDispose(() => {
      // Closing the panel cancels its run: nothing would show it.
      this.cancel?.cancel();
      channel.dispose();
      this.panel = undefined;
      this.channel = undefined;
    });
  }

  override dispose(): void {
    this.cancel?.cancel();
    this.panel?.dispose();
    super.dispose();
  }
}
