import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DistillParams, DistillResult } from '../core/passes/distill/types';
import type { EpName } from '../core/runtime/ep';
import type { FinetuneContext } from './finetuneCommand';
import { pickEpochs, pickEvalData, pickTrainingData } from './finetuneCommand';
import { findModels } from './modelsView';
import { distillReport, pct, trainingPointOf } from './trainingReport';

/** Arguments a caller (a test, another extension) can pass to skip the pickers; `student` and `data` are enough. */
export interface DistillOptions {
  /** A student .onnx, or `derive:RATIO`. */
  student: string;
  data: string;
  epochs?: number;
  temperature?: number;
  alpha?: number;
  features?: string[];
  evalData?: string;
  limit?: number;
  evalLimit?: number;
  batch?: number;
  lr?: number;
}

/** True for a plain DistillOptions object (the Explorer passes (uri, selectedUris) instead). */
export function isDistillOptions(v: unknown): v is DistillOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as DistillOptions).student === 'string' && typeof (v as DistillOptions).data === 'string';
}

/**
 * Distill…: the teacher is the given model; asks for the student (a model file, or derived from the teacher at a
 * ratio), the data, epochs, temperature, alpha and optional feature pairs (the tensor names of both models), then
 * runs `distill` in a worker of its own with the training panel open. Returns the result, or undefined when
 * dismissed or cancelled (then no run folder is left).
 */
export async function distill(ctx: FinetuneContext, teacher: vscode.Uri, options?: DistillOptions): Promise<DistillResult | undefined> {
  const name = path.basename(teacher.fsPath);
  const title = vscode.l10n.t('distill {0}', name);
  const student = options?.student ?? (await pickStudent(title, teacher));
  if (!student) return undefined;
  const data = options?.data ?? (await pickTrainingData(title, vscode.l10n.t('training data (labels optional)')));
  if (!data) return undefined;
  const epochs = options?.epochs ?? (await pickEpochs(title));
  if (!epochs) return undefined;
  const evalData = options ? options.evalData : await pickEvalData(title, data);
  if (evalData === null) return undefined;
  const temperature = options?.temperature ?? (await pickNumber(title, vscode.l10n.t('temperature'), [
    [1, vscode.l10n.t('plain softmax: the teacher\'s top class dominates')],
    [2, vscode.l10n.t('slightly softened')],
    [4, vscode.l10n.t('softened: the usual choice, shows the teacher\'s second guesses')],
    [8, vscode.l10n.t('very soft: nearly uniform for confident teachers')],
  ]));
  if (temperature === undefined) return undefined;
  const alpha = options?.alpha ?? (await pickNumber(title, vscode.l10n.t('alpha (weight of the true labels)'), [
    [0.1, vscode.l10n.t('mostly the teacher\'s soft targets')],
    [0.5, vscode.l10n.t('half labels, half teacher')],
    [0.9, vscode.l10n.t('mostly the true labels')],
    [0, vscode.l10n.t('the teacher only (for data without labels)')],
  ]));
  if (alpha === undefined) return undefined;
  const features = options?.features ?? (await pickFeaturePairs(ctx, title, teacher.fsPath, student));
  if (!features) return undefined;
  const config = vscode.workspace.getConfiguration('whittle');
  const params: DistillParams = {
    teacher: teacher.fsPath,
    student,
    data,
    epochs,
    temperature,
    alpha,
    ...(features.length ? { features } : {}),
    ...(evalData ? { evalData } : {}),
    ...(options?.limit ? { limit: options.limit } : {}),
    ...(options?.evalLimit ? { evalLimit: options.evalLimit } : {}),
    ...(options?.batch ? { batch: options.batch } : {}),
    ...(options?.lr ? { lr: options.lr } : {}),
    ep: config.get<EpName>('executionProvider', 'auto'),
  };
  const derived = /^derive:(.+)$/.exec(student);
  const result = await ctx.training.run(
    {
      kind: 'distill',
      title: vscode.l10n.t('Distilling {0}', name),
      facts: [
        [vscode.l10n.t('Teacher'), teacher.fsPath],
        [vscode.l10n.t('Student'), derived ? vscode.l10n.t('derived from the teacher, about {0}% of its parameters', Math.round(Number(derived[1]) * 100)) : student],
        [vscode.l10n.t('Data'), data],
        [vscode.l10n.t('Epochs'), String(epochs)],
        [vscode.l10n.t('Evaluation data'), evalData ?? vscode.l10n.t('the first 1000 training samples (no held-out data)')],
        [vscode.l10n.t('Temperature, alpha'), `T = ${temperature}, alpha = ${alpha}`],
        [vscode.l10n.t('Feature pairs'), features.length ? features.join(', ') : vscode.l10n.t('none')],
      ],
    },
    ({ token, onStep, onProgress }) => ctx.engine.job('distill', params, token, onProgress, undefined, (e) => onStep(trainingPointOf(e))),
    (r) => distillReport(r, vscode.l10n.t),
  );
  if (!result) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: distillation cancelled; no output was left behind.'));
    return undefined;
  }
  ctx.refreshModels();
  void vscode.window.showInformationMessage(
    vscode.l10n.t('Whittle: distilled {0} into a student with {1} of its parameters: accuracy {2} (teacher {3}). Saved to {4}', name, pct(result.params.after / Math.max(1, result.params.before), 1), pct(result.metrics.after.accuracy), pct(result.metrics.before.accuracy), result.output),
  );
  return result;
}

