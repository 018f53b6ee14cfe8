import * as vscode from 'vscode';
import { CancelledError } from '../protocol/rpc';
import { jobHeadline } from './runs';

/**
 * Whittle's Output channel ("Whittle", a LogOutputChannel): engine jobs (start, parameters, end with duration
 * and headline, warnings), and errors with their stack. Every module logs through `log()`; notifications that
 * report errors go through `showError`, which offers "Show Log".
 */
let channel: vscode.LogOutputChannel | undefined;

/** The "Whittle" log channel, created on first use; `activate` registers `disposeLog` to close it. */
export function log(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel('Whittle', { log: true });
  return channel;
}

/** Closes the channel (the extension's deactivation). */
export const disposeLog: vscode.Disposable = { dispose: () => { channel?.dispose(); channel = undefined; } };

/** Reveals the Whittle log without taking the focus from the editor. */
export function showLog(): void {
  log().show(true);
}

/** Logs an error with its stack. */
export function logError(context: string, err: unknown): void {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  log().error(`${context}: ${text}`);
}

/**
 * Shows an error notification with a "Show Log" action (which reveals the channel) and logs it with the
 * error's stack; `message` is what the user reads, already translated.
 */
export async function showError(message: string, err?: unknown): Promise<void> {
  if (err !== undefined) logError(message, err);
  else log().error(message);
  const showLogLabel = vscode.l10n.t('Show Log');
  const picked = await vscode.window.showErrorMessage(message, showLogLabel);
  if (picked === showLogLabel) showLog();
}

/** Shows a warning notification with "Show Log", and logs it. */
export async function showWarning(message: string): Promise<void> {
  log().warn(message);
  const showLogLabel = vscode.l10n.t('Show Log');
  const picked = await vscode.window.showWarningMessage(message, showLogLabel);
  if (picked === showLogLabel) showLog();
}

/** Parameters as one log line: long strings are kept, arrays of numbers are shortened. */
function paramsText(params: unknown): string {
  try {
    return JSON.stringify(params, (_k, v: unknown) => (Array.isArray(v) && v.length > 16 ? [...v.slice(0, 16), `… ${v.length} items`] : v));
  } catch {
    return String(params);
  }
}

let nextJob = 1;

/**
 * Runs one engine job and logs it: its start with the parameters, its end with the duration and the
 * result's headline, each of its warnings, a cancellation, or its error with the stack.
 */
export async function loggedJob<T>(method: string, params: unknown, run: () => Promise<T>): Promise<T> {
  const id = nextJob++;
  const t0 = Date.now();
  const out = log();
  out.info(`job #${id} ${method} started ${paramsText(params)}`);
  try {
    const result = await run();
    const seconds = ((Date.now() - t0) / 1000).toFixed(2);
    out.info(`job #${id} ${method} finished in ${seconds} s: ${jobHeadline(result)}`);
    const warnings = (result as { warnings?: unknown } | undefined)?.warnings;
    if (Array.isArray(warnings)) for (const w of warnings) out.warn(`job #${id} ${method}: ${String(w)}`);
    return result;
  } catch (err) {
    const seconds = ((Date.now() - t0) / 1000).toFixed(2);
    if (err instanceof CancelledError) out.info(`job #${id} ${method} cancelled after ${seconds} s`);
    else logError(`job #${id} ${method} failed after ${seconds} s`, err);
    throw err;
  }
}
