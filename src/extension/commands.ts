import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { version } from '../core/version';
import type { EpName } from '../core/runtime/ep';
import type { EvalResult } from '../core/runtime/evaluate';
import { CancelledError } from '../protocol/rpc';
import type { Engine } from './engine';
import { selectExecutionProvider, type ExecutionProviderStatus } from './executionProvider';
import { inspectorViewType } from './inspectorEditor';
import { showError } from './log';
import { findModels } from './modelsView';
import type { AnalyzeOptions, SensitivityView } from './sensitivityView';
import type { AnalyzeResult } from '../protocol/analysis';
import type { PruneResult } from '../core/passes/run';
import type { QuantizeResult } from '../core/passes/quantize/run';
import type { TfjsQuantizeResult } from '../core/passes/quantize/tfjs';
import type { TfjsPruneResult } from '../core/passes/prune/tfjs';
import type { WorkerRequests } from '../protocol/worker';
import { pruneShape, pruneWhat, type PruneOptions } from './pruneChoice';
import { openCompressWizard, runRecipeCommand } from './compress';
import { openReportCommand } from './recipeLens';
import { compareModelsReport } from './reportView';
import { finetune, isFinetuneOptions } from './finetuneCommand';
import { distill, isDistillOptions } from './distillCommand';
import type { TrainingPanel } from './trainingView';

export type { PruneOptions } from './pruneChoice';

/** Every command Whittle contributes; package.json must declare exactly these (a unit test checks). */
export const commandTitles = {
  'whittle.inspect': 'Inspect Model',
  'whittle.compress': 'Compress Model…',
  'whittle.analyzeSensitivity': 'Analyze Layer Sensitivity',
  'whittle.prune': 'Prune…',
  'whittle.quantize': 'Quantize…',
  'whittle.distill': 'Distill…',
  'whittle.runRecipe': 'Run Recipe',
  'whittle.compare': 'Compare Models',
  'whittle.selectExecutionProvider': 'Select Execution Provider',
  'whittle.openReport': 'Open Report',
  'whittle.refreshModels': 'Refresh Models',
  'whittle.finetune': 'Fine-tune…',
} as const;

/** A command id. */
export type CommandId = keyof typeof commandTitles;


/** What the commands need from the extension. */
export interface CommandContext {
  refreshModels: () => void;
  engine: Engine;
  status: ExecutionProviderStatus;
  sensitivity: SensitivityView;
  extensionUri: vscode.Uri;
  training: TrainingPanel;
}

/** Registers every command. */
export function registerCommands(ctx: CommandContext): vscode.Disposable[] {
  const handlers: Record<CommandId, (...args: unknown[]) => unknown> = {
    'whittle.inspect': (uri) => inspect(uri instanceof vscode.Uri ? uri : undefined),
    'whittle.selectExecutionProvider': () => selectExecutionProvider(),
    'whittle.refreshModels': () => ctx.refreshModels(),
    'whittle.compare': (uri, options) => compare(ctx, uri instanceof vscode.Uri ? uri : undefined, options as CompareOptions | undefined),
    'whittle.compress': async (uri) => {
      const model = await modelToRun('whittle.compress', uri instanceof vscode.Uri ? uri : undefined, 'the model to compress');
      if (model) openCompressWizard(ctx, model.fsPath);
      return model?.fsPath;
    },
    'whittle.analyzeSensitivity': (uri, options) => analyzeSensitivity(ctx, uri instanceof vscode.Uri ? uri : undefined, options as AnalyzeOptions | undefined),
    // The Explorer passes (uri, selectedUris): only a plain options object skips the pickers.
    'whittle.prune': (uri, options) => prune(ctx, uri instanceof vscode.Uri ? uri : undefined, isPruneOptions(options) ? options : undefined),
    'whittle.quantize': (uri, options) => quantize(ctx, uri instanceof vscode.Uri ? uri : undefined, isQuantizeOptions(options) ? options : undefined),
    'whittle.distill': async (uri, options) => {
      const teacher = await modelToRun('whittle.distill', uri instanceof vscode.Uri ? uri : undefined, 'the teacher model');
      return teacher ? distill(ctx, teacher, isDistillOptions(options) ? options : undefined) : undefined;
    },
    'whittle.runRecipe': (uri) => (vscode.workspace.isTrusted ? runRecipeCommand(ctx, uri instanceof vscode.Uri ? uri : undefined) : untrusted('whittle.runRecipe')),
    'whittle.openReport': (uri) => openReportCommand(uri instanceof vscode.Uri ? uri : undefined),
    'whittle.finetune': async (uri, options) => {
      const model = await modelToRun('whittle.finetune', uri instanceof vscode.Uri ? uri : undefined, 'the model to fine-tune');
      return model ? finetune(ctx, model, isFinetuneOptions(options) ? options : undefined) : undefined;
    },
  };
  return Object.entries(handlers).map(([id, fn]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      // A command's failure is a message, never an extension-host crash.
      try {
        return await fn(...args);
      } catch (err) {
        void showError(`Whittle: ${err instanceof Error ? err.message : String(err)}`, err);
        return undefined;
      }
    }),
  );
}