/** The student pick: derived from the teacher at a ratio, or a model in the workspace, or Browse…. */
async function pickStudent(title: string, teacher: vscode.Uri): Promise<string | undefined> {
  const models = (await findModels()).filter((m) => m.kind === 'onnx' && m.uri.fsPath !== teacher.fsPath);
  const items: Array<vscode.QuickPickItem & { value: string }> = [
    ...[0.5, 0.25, 0.75].map((r) => ({
      label: vscode.l10n.t('Derive from the teacher: {0}% of its parameters', r * 100),
      detail: vscode.l10n.t('the teacher with its channels structured-pruned to about {0}% of the parameters, then trained to match it', r * 100),
      value: `derive:${r}`,
    })),
    ...models.map((m) => ({ label: path.basename(m.uri.fsPath), description: vscode.workspace.asRelativePath(m.uri), value: m.uri.fsPath })),
    { label: `$(folder-opened) ${vscode.l10n.t('Browse…')}`, value: 'browse' },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: `Whittle: ${title}: ${vscode.l10n.t('student')}`, placeHolder: vscode.l10n.t('a smaller model for the same task, or one derived from the teacher') });
  if (!pick) return undefined;
  if (pick.value !== 'browse') return pick.value;
  const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { Models: ['onnx'] } });
  return picked?.[0]?.fsPath;
}

/** A pick of a few numbers with what each means, or a typed one. */
async function pickNumber(title: string, what: string, presets: Array<[number, string]>): Promise<number | undefined> {
  const pick = await vscode.window.showQuickPick(
    [...presets.map(([v, detail]) => ({ label: String(v), detail, value: v })), { label: vscode.l10n.t('Custom…'), detail: '', value: NaN }],
    { title: `Whittle: ${title}: ${what}` },
  );
  if (!pick) return undefined;
  if (!Number.isNaN(pick.value)) return pick.value;
  const typed = await vscode.window.showInputBox({ title: `Whittle: ${title}: ${what}`, validateInput: (v) => (Number.isFinite(Number.parseFloat(v)) && Number.parseFloat(v) >= 0 ? undefined : vscode.l10n.t('a number of at least 0')) });
  return typed === undefined ? undefined : Number.parseFloat(typed);
}

/** Ops whose outputs make sensible feature targets (activations, not shapes or constants). */
const featureOps = new Set(['Conv', 'Relu', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Gemm', 'MatMul', 'BatchNormalization', 'Add', 'Sigmoid', 'Tanh', 'Clip', 'LeakyRelu', 'Gelu', 'HardSwish', 'Flatten', 'Reshape', 'Concat', 'LayerNormalization']);

/**
 * The optional feature pairs: a multi-pick of the teacher's values, then for each the student's value to match
 * (the same name first: a derived student keeps the teacher's names). Nothing picked: no feature term. Returns
 * `teacher:student` strings, or undefined when dismissed.
 */
async function pickFeaturePairs(ctx: FinetuneContext, title: string, teacher: string, student: string): Promise<string[] | undefined> {
  const derived = student.startsWith('derive:');
  const [tValues, sValues] = await Promise.all([ctx.engine.request('valueNames', { file: teacher }), derived ? undefined : ctx.engine.request('valueNames', { file: student })]);
  const candidates = tValues.filter((v) => featureOps.has(v.op));
  const chosen = await vscode.window.showQuickPick(
    candidates.map((v) => ({ label: v.name, description: v.op, picked: false })),
    { title: `Whittle: ${title}: ${vscode.l10n.t('feature pairs (optional)')}`, placeHolder: vscode.l10n.t('teacher values whose features the student should match; none: press Enter'), canPickMany: true },
  );
  if (!chosen) return undefined;
  if (derived) return chosen.map((c) => `${c.label}:${c.label}`);
  const studentValues = (sValues ?? []).filter((v) => featureOps.has(v.op));
  const pairs: string[] = [];
  for (const c of chosen) {
    const same = studentValues.filter((v) => v.name === c.label);
    const others = studentValues.filter((v) => v.name !== c.label);
    const pick = await vscode.window.showQuickPick(
      [...same, ...others].map((v) => ({ label: v.name, description: v.op })),
      { title: `Whittle: ${title}: ${vscode.l10n.t('student value to match {0}', c.label)}` },
    );
    if (!pick) return undefined;
    pairs.push(`${c.label}:${pick.label}`);
  }
  return pairs;
}
