import * as vscode from 'vscode';

/** Base for objects that own subscriptions: everything `_register`ed is disposed with it. */
export abstract class Disposable implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  private disposed = false;

  /** Takes ownership of a disposable; disposes it at once if this object is already disposed. */
  protected _register<T extends vscode.Disposable>(d: T): T {
    if (this.disposed) d.dispose();
    else this.disposables.push(d);
    return d;
  }

  /** Disposes everything registered, once. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    disposeAll(this.disposables);
  }

  protected get isDisposed(): boolean {
    return this.disposed;
  }
}

/** Disposes a list of disposables and empties it. */
export function disposeAll(list: vscode.Disposable[]): void {
  while (list.length) list.pop()?.dispose();
}
