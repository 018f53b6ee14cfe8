import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FinetuneParams, FinetuneResult } from '../core/train/finetune';
import type { EpName } from '../core/runtime/ep';
import type { Engine } from './engine';
import { finetuneReport, trainingPointOf } from './trainingReport';
import type { TrainingPanel } from './trainingView';

/** Arguments a caller (a test, another extension) can pass to skip the pickers; `data` alone is enough. */
export interface FinetuneOptions {
  data: string;
  epochs?: number;
  evalData?: string;
  lr?: number;
  batch?: number;
  limit?: number;
}

/** True for a plain FinetuneOptions object (the Explorer passes (uri, selectedUris) instead). */
export function isFinetuneOptions(v: unknown): v is FinetuneOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as FinetuneOptions).data === 'string';
}

/** What Fine-tune… needs from the extension. */
export interface FinetuneContext {
  engine: Engine;
  training: TrainingPanel;
  refreshModels: () => void;
}

/**
 * Fine-tune…: asks for labelled training data and the number of epochs (or takes `options`), then runs
 * `finetune` in a worker of its own with the training panel open (live loss chart, Cancel, final report).
 * Returns the result, or undefined when dismissed or cancelled (then no run folder is left).
 */
export async function finetune(ctx: FinetuneContext, model: vscode.Uri, options?: FinetuneOptions): Promise<FinetuneResult | undefined> {
  const name = path.basename(model.fsPath);
  const title = vscode.l10n.t('fine-tune {0}', name);
  const data = options?.data ?? (await pickTrainingData(title));
  if (!data) return undefined;
  const epochs = options?.epochs ?? (await pickEpochs(title));
  if (!epochs) return undefined;
  const evalData = options ? options.evalData : await pickEvalData(title, data);
  if (evalData === null) return undefined;
  const config = vscode.workspace.getConfiguration('whittle');
  const params: FinetuneParams = {
    model: model.fsPath,
    data,
    epochs,
    ...(evalData ? { evalData } : {}),
    ...(options?.lr ? { lr: options.lr } : {}),
    ...(options?.batch ? { batch: options.batch } : {}),
    ...(options?.limit ? { limit: options.limit } : {}),
    ep: config.get<EpName>('executionProvider', 'auto'),
  };
  const result = await ctx.training.run(
    {
      kind: 'finetune',
      title: vscode.l10n.t('Fine-tuning {0}', name),
      facts: [
        [vscode.l10n.t('Model'), model.fsPath],
        [vscode.l10n.t('Data'), data],
        [vscode.l10n.t('Epochs'), String(epochs)],
        [vscode.l10n.t('Evaluation data'), evalData ?? vscode.l10n.t('the first 1000 training samples (no held-out data)')],
      ],
    },
    ({ token, onStep, onProgress }) => ctx.engine.job('finetune', params, token, onProgress, undefined, (e) => onStep(trainingPointOf(e))),
    finetuneReport,
  );
  if (!result) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: fine-tuning cancelled; no output was left behind.'));
    return undefined;
  }
  ctx.refreshModels();
  const acc = result.metrics.accuracy;
  void vscode.window.showInformationMessage(
    acc
      ? vscode.l10n.t('Whittle: fine-tuned {0}: accuracy {1}% → {2}%. Saved to {3}', name, (acc.before * 100).toFixed(2), (acc.after * 100).toFixed(2), result.output)
      : vscode.l10n.t('Whittle: fine-tuned {0}. Saved to {1}', name, result.output),
  );
  return result;
}

/** Labelled data found in the workspace (MNIST idx images, dataset manifests), then Browse…. */
export async function pickTrainingData(title: string, purpose = vscode.l10n.t('training data (with labels)')): Promise<string | undefined> {
  const found = await vscode.workspace.findFiles('**/{*-images-idx3-ubyte,*-images-idx3-ubyte.gz,*.dataset.json}', '**/node_modules/**', 50);
  const items: Array<vscode.QuickPickItem & { value: string }> = [
    ...found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(u), value: u.fsPath })),
    { label: `$(folder-opened) ${vscode.l10n.t('Choose a file or folder…')}`, detail: vscode.l10n.t('an MNIST idx images file (labels beside it), a *.dataset.json manifest with labels, or class folders of images'), value: 'browse' },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: `Whittle: ${title}: ${purpose}`, placeHolder: found.length ? vscode.l10n.t('labelled data in this workspace') : vscode.l10n.t('no labelled data found in this workspace') });
  if (!pick) return undefined;
  if (pick.value !== 'browse') return pick.value;
  const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: purpose });
  return picked?.[0]?.fsPath;
}

/**
 * The evaluation-data pick: held-out labelled data for the before/after accuracy and the per-epoch evaluations
 * (the best are kept), or none (the first 1000 training samples give the metrics). Null when dismissed.
 */
export async function pickEvalData(title: string, training: string): Promise<string | undefined | null> {
  const found = (await vscode.workspace.findFiles('**/{*-images-idx3-ubyte,*-images-idx3-ubyte.gz,*.dataset.json}', '**/node_modules/**', 50)).filter((u) => u.fsPath !== training);
  const items: Array<vscode.QuickPickItem & { value: string }> = [
    { label: vscode.l10n.t('None'), detail: vscode.l10n.t('measure on the first 1000 training samples: no per-epoch evaluation, and the figures flatter the model'), value: '' },
    ...found.map((u) => ({ label: path.basename(u.fsPath), description: vscode.workspace.asRelativePath(u), value: u.fsPath })),
    { label: `$(folder-opened) ${vscode.l10n.t('Choose a file or folder…')}`, value: 'browse' },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: `Whittle: ${title}: ${vscode.l10n.t('evaluation data (held out, with labels)')}` });
  if (!pick) return null;
  if (pick.value !== 'browse') return pick.value || undefined;
  const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: vscode.l10n.t('Evaluation data') });
  return picked?.[0]?.fsPath ?? null;
}

/** The epochs pick: a few presets or a typed number. */
export async function pickEpochs(title: string): Promise<number | undefined> {
  const pick = await vscode.window.showQuickPick(
    [
      ...[1, 2, 3, 5].map((n) => ({ label: String(n), detail: n === 1 ? vscode.l10n.t('one pass over the data') : vscode.l10n.t('{0} passes over the data', n), value: n })),
      { label: vscode.l10n.t('Custom…'), detail: vscode.l10n.t('any whole number'), value: NaN },
    ],
    { title: `Whittle: ${title}: ${vscode.l10n.t('epochs')}` },
  );
  if (!pick) return undefined;
  if (!Number.isNaN(pick.value)) return pick.value;
  const typed = await vscode.window.showInputBox({ title: `Whittle: ${title}: ${vscode.l10n.t('epochs')}`, value: '10', validateInput: (v) => (/^\s*[1-9]\d*\s*$/.test(v) ? undefined : vscode.l10n.t('a whole number of at least 1')) });
  return typed === undefined ? undefined : Number.parseInt(typed, 10);
}