/** Says that a command runs models, which needs a trusted workspace; returns the message. */
function untrusted(id: CommandId): string {
  const message = vscode.l10n.t('Whittle: {0} runs models, which needs a trusted workspace. Inspecting works in restricted mode.', vscode.l10n.t(commandTitles[id]));
  void vscode.window.showWarningMessage(message);
  return message;
}

/** The model a model-running command works on (given, active, or picked), or undefined when untrusted or dismissed. */
async function modelToRun(id: CommandId, uri: vscode.Uri | undefined, what: string): Promise<vscode.Uri | undefined> {
  if (!vscode.workspace.isTrusted) {
    untrusted(id);
    return undefined;
  }
  return uri ?? activeModelUri() ?? (await pickModel(what));
}

/** Opens a model in the Model Inspector: the given one, the active editor's, or one the user picks. */
async function inspect(uri: vscode.Uri | undefined): Promise<void> {
  const target = uri ?? activeModelUri() ?? (await pickModel());
  if (!target) return;
  // ONNX files and TF.js model.json files both open in the Model Inspector (the worker reads either by content).
  await vscode.commands.executeCommand('vscode.openWith', target, inspectorViewType);
}

function activeModelUri(): vscode.Uri | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  const uri = input instanceof vscode.TabInputCustom || input instanceof vscode.TabInputText ? input.uri : undefined;
  return uri && (/\.onnx$/i.test(uri.fsPath) || isTfjsFile(uri)) ? uri : undefined;
}

/**
 * Analyze Layer Sensitivity: focuses the Layer Sensitivity view on the model (the given one, the active
 * inspector's, or a picked one), where the user picks data and runs. With `options.data` (tests, other
 * extensions) it runs at once and returns the result (undefined when cancelled).
 */
async function analyzeSensitivity(ctx: CommandContext, uri: vscode.Uri | undefined, options?: AnalyzeOptions): Promise<AnalyzeResult | undefined> {
  const model = await modelToRun('whittle.analyzeSensitivity', uri, vscode.l10n.t('the model to analyze'));
  if (!model) return undefined;
  await ctx.sensitivity.reveal(model.fsPath);
  if (!options?.data) return undefined;
  try {
    return await ctx.sensitivity.run(model.fsPath, options);
  } catch (err) {
    if (err instanceof CancelledError) return undefined;
    throw err;
  }
}

/** Arguments a caller (a test, another extension) can pass to skip the pickers. */
export interface CompareOptions {
  reference?: string;
  data?: string;
  limit?: number;
}

/**
 * Compare Models: runs a model and a reference on the same data in a worker (with progress and Cancel) and
 * shows accuracy, top-1 agreement, KL, cosine, SQNR and latency. Returns the result, or undefined.
 */
