import type { LayerInfo } from '../core/inspect';
import type { EventMessage } from './rpc';
import type { ReadyEvent } from './inspector';

/** The Layer Sensitivity view answers no requests and makes none yet; it is driven by events. */
export type SensitivityRequests = Record<never, never>;

/** The model whose layers the view lists, or none. */
export interface ShowModelEvent extends EventMessage {
  type: 'showModel';
  model: { file: string; name: string; params: number; layers: Array<Pick<LayerInfo, 'name' | 'op'> & { params: number }> } | null;
  /** The layer picked in the inspector, if any. */
  selected?: string;
}

/** Events to the Layer Sensitivity view. */
export type ToSensitivityEvent = ShowModelEvent;

/** The user pressed Analyze. */
export interface AnalyzeEvent extends EventMessage {
  type: 'analyze';
  file: string;
}

/** Events from the Layer Sensitivity view. */
export type FromSensitivityEvent = ReadyEvent | AnalyzeEvent;
