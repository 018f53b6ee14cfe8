import { RpcEndpoint, type EventMessage, type Handlers, type RequestMap } from '../../src/protocol/rpc';

interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const api = acquireVsCodeApi();

/** UI state kept by VS Code across hides and reloads (selected layer, sort order): getState/setState. */
export function getState<T extends object>(defaults: T): T {
  return { ...defaults, ...((api.getState() as Partial<T> | undefined) ?? {}) };
}

/** Stores UI state. */
export function setState<T extends object>(state: T): void {
  api.setState(state);
}

/**
 * Connects the webview to its host: an RPC endpoint over postMessage, then the ready handshake, after which
 * the host flushes what it queued.
 */
export function connect<TOut extends RequestMap, TIn extends RequestMap, TEvOut extends EventMessage, TEvIn extends EventMessage>(
  handlers: Handlers<TIn>,
  onEvent: (event: TEvIn) => void,
): RpcEndpoint<TOut, TIn, TEvOut, TEvIn> {
  const rpc = new RpcEndpoint<TOut, TIn, TEvOut, TEvIn>((msg) => api.postMessage(msg), handlers, onEvent);
  window.addEventListener('message', (e: MessageEvent) => rpc.receive(e.data));
  rpc.sendEvent({ type: 'ready' } as unknown as TEvOut);
  return rpc;
}