async function compare(ctx: CommandContext, uri: vscode.Uri | undefined, options: CompareOptions = {}): Promise<EvalResult | undefined> {
  const model = await modelToRun('whittle.compare', uri, vscode.l10n.t('the model to evaluate'));
  if (!model) return undefined;
  const reference = options.reference ?? (await pickModel(vscode.l10n.t('the reference to compare {0} against', path.basename(model.fsPath)), model))?.fsPath;
  if (!reference) return undefined;
  const data = options.data ?? (await pickData());
  if (!data) return undefined;
  const config = vscode.workspace.getConfiguration('whittle');
  const limit = options.limit ?? config.get<number>('calibration.maxSamples', 256);
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Whittle: comparing {0} with {1}', path.basename(model.fsPath), path.basename(reference)), cancellable: true },
      (progress, token) => {
        let last = 0;
        return ctx.engine.job('evaluate', { model: model.fsPath, reference, data, limit, ep: config.get<EpName>('executionProvider', 'auto') }, token, (fraction, message) => {
          const now = fraction === undefined ? last : Math.round(fraction * 100);
          progress.report({ message, increment: now - last });
          last = now;
        });
      },
    );
    ctx.status.show(result.ep, result.epNotes);
    // The same report page a compression run writes, for the two models (the figures of the run above included).
    await compareModelsReport(ctx, model.fsPath, reference, { data, limit, ep: config.get<EpName>('executionProvider', 'auto') });
    return result;
  } catch (err) {
    if (err instanceof CancelledError) {
      void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: comparison cancelled.'));
      return undefined;
    }
    throw err;
  }
}

/**
 * Prune…: asks for sparsity, scope, pattern and data (or takes `options`), runs `prune` in a worker of its own
 * with progress and Cancel, opens the pruned model in the Model Inspector and returns the result (undefined
 * when dismissed or cancelled). The output goes to a run folder beside the source, which is only read.
 */
async function prune(ctx: CommandContext, uri: vscode.Uri | undefined, options?: PruneOptions): Promise<PruneResult | TfjsPruneResult | undefined> {
  const model = await modelToRun('whittle.prune', uri, vscode.l10n.t('the model to prune'));
  if (!model) return undefined;
  const tfjs = isTfjsFile(model);
  const choice: PruneOptions | undefined = options ?? (await pickPruneChoice(path.basename(model.fsPath)));
  if (!choice) return undefined;
  if (tfjs && (choice.structured || (choice.pattern && choice.pattern !== 'none') || (choice.method && choice.method !== 'magnitude') || choice.scope === 'sensitivity')) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: TensorFlow.js models can be pruned by magnitude, per layer or global, in version {0}; {1} is ONNX-only for now.', version, pruneWhat(choice)));
    return undefined;
  }
  const data = choice.data ?? (await pickData(vscode.l10n.t('pruning')));
  if (!data) return undefined;
  const config = vscode.workspace.getConfiguration('whittle');
  const limit = choice.limit ?? config.get<number>('calibration.maxSamples', 256);
  // N:M fixes the sparsity at 1 - N/M, so the pass takes the pattern alone.
  const shape = pruneShape(choice);
  const what = pruneWhat(choice);
  try {
    const title = vscode.l10n.t('Whittle: pruning {0} to {1}', path.basename(model.fsPath), what);
    const result: PruneResult | TfjsPruneResult = tfjs
      ? await runWritingJob(ctx, 'pruneTfjs', { model: model.fsPath, sparsity: choice.sparsity, scope: choice.scope === 'global' ? 'global' : 'layer', data, limit }, title)
      : await runWritingJob(ctx, 'prune', { model: model.fsPath, ...shape, data, limit, ep: config.get<EpName>('executionProvider', 'auto') }, title);
    const agreement = result.metrics.top1Agreement !== undefined ? vscode.l10n.t(', top-1 agreement {0}%', (result.metrics.top1Agreement * 100).toFixed(1)) : '';
    const done = 'structured' in result && result.structured ? vscode.l10n.t('removed {0}% of the pruned layers\' weights ({1} → {2} parameters)', (result.sparsity * 100).toFixed(1), result.params.before, result.params.after) : vscode.l10n.t('pruned to {0}% sparsity', (result.sparsity * 100).toFixed(1));
    void vscode.window.showInformationMessage(
      vscode.l10n.t('Whittle: {0}{1}. Saved to {2}', done, agreement, result.output) + (result.warnings.length ? vscode.l10n.t(' ({0} warning(s) in report.md)', result.warnings.length) : ''),
    );
    return result;
  } catch (err) {
    if (err instanceof CancelledError) {
      void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: pruning cancelled; no output was left behind.'));
      return undefined;
    }
    throw err;
  }
}

