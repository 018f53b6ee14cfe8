import type { ModelSummary } from '../core/inspect';
import type { EventMessage } from './rpc';

export type { ModelSummary, LayerInfo, WeightInfo, IoInfo } from '../core/inspect';

/** Requests the Model Inspector webview makes of the host. */
export type InspectorHostRequests = {
  /** The model's summary; read in the worker. */
  getSummary: { params: Record<string, never>; result: ModelSummary };
};

/** Requests the host makes of the inspector webview: none. */
export type InspectorWebviewRequests = Record<never, never>;

/** The webview has loaded and can take messages (the ready handshake). */
export interface ReadyEvent extends EventMessage {
  type: 'ready';
}

/** The user picked a layer in the table (drives the Layer Sensitivity view). */
export interface LayerSelectedEvent extends EventMessage {
  type: 'layerSelected';
  name: string;
}

/** The user asked to run a Whittle command on this model. */
export interface RunCommandEvent extends EventMessage {
  type: 'runCommand';
  command: 'whittle.compress' | 'whittle.analyzeSensitivity';
}

/** Events from the inspector webview. */
export type FromInspectorEvent = ReadyEvent | LayerSelectedEvent | RunCommandEvent;

/** The model file changed on disk; the webview should ask for the summary again. */
export interface ModelChangedEvent extends EventMessage {
  type: 'modelChanged';
}

/** Events to the inspector webview. */
export type ToInspectorEvent = ModelChangedEvent;
