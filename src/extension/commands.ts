import * as path from 'node:path';
import * as vscode from 'vscode';
import { version } from '../core/version';
import { selectExecutionProvider } from './executionProvider';
import { inspectorViewType } from './inspectorEditor';
import { findModels } from './modelsView';

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
} as const;

/** A command id. */
export type CommandId = keyof typeof commandTitles;

/** Commands that run models, and so need a trusted workspace. */
const needTrust = new Set<CommandId>(['whittle.compress', 'whittle.analyzeSensitivity', 'whittle.prune', 'whittle.quantize', 'whittle.distill', 'whittle.runRecipe', 'whittle.compare']);

/** Commands whose feature has not landed; they say so instead of pretending. */
const planned = new Set<CommandId>(['whittle.compress', 'whittle.analyzeSensitivity', 'whittle.prune', 'whittle.quantize', 'whittle.distill', 'whittle.runRecipe', 'whittle.compare', 'whittle.openReport']);

/** The message a planned command shows. */
export function notYetMessage(id: CommandId): string {
  return `Whittle: ${commandTitles[id]} is not available yet in version ${version}. Whittle: Inspect Model works today.`;
}

/** Registers every command; `refreshModels` refreshes the Models tree. */
export function registerCommands(refreshModels: () => void): vscode.Disposable[] {
  const handlers: Record<CommandId, (...args: unknown[]) => unknown> = {
    'whittle.inspect': (uri) => inspect(uri instanceof vscode.Uri ? uri : undefined),
    'whittle.selectExecutionProvider': () => selectExecutionProvider(),
    'whittle.refreshModels': () => refreshModels(),
    'whittle.compress': () => notYet('whittle.compress'),
    'whittle.analyzeSensitivity': () => notYet('whittle.analyzeSensitivity'),
    'whittle.prune': () => notYet('whittle.prune'),
    'whittle.quantize': () => notYet('whittle.quantize'),
    'whittle.distill': () => notYet('whittle.distill'),
    'whittle.runRecipe': () => notYet('whittle.runRecipe'),
    'whittle.compare': () => notYet('whittle.compare'),
    'whittle.openReport': () => notYet('whittle.openReport'),
  };
  return Object.entries(handlers).map(([id, fn]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      // A command's failure is a message, never an extension-host crash.
      try {
        return await fn(...args);
      } catch (err) {
        void vscode.window.showErrorMessage(`Whittle: ${err instanceof Error ? err.message : String(err)}`);
        return undefined;
      }
    }),
  );
}

async function notYet(id: CommandId): Promise<string> {
  if (!planned.has(id)) throw new Error(`${id} is not planned`);
  if (needTrust.has(id) && !vscode.workspace.isTrusted) {
    const message = `Whittle: ${commandTitles[id]} runs models, which needs a trusted workspace. Inspecting works in restricted mode.`;
    void vscode.window.showWarningMessage(message);
    return message;
  }
  const message = notYetMessage(id);
  void vscode.window.showInformationMessage(message);
  return message;
}

/** Opens a model in the Model Inspector: the given one, the active editor's, or one the user picks. */
async function inspect(uri: vscode.Uri | undefined): Promise<void> {
  const target = uri ?? activeModelUri() ?? (await pickModel());
  if (!target) return;
  if (path.basename(target.fsPath) === 'model.json') {
    void vscode.window.showInformationMessage(`Whittle: inspecting TensorFlow.js models is not available yet in version ${version}; ONNX models can be inspected today.`);
    return;
  }
  await vscode.commands.executeCommand('vscode.openWith', target, inspectorViewType);
}

function activeModelUri(): vscode.Uri | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  const uri = input instanceof vscode.TabInputCustom || input instanceof vscode.TabInputText ? input.uri : undefined;
  return uri && /\.onnx$/i.test(uri.fsPath) ? uri : undefined;
}

async function pickModel(): Promise<vscode.Uri | undefined> {
  const models = await findModels();
  const browse = { label: '$(folder-opened) Browse…', uri: undefined as vscode.Uri | undefined };
  const pick = await vscode.window.showQuickPick(
    [...models.map((m) => ({ label: path.basename(m.uri.fsPath), description: vscode.workspace.asRelativePath(m.uri), uri: m.uri as vscode.Uri | undefined })), browse],
    { title: 'Whittle: pick a model', placeHolder: models.length ? 'a model in this workspace' : 'no models found in this workspace' },
  );
  if (!pick) return undefined;
  if (pick.uri) return pick.uri;
  const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { 'Models': ['onnx', 'json'] } });
  return picked?.[0];
}
