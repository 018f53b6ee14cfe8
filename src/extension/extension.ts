import * as vscode from 'vscode';
import type { ModelSummary } from '../core/inspect';
import { registerCommands } from './commands';
import { Engine } from './engine';
import { ExecutionProviderStatus } from './executionProvider';
import { InspectorEditorProvider, inspectorViewType } from './inspectorEditor';
import { ModelsView, modelsViewId } from './modelsView';
import { SensitivityView, sensitivityViewId } from './sensitivityView';
import { RecipeLensProvider, recipeSelector } from './recipeLens';
import { disposeLog, log } from './log';
import { registerWalkthroughCommands } from './walkthrough';
import { TrainingPanel } from './trainingView';

/** What the extension exports: used by the integration tests and by other extensions. */
export interface WhittleApi {
  /** Summarises a model in the worker, as the inspector does. */
  inspect(file: string): Promise<ModelSummary>;
}

/** Activates Whittle: engine worker, inspector, side-bar views, status bar and commands. */
export function activate(context: vscode.ExtensionContext): WhittleApi {
  context.subscriptions.push(disposeLog);
  log().info(`Whittle ${context.extension.packageJSON.version as string} activated (VS Code ${vscode.version}, ${vscode.env.language})`);
  const engine = new Engine(context.extensionUri);
  const sensitivity = new SensitivityView(context.extensionUri, engine);
  const models = new ModelsView();
  const status = new ExecutionProviderStatus(engine);
  const recipeLens = new RecipeLensProvider();
  const training = new TrainingPanel(context.extensionUri);
  context.subscriptions.push(
    engine,
    sensitivity,
    training,
    models,
    vscode.window.registerCustomEditorProvider(inspectorViewType, new InspectorEditorProvider(context.extensionUri, engine, sensitivity), {
      supportsMultipleEditorsPerDocument: true,
    }),
    vscode.window.registerWebviewViewProvider(sensitivityViewId, sensitivity),
    vscode.window.createTreeView(modelsViewId, { treeDataProvider: models, showCollapseAll: false }),
    status,
    ...registerCommands({ refreshModels: () => models.refresh(), engine, status, sensitivity, extensionUri: context.extensionUri, training }),
    recipeLens,
    vscode.languages.registerCodeLensProvider(recipeSelector, recipeLens),
    ...registerWalkthroughCommands(),
  );
  return { inspect: (file) => engine.inspect(file) };
}

/** Nothing to do: every resource is in context.subscriptions. */
export function deactivate(): void {}
