import * as vscode from 'vscode';
import type { EpName } from '../core/runtime/ep';
import { Disposable } from './dispose';
import type { Engine } from './engine';

/** The execution providers a user can choose (DESIGN.md section 4). */
const providers = (): Array<{ id: string; detail: string }> => [
  { id: 'auto', detail: vscode.l10n.t('CUDA if its libraries are present, then DirectML/CoreML by platform, then CPU (WebGPU only by name)') },
  { id: 'cpu', detail: vscode.l10n.t('onnxruntime CPU: always available, the reference every other EP is checked against') },
  { id: 'cuda', detail: vscode.l10n.t('NVIDIA GPUs; needs the CUDA provider libraries') },
  { id: 'webgpu', detail: vscode.l10n.t('any GPU through WebGPU (Vulkan, Metal, D3D12)') },
  { id: 'dml', detail: vscode.l10n.t('DirectML on Windows') },
  { id: 'coreml', detail: vscode.l10n.t('CoreML on macOS') },
];

/** The `whittle.executionProvider` setting. */
export function configuredProvider(): string {
  return vscode.workspace.getConfiguration('whittle').get<string>('executionProvider', 'auto');
}

/**
 * The status-bar item that shows the execution provider in use and opens Select Execution Provider. In a
 * trusted workspace it resolves the setting the way every run does (self-check against CPU on the sample
 * model, in a worker), and every run that reports its provider updates it.
 */
export class ExecutionProviderStatus extends Disposable {
  private readonly item = this._register(vscode.window.createStatusBarItem('whittle.ep', vscode.StatusBarAlignment.Right, 100));
  private generation = 0;

  constructor(private readonly engine: Engine) {
    super();
    this.item.name = vscode.l10n.t('Whittle Execution Provider');
    this.item.command = 'whittle.selectExecutionProvider';
    this._register(vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('whittle.executionProvider') && this.probe()));
    this._register(vscode.workspace.onDidGrantWorkspaceTrust(() => this.probe()));
    this.probe();
    this.item.show();
  }

  /** Shows what a run used. */
  show(inUse: string, notes: string[] = []): void {
    const setting = configuredProvider();
    this.item.text = `$(chip) Whittle: ${inUse}`;
    this.item.tooltip = [vscode.l10n.t('Execution provider in use: {0} (setting: {1}).', inUse, setting), ...notes, vscode.l10n.t('Click to change it.')].join('\n');
  }

  private probe(): void {
    const setting = configuredProvider();
    const generation = ++this.generation;
    if (!vscode.workspace.isTrusted) {
      this.item.text = `$(chip) Whittle: ${setting}`;
      this.item.tooltip = vscode.l10n.t('Execution provider setting: {0}. Not checked: running models needs a trusted workspace.', setting);
      return;
    }
    this.item.text = `$(sync~spin) Whittle: ${setting}`;
    this.item.tooltip = vscode.l10n.t('Checking the {0} execution provider against CPU…', setting);
    this.engine.job('probeEp', { ep: setting as EpName }).then(
      (probe) => {
        if (generation !== this.generation) return;
        this.show(probe.inUse, probe.warnings);
        if (setting !== 'auto' && probe.inUse !== setting) void vscode.window.showWarningMessage(`Whittle: ${probe.warnings.join(' ') || vscode.l10n.t('{0} is not available', setting)}`);
      },
      (err) => {
        if (generation !== this.generation) return;
        this.item.text = `$(warning) Whittle: ${setting}`;
        this.item.tooltip = vscode.l10n.t('Checking the execution provider failed: {0}', err instanceof Error ? err.message : String(err));
      },
    );
  }
}

/** Asks for an execution provider and stores it in the settings (workspace when a folder is open). */
export async function selectExecutionProvider(): Promise<void> {
  const current = configuredProvider();
  const pick = await vscode.window.showQuickPick(
    providers().map((p) => ({ label: p.id, detail: p.detail, description: p.id === current ? vscode.l10n.t('current') : undefined })),
    { title: vscode.l10n.t('Whittle: Select Execution Provider'), placeHolder: vscode.l10n.t('current: {0}', current) },
  );
  if (!pick) return;
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration('whittle').update('executionProvider', pick.label, target);
  void vscode.window.showInformationMessage(vscode.l10n.t('Whittle will use the {0} execution provider.', pick.label));
}