function isPruneOptions(v: unknown): v is PruneOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as PruneOptions).sparsity === 'number';
}

/** The Prune… quick picks: pattern (none, N:M or structured channels), sparsity (a preset or custom), scope and method. */
async function pickPruneChoice(name: string): Promise<PruneOptions | undefined> {
  const title = vscode.l10n.t('Whittle: prune {0}', name);
  const pattern = await vscode.window.showQuickPick(
    [
      { label: vscode.l10n.t('None'), detail: vscode.l10n.t('unstructured: zero the smallest weights anywhere'), value: 'none' as const },
      { label: '2:4', detail: vscode.l10n.t('keep the 2 largest of every 4 weights along the input (50%; hardware-accelerated on some GPUs)'), value: '2:4' as const },
      { label: '4:8', detail: vscode.l10n.t('keep the 4 largest of every 8 weights along the input (50%)'), value: '4:8' as const },
      { label: vscode.l10n.t('Structured: remove whole channels'), detail: vscode.l10n.t('drop the least important channels with everything that depends on them: a smaller, faster model, at more risk to accuracy'), value: 'channels' as const },
    ],
    { title: vscode.l10n.t('{0}: pattern', title), placeHolder: vscode.l10n.t('N:M semi-structured pattern, whole channels, or none') },
  );
  if (!pattern) return undefined;
  if (pattern.value === '2:4' || pattern.value === '4:8') {
    const method = await pickPruneMethod(title);
    return method ? { sparsity: 0.5, scope: 'layer', pattern: pattern.value, method } : undefined;
  }
  const structured = pattern.value === 'channels';
  const preset = await vscode.window.showQuickPick(
    [
      ...(structured ? [30, 50, 70] : [30, 50, 70, 90]).map((p) => ({ label: `${p}%`, detail: structured ? vscode.l10n.t('remove {0}% of the channels in each channel group', p) : vscode.l10n.t('zero {0}% of the weights', p), value: p / 100 })),
      { label: vscode.l10n.t('Custom…'), detail: vscode.l10n.t('any fraction between 0 and 100%'), value: NaN },
    ],
    { title: structured ? vscode.l10n.t('{0}: sparsity (fraction of channels)', title) : vscode.l10n.t('{0}: sparsity', title), placeHolder: structured ? vscode.l10n.t('share of channels to remove') : vscode.l10n.t('share of weights to zero') },
  );
  if (!preset) return undefined;
  let sparsity = preset.value;
  if (Number.isNaN(sparsity)) {
    const typed = await vscode.window.showInputBox({
      title: vscode.l10n.t('{0}: sparsity', title),
      prompt: structured ? vscode.l10n.t('Percent of channels to remove (0–100)') : vscode.l10n.t('Percent of weights to zero (0–100)'),
      value: structured ? '30' : '60',
      validateInput: (v) => (/^\s*\d+(\.\d+)?\s*%?\s*$/.test(v) && Number.parseFloat(v) >= 0 && Number.parseFloat(v) <= 100 ? undefined : vscode.l10n.t('a number from 0 to 100')),
    });
    if (typed === undefined) return undefined;
    sparsity = Number.parseFloat(typed) / 100;
  }
  if (structured) return { sparsity, structured: true };
  const scope = await vscode.window.showQuickPick(
    [
      { label: vscode.l10n.t('Per layer'), detail: vscode.l10n.t('the same sparsity in every layer'), value: 'layer' as const },
      { label: vscode.l10n.t('Global'), detail: vscode.l10n.t('one magnitude threshold across all layers: small layers may keep more'), value: 'global' as const },
      { label: vscode.l10n.t('Sensitivity-guided'), detail: vscode.l10n.t('per-layer sparsities from the layer sensitivity curves on the data: the least metric cost for the same overall sparsity'), value: 'sensitivity' as const },
    ],
    { title: vscode.l10n.t('{0}: scope', title), placeHolder: vscode.l10n.t('how the sparsity is spread over layers') },
  );
  if (!scope) return undefined;
  const method = await pickPruneMethod(title);
  if (!method) return undefined;
  return { sparsity, scope: scope.value, pattern: 'none', method };
}

