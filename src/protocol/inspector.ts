import type { ModelSummary } from '../core/inspect';
import type { LayerHistogram, ModelOrigin, QuantErrorSummary, TensorTile, TileMode } from './analysis';
import type { EventMessage } from './rpc';

export type { ModelSummary, LayerInfo, WeightInfo, IoInfo } from '../core/inspect';
export type { LayerHistogram, ModelOrigin, QuantErrorSummary, TensorTile, TileMode } from './analysis';

/** Requests the Model Inspector webview makes of the host. */
export type InspectorHostRequests = {
  /** The model's summary; read in the worker. */
  getSummary: { params: Record<string, never>; result: ModelSummary };
  /** A histogram of a layer's weight with per-channel ranges; computed in the worker, never the whole tensor. */
  getHistogram: { params: { layer: string; tensor?: string; bins?: number; range?: [number, number]; of?: 'source' }; result: LayerHistogram };
  /** One heatmap tile of a weight seen as out-channels x the rest; `stride` > 1 is a downsampled overview; `mode` 'mask' gives kept fractions, 'error' the quantization error. */
  getTile: { params: { tensor: string; row: number; col: number; rows: number; cols: number; stride: number; mode?: TileMode }; result: TensorTile };
  /** The model's origin when Whittle wrote it (its source, the pass), else null. */
  getOrigin: { params: Record<string, never>; result: ModelOrigin | null };
  /** A quantized layer's weight error against the source model's. */
  getQuantError: { params: { layer: string }; result: QuantErrorSummary };
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
  command: 'whittle.compress' | 'whittle.analyzeSensitivity' | 'whittle.prune';
}

/** Events from the inspector webview. */
export type FromInspectorEvent = ReadyEvent | LayerSelectedEvent | RunCommandEvent;

/** The model file changed on disk; the webview should ask for the summary again. */
export interface ModelChangedEvent extends EventMessage {
  type: 'modelChanged';
}

/** Events to the inspector webview. */
export type ToInspectorEvent = ModelChangedEvent;
