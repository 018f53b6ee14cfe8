import * as vscode from 'vscode';
import { Disposable } from './dispose';

/** The execution providers a user can choose (DESIGN.md section 4). */
const providers: Array<{ id: string; detail: string }> = [
  { id: 'auto', detail: 'CUDA if its libraries are present, then WebGPU, then DirectML/CoreML by platform, then CPU' },
  { id: 'cpu', detail: 'onnxruntime CPU: always available, the reference every other EP is checked against' },
  { id: 'cuda', detail: 'NVIDIA GPUs; needs the CUDA provider libraries' },
  { id: 'webgpu', detail: 'any GPU through WebGPU (Vulkan, Metal, D3D12)' },
  { id: 'dml', detail: 'DirectML on Windows' },
  { id: 'coreml', detail: 'CoreML on macOS' },
];

/** The `whittle.executionProvider` setting. */
export function configuredProvider(): string {
  return vscode.workspace.getConfiguration('whittle').get<string>('executionProvider', 'auto');
}

/** The status-bar item that shows the execution provider and opens Select Execution Provider. */
export class ExecutionProviderStatus extends Disposable {
  private readonly item = this._register(vscode.window.createStatusBarItem('whittle.ep', vscode.StatusBarAlignment.Right, 100));

  constructor() {
    super();
    this.item.name = 'Whittle Execution Provider';
    this.item.command = 'whittle.selectExecutionProvider';
    this._register(vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('whittle.executionProvider') && this.update()));
    this.update();
    this.item.show();
  }

  private update(): void {
    const ep = configuredProvider();
    this.item.text = `$(chip) Whittle: ${ep}`;
    this.item.tooltip = `Whittle execution provider setting: ${ep}. Click to change it.`;
  }
}

/** Asks for an execution provider and stores it in the settings (workspace when a folder is open). */
export async function selectExecutionProvider(): Promise<void> {
  const current = configuredProvider();
  const pick = await vscode.window.showQuickPick(
    providers.map((p) => ({ label: p.id, detail: p.detail, description: p.id === current ? 'current' : undefined })),
    { title: 'Whittle: Select Execution Provider', placeHolder: `current: ${current}` },
  );
  if (!pick) return;
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration('whittle').update('executionProvider', pick.label, target);
  void vscode.window.showInformationMessage(`Whittle will use the ${pick.label} execution provider.`);
}