/** The pruning method pick: how weights are scored. */
async function pickPruneMethod(title: string): Promise<PruneOptions['method'] | undefined> {
  const method = await vscode.window.showQuickPick(
    [
      { label: vscode.l10n.t('Magnitude'), detail: vscode.l10n.t('drop the smallest |w|: no data needed'), value: 'magnitude' as const },
      { label: 'Wanda', detail: vscode.l10n.t('|w| × input norm from calibration activations: better at high sparsity, one pass'), value: 'wanda' as const },
      { label: 'SparseGPT', detail: vscode.l10n.t('prune, then update the remaining weights to reconstruct each layer\'s output on calibration data'), value: 'sparsegpt' as const },
    ],
    { title: vscode.l10n.t('{0}: method', title), placeHolder: vscode.l10n.t('how weights are scored') },
  );
  return method?.value;
}

/**
 * Runs a pass that writes a model (prune, quantize) in a worker of its own under a cancellable progress
 * notification, then shows the provider used, refreshes the Models tree and opens the written model in the
 * Model Inspector.
 */
async function runWritingJob<K extends 'prune' | 'quantize' | 'pruneTfjs' | 'quantizeTfjs'>(ctx: CommandContext, method: K, params: WorkerRequests[K]['params'], title: string): Promise<WorkerRequests[K]['result']> {
  const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, (progress, token) => {
    let last = 0;
    return ctx.engine.job(method, params, token, (fraction, message) => {
      const now = fraction === undefined ? last : Math.round(fraction * 100);
      progress.report({ message, increment: now - last });
      last = now;
    });
  });
  ctx.status.show(result.ep);
  ctx.refreshModels();
  await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(result.output), inspectorViewType);
  return result;
}

/** Arguments a caller (a test, another extension) can pass to skip the pickers; `mode` alone is enough. */
export interface QuickQuantizeOptions {
  mode: 'static' | 'weight-only' | 'dynamic' | 'fp16';
  bits?: 8 | 4;
  calibration?: 'minmax' | 'percentile' | 'entropy' | 'mse';
  maxDrop?: number;
  data?: string;
  limit?: number;
}

function isQuantizeOptions(v: unknown): v is QuickQuantizeOptions {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as QuickQuantizeOptions).mode === 'string';
}

/**
 * Quantize…: asks for the mode (and calibration method) and the data (or takes `options`), runs `quantize` in a
 * worker of its own with progress and Cancel, opens the quantized model in the Model Inspector, and says so
 * loudly when the preflight found it no faster than the original. Returns the result (undefined when
 * dismissed or cancelled). The source is only read.
 */
