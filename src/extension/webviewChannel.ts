import * as vscode from 'vscode';
import { RpcEndpoint, type EventMessage, type Handlers, type RequestMap, type RpcMessage } from '../protocol/rpc';
import { Disposable } from './dispose';

/**
 * The host's end of a webview channel: an RPC endpoint over postMessage, with the ready handshake. Messages
 * sent before the webview says `ready` are queued and flushed then.
 */
export class WebviewChannel<TOut extends RequestMap, TIn extends RequestMap, TEvOut extends EventMessage, TEvIn extends EventMessage> extends Disposable {
  private ready = false;
  private readonly queue: RpcMessage[] = [];
  /** The RPC endpoint; use it to send requests and events. */
  readonly rpc: RpcEndpoint<TOut, TIn, TEvOut, TEvIn>;

  constructor(webview: vscode.Webview, handlers: Handlers<TIn>, onEvent: (event: TEvIn) => void) {
    super();
    this.rpc = new RpcEndpoint<TOut, TIn, TEvOut, TEvIn>(
      (msg) => {
        if (this.ready) void webview.postMessage(msg);
        else this.queue.push(msg);
      },
      handlers,
      (event) => {
        if (event.type === 'ready') {
          this.ready = true;
          for (const msg of this.queue.splice(0)) void webview.postMessage(msg);
        }
        onEvent(event);
      },
    );
    this._register(webview.onDidReceiveMessage((msg) => this.rpc.receive(msg)));
    this._register({ dispose: () => this.rpc.dispose('webview closed') });
  }

  /** Called when the webview reloads its content: it must say `ready` again. */
  reset(): void {
    this.ready = false;
  }
}
