import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { writeFileAtomic } from '../core/atomicWrite';
import { buildSampleModel } from '../core/samples/sampleModel';
import { inspectorViewType } from './inspectorEditor';
import { log, showError } from './log';

/** The getting-started walkthrough's id (package.json `walkthroughs`), as `<publisher>.<name>#<id>`. */
export const walkthroughId = 'whittle.whittle#gettingStarted';

/** The sample model's file name in the workspace (the same as `npm start`'s sample workspace). */
export const sampleFileName = 'lenet-sample.onnx';

/**
 * Whittle: Create Sample Model: writes the bundled LeNet-style sample (`whittle sample`) into the first
 * workspace folder unless a file of that name is already there, then opens it in the Model Inspector.
 * Returns the model's uri, or undefined when no folder is open.
 */
export async function createSampleModel(): Promise<vscode.Uri | undefined> {
  const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
  if (!folder) {
    const open = vscode.l10n.t('Open Folder…');
    const picked = await vscode.window.showInformationMessage(vscode.l10n.t('Whittle: open a folder first; the sample model is written into it.'), open);
    if (picked === open) await vscode.commands.executeCommand('workbench.action.files.openFolder');
    return undefined;
  }
  const file = path.join(folder.uri.fsPath, sampleFileName);
  if (fs.existsSync(file)) log().info(`sample model: ${file} already exists; opening it`);
  else {
    writeFileAtomic(file, buildSampleModel());
    log().info(`sample model written to ${file}`);
  }
  const uri = vscode.Uri.file(file);
  await vscode.commands.executeCommand('vscode.openWith', uri, inspectorViewType);
  return uri;
}

/** Registers Create Sample Model, Show Log and Open Walkthrough. */
export function registerWalkthroughCommands(): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand('whittle.createSampleModel', async () => {
      try {
        return await createSampleModel();
      } catch (err) {
        void showError(vscode.l10n.t('Whittle: could not create the sample model: {0}', err instanceof Error ? err.message : String(err)), err);
        return undefined;
      }
    }),
    vscode.commands.registerCommand('whittle.showLog', () => log().show()),
    vscode.commands.registerCommand('whittle.openWalkthrough', () => vscode.commands.executeCommand('workbench.action.openWalkthrough', walkthroughId, false)),
  ];
}