async function quantize(ctx: CommandContext, uri: vscode.Uri | undefined, options?: QuickQuantizeOptions): Promise<QuantizeResult | TfjsQuantizeResult | undefined> {
  const model = await modelToRun('whittle.quantize', uri, vscode.l10n.t('the model to quantize'));
  if (!model) return undefined;
  if (isTfjsFile(model)) return quantizeTfjs(ctx, model, options);
  const choice = options ?? (await pickQuantizeChoice(path.basename(model.fsPath)));
  if (!choice) return undefined;
  const data = choice.data ?? (await pickData(choice.mode === 'static' ? vscode.l10n.t('calibration and evaluation') : vscode.l10n.t('evaluation')));
  if (!data) return undefined;
  const config = vscode.workspace.getConfiguration('whittle');
  const limit = choice.limit ?? config.get<number>('calibration.maxSamples', 256);
  const what = `${choice.mode}${choice.bits === 4 ? ' int4' : ''}`;
  try {
    const result = await runWritingJob(
      ctx,
      'quantize',
      { model: model.fsPath, mode: choice.mode, bits: choice.bits ?? 8, calibration: choice.calibration, maxDrop: choice.maxDrop, data, limit, ep: config.get<EpName>('executionProvider', 'auto') },
      vscode.l10n.t('Whittle: quantizing {0} ({1})', path.basename(model.fsPath), what),
    );
    const m = result.metrics;
    const quality = m.accuracy ? vscode.l10n.t('accuracy {0}% ({1} pt)', (m.accuracy.after * 100).toFixed(2), `${m.accuracy.dropPt >= 0 ? '-' : '+'}${Math.abs(m.accuracy.dropPt).toFixed(2)}`) : m.top1Agreement !== undefined ? vscode.l10n.t('top-1 agreement {0}%', (m.top1Agreement * 100).toFixed(1)) : vscode.l10n.t('cosine {0}', String(m.cosine));
    const size = vscode.l10n.t('{0}x the size', (result.sizeBytes.after / result.sizeBytes.before).toFixed(2));
    const summary = vscode.l10n.t('Whittle: quantized ({0}): {1}, {2}, {3}x the latency. Saved to {4}', what, size, quality, result.preflight.ratio.toFixed(2), result.output);
    if (result.preflight.advice) void vscode.window.showWarningMessage(`${summary}. ${result.preflight.advice}`);
    else void vscode.window.showInformationMessage(summary);
    return result;
  } catch (err) {
    if (err instanceof CancelledError) {
      void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: quantization cancelled; no output was left behind.'));
      return undefined;
    }
    throw err;
  }
}

/**
 * Quantize… on a TF.js model: the stored forms TF.js loaders understand (uint8 or uint16 affine, float16, or a
 * per-layer uint8/float16 mix chosen on the data), written as model.json + shards beside the source.
 */
async function quantizeTfjs(ctx: CommandContext, model: vscode.Uri, options?: QuickQuantizeOptions): Promise<TfjsQuantizeResult | undefined> {
  const fromOptions = options ? ({ 'weight-only': options.bits === 4 ? undefined : 'uint8', fp16: 'float16' } as Record<string, 'uint8' | 'float16' | undefined>)[options.mode] : undefined;
  if (options && !fromOptions) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: TensorFlow.js models take weight-only uint8/uint16, float16 or a mix in version {0}; --mode {1} is ONNX-only.', version, options.mode));
    return undefined;
  }
  const dtype =
    fromOptions ??
    (
      await vscode.window.showQuickPick(
        [
          { label: vscode.l10n.t('uint8 (affine, per tensor)'), detail: vscode.l10n.t('TF.js\'s own 8-bit form: 4x smaller shards'), value: 'uint8' as const },
          { label: vscode.l10n.t('uint16 (affine, per tensor)'), detail: vscode.l10n.t('2x smaller, nearly lossless'), value: 'uint16' as const },
          { label: 'float16', detail: vscode.l10n.t('2x smaller'), value: 'float16' as const },
          { label: vscode.l10n.t('Mix: uint8, sensitive layers float16'), detail: vscode.l10n.t('chosen by measuring each layer\'s uint8 cost on the data'), value: 'mix' as const },
        ],
        { title: vscode.l10n.t('Whittle: quantize {0}', `${path.basename(path.dirname(model.fsPath))}/${path.basename(model.fsPath)}`), placeHolder: vscode.l10n.t('how the weights are stored') },
      )
    )?.value;
  if (!dtype) return undefined;
  const data = options?.data ?? (await pickData(vscode.l10n.t('evaluation')));
  if (!data) return undefined;
  const limit = options?.limit ?? vscode.workspace.getConfiguration('whittle').get<number>('calibration.maxSamples', 256);
  try {
    const result = await runWritingJob(ctx, 'quantizeTfjs', { model: model.fsPath, dtype, data, limit, ...(options?.maxDrop !== undefined ? { maxDrop: options.maxDrop } : {}) }, vscode.l10n.t('Whittle: quantizing {0} ({1})', path.basename(model.fsPath), dtype));
    const m = result.metrics;
    const quality = m.accuracy ? vscode.l10n.t('accuracy {0}%', (m.accuracy.after * 100).toFixed(2)) : m.top1Agreement !== undefined ? vscode.l10n.t('top-1 agreement {0}%', (m.top1Agreement * 100).toFixed(1)) : vscode.l10n.t('cosine {0}', String(m.cosine));
    void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: quantized ({0}): {1}x the size, {2}. Saved to {3}', dtype, (result.sizeBytes.after / result.sizeBytes.before).toFixed(2), quality, result.output));
    return result;
  } catch (err) {
    if (err instanceof CancelledError) {
      void vscode.window.showInformationMessage(vscode.l10n.t('Whittle: quantization cancelled; no output was left behind.'));
      return undefined;
    }
    throw err;
  }
}

