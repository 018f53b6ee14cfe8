import * as fs from 'node:fs';
import * as vscode from 'vscode';
import type { ModelSummary } from '../core/inspect';
import { WorkerClient } from '../core/worker/client';
import type { LayerDoneEvent } from '../protocol/analysis';
import type { WorkerRequests } from '../protocol/worker';
import { loggedJob } from './log';
import type { TrainStepEvent } from '../protocol/training';
import type { DistillStepEvent } from '../core/passes/distill/types';

/** The extension's access to the engine: all compute goes through the worker, off the host's main thread. */
export class Engine implements vscode.Disposable {
  private readonly worker: WorkerClient;
  private readonly cache = new Map<string, { stamp: string; summary: Promise<ModelSummary> }>();

  private readonly workerFile: string;

  constructor(extensionUri: vscode.Uri) {
    this.workerFile = vscode.Uri.joinPath(extensionUri, 'dist', 'worker.js').fsPath;
    this.worker = new WorkerClient(this.workerFile);
  }

  /** The model's summary, computed in the worker and cached until the file's size or mtime changes. */
  inspect(file: string, token?: vscode.CancellationToken): Promise<ModelSummary> {
    let stamp = '';
    try {
      const st = fs.statSync(file);
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch {
      // Let the worker report the missing file in its own words.
    }
    const hit = this.cache.get(file);
    if (hit && hit.stamp === stamp) return hit.summary;
    const controller = new AbortController();
    token?.onCancellationRequested(() => controller.abort());
    const summary = this.worker.request('inspect', { file }, controller.signal);
    this.cache.set(file, { stamp, summary });
    summary.catch(() => this.cache.delete(file));
    return summary;
  }

  /**
   * Runs a long job in a worker of its own, so that cancelling it (which retires that worker) leaves other work
   * alone; progress events go to `onProgress`, streamed per-layer results (`analyze`) to `onLayerDone`,
   * training steps (`finetune`, `distill`) to `onTrainStep`. The Whittle log records its start, parameters, end,
   * duration, headline and warnings (src/extension/log.ts).
   */
  async job<K extends keyof WorkerRequests & string>(
    method: K,
    params: WorkerRequests[K]['params'],
    token?: vscode.CancellationToken,
    onProgress?: (fraction: number | undefined, message: string) => void,
    onLayerDone?: (event: LayerDoneEvent) => void,
    onTrainStep?: (event: TrainStepEvent | DistillStepEvent) => void,
  ): Promise<WorkerRequests[K]['result']> {
    const client = new WorkerClient(this.workerFile, (event) => {
      if (event.type === 'progress') onProgress?.(event.fraction, event.message);
      else if (event.type === 'layerDone') onLayerDone?.(event);
      else if (event.type === 'trainStep' || event.type === 'distillStep') onTrainStep?.(event);
    });
    const controller = new AbortController();
    const sub = token?.onCancellationRequested(() => controller.abort());
    try {
      return await loggedJob(method, params, () => client.request(method, params, controller.signal));
    } finally {
      sub?.dispose();
      client.dispose();
    }
  }

  /**
   * A short request (histogram, tensor tile) on the shared worker; cancelling the token (the panel closed, the
   * user moved on) cancels it in the worker.
   */
  request<K extends 'layerHistogram' | 'tensorTile' | 'quantError' | 'valueNames'>(method: K, params: WorkerRequests[K]['params'], token?: vscode.CancellationToken): Promise<WorkerRequests[K]['result']> {
    const controller = new AbortController();
    const sub = token?.onCancellationRequested(() => controller.abort());
    if (token?.isCancellationRequested) controller.abort();
    return this.worker.request(method, params, controller.signal).finally(() => sub?.dispose());
  }

  dispose(): void {
    this.worker.dispose();
    this.cache.clear();
  }
}