/** True for a TF.js model.json (by name, then by the keys TF.js writes), the way the Models tree finds them. */
function isTfjsFile(uri: vscode.Uri): boolean {
  if (!/\.json$/i.test(uri.fsPath)) return false;
  try {
    const head = fs.readFileSync(uri.fsPath, { encoding: 'utf8', flag: 'r' }).slice(0, 65536);
    return /"(modelTopology|weightsManifest)"/.test(head);
  } catch {
    return false;
  }
}

/** The Quantize… quick picks: mode, then the calibration method for static quantization. */
async function pickQuantizeChoice(name: string): Promise<QuickQuantizeOptions | undefined> {
  const title = vscode.l10n.t('Whittle: quantize {0}', name);
  const mode = await vscode.window.showQuickPick(
    [
      { label: vscode.l10n.t('Static int8 (QDQ)'), detail: vscode.l10n.t('int8 weights and activations, calibrated on data: smallest and, on most CPUs, fastest'), value: { mode: 'static' as const } },
      { label: vscode.l10n.t('Weight-only int8'), detail: vscode.l10n.t('int8 weights, float activations: about 4x smaller, accuracy nearly unchanged'), value: { mode: 'weight-only' as const, bits: 8 as const } },
      { label: vscode.l10n.t('Weight-only int4'), detail: vscode.l10n.t('int4 weights in blocks of 32 (MatMulNBits): about 7x smaller for MatMul-heavy models'), value: { mode: 'weight-only' as const, bits: 4 as const } },
      { label: vscode.l10n.t('Dynamic int8'), detail: vscode.l10n.t('int8 MatMul with activation scales computed at run time: for transformers and MLPs'), value: { mode: 'dynamic' as const } },
      { label: 'fp16', detail: vscode.l10n.t('half-precision weights: half the size; faster on GPUs, not on the CPU'), value: { mode: 'fp16' as const } },
    ],
    { title: vscode.l10n.t('{0}: mode', title), placeHolder: vscode.l10n.t('how to quantize') },
  );
  if (!mode) return undefined;
  if (mode.value.mode !== 'static') return mode.value;
  const calibration = await vscode.window.showQuickPick(
    [
      { label: 'MinMax', detail: vscode.l10n.t('the full observed range'), value: 'minmax' as const },
      { label: vscode.l10n.t('Percentile'), detail: vscode.l10n.t('clip the rare extremes (99.999th percentile of |x|)'), value: 'percentile' as const },
      { label: vscode.l10n.t('Entropy (KL)'), detail: vscode.l10n.t('the range whose int8 histogram is closest to the float one'), value: 'entropy' as const },
      { label: 'MSE', detail: vscode.l10n.t('the clipping range with the least expected quantization error'), value: 'mse' as const },
    ],
    { title: vscode.l10n.t('{0}: calibration', title), placeHolder: vscode.l10n.t('how activation ranges are chosen') },
  );
  if (!calibration) return undefined;
  return { mode: 'static', calibration: calibration.value };
}

/** The comparison as Markdown. */
export function compareReport(model: string, reference: string, r: EvalResult): string {
  const fmt = (v: unknown, pct = false) => (typeof v === 'number' ? (pct ? `${(v * 100).toFixed(2)}%` : Number(v.toPrecision(6)).toString()) : String(v ?? '–'));
  const rows: Array<[string, string]> = [
    [vscode.l10n.t('Samples'), `${r.samples} (${r.data})`],
    ...(r.accuracy !== undefined ? [[vscode.l10n.t('Accuracy'), fmt(r.accuracy, true)] as [string, string]] : []),
    ...(r.top1Agreement !== undefined ? [[vscode.l10n.t('Top-1 agreement'), fmt(r.top1Agreement, true)] as [string, string]] : []),
    ...(r.kl !== undefined ? [[vscode.l10n.t('KL divergence'), fmt(r.kl)] as [string, string]] : []),
    [vscode.l10n.t('Cosine (first output)'), fmt(r.cosine)],
    [vscode.l10n.t('SQNR (first output)'), `${fmt(r.sqnrDb)} dB`],
    [vscode.l10n.t('Latency, median / p90 (batch 1)'), `${r.latencyMs.median} / ${r.latencyMs.p90} ms`],
    [vscode.l10n.t('Execution provider'), r.ep],
  ];
  return [
    vscode.l10n.t('# Whittle: {0} compared with {1}', path.basename(model), path.basename(reference)),
    '',
    vscode.l10n.t('Model: {0}', `\`${model}\``) + '  ',
    vscode.l10n.t('Reference: {0}', `\`${reference}\``),
    '',
    `| ${vscode.l10n.t('Figure')} | ${vscode.l10n.t('Value')} |`,
    '|---|---|',
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    ...(r.outputs ? [`| ${vscode.l10n.t('Output')} | ${vscode.l10n.t('Cosine')} | SQNR (dB) | ${vscode.l10n.t('Max abs error')} |`, '|---|---|---|---|', ...Object.entries(r.outputs).map(([n, o]) => `| ${n} | ${fmt(o.cosine)} | ${fmt(o.sqnrDb)} | ${fmt(o.maxAbs)} |`), ''] : []),
    ...r.warnings.map((w) => `> ⚠ ${w}`),
    '',
  ].join('\n');
}

/** Asks for evaluation data: a file or folder, or synthetic random inputs. */
async function pickData(purpose = vscode.l10n.t('the comparison')): Promise<string | undefined> {
  const pick = await vscode.window.showQuickPick(
    [
      { label: `$(folder-opened) ${vscode.l10n.t('Choose a file or folder…')}`, detail: vscode.l10n.t('a *.dataset.json manifest, an image folder, an idx file, .npy/.npz, or a folder of input_N.pb'), value: 'browse' },
      { label: `$(symbol-misc) ${vscode.l10n.t('Random inputs')}`, detail: vscode.l10n.t('synthetic data: measures agreement between the models, not accuracy; not representative'), value: 'random' },
    ],
    { title: vscode.l10n.t('Whittle: data for {0}', purpose) },
  );
  if (!pick) return undefined;
  if (pick.value === 'random') return 'random';
  const picked = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, title: vscode.l10n.t('Data for {0}', purpose) });
  return picked?.[0]?.fsPath;
}

async function pickModel(what = vscode.l10n.t('a model'), exclude?: vscode.Uri): Promise<vscode.Uri | undefined> {
  const models = (await findModels()).filter((m) => m.kind === 'onnx' && m.uri.fsPath !== exclude?.fsPath);
  const browse = { label: `$(folder-opened) ${vscode.l10n.t('Browse…')}`, uri: undefined as vscode.Uri | undefined };
  const pick = await vscode.window.showQuickPick(
    [...models.map((m) => ({ label: path.basename(m.uri.fsPath), description: vscode.workspace.asRelativePath(m.uri), uri: m.uri as vscode.Uri | undefined })), browse],
    { title: vscode.l10n.t('Whittle: pick {0}', what), placeHolder: models.length ? vscode.l10n.t('a model in this workspace') : vscode.l10n.t('no models found in this workspace') },
  );
  if (!pick) return undefined;
  if (pick.uri) return pick.uri;
  const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { [vscode.l10n.t('Models')]: ['onnx', 'json'] } });
  return picked?.[0];
}
