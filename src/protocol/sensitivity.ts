import type { AnalysisSidecar, LayerChoice } from '../core/analysisSidecar';
import type { LayerInfo } from '../core/inspect';
import type { AnalyzeParams, AnalyzeResult, LayerSensitivity } from './analysis';
import type { EventMessage } from './rpc';
import type { ReadyEvent } from './inspector';

export type { AnalysisSidecar, LayerChoice } from '../core/analysisSidecar';
export type { AnalyzeResult, LayerSensitivity } from './analysis';

/** The host answers no requests of the Layer Sensitivity view... */
export type SensitivityRequests = Record<never, never>;

/** ...and these are the requests the view makes of the host. */
export type SensitivityHostRequests = {
  /** Shows an open dialog for calibration data; the path, or null when dismissed. */
  pickData: { params: Record<string, never>; result: string | null };
  /** Sets (or with null clears) a layer's choice in the sidecar; returns the new choices. */
  setChoice: { params: { file: string; layer: string; choice: LayerChoice | null }; result: AnalysisSidecar['choices'] };
};

/** The model whose layers the view lists, or none. */
export interface ShowModelEvent extends EventMessage {
  type: 'showModel';
  model: { file: string; name: string; params: number; layers: Array<Pick<LayerInfo, 'name' | 'op'> & { params: number }> } | null;
  /** The layer picked in the inspector, if any. */
  selected?: string;
  /** The model's saved analysis and choices (its sidecar), if any. */
  analysis?: AnalysisSidecar | null;
  /** True while an analysis of this model runs. */
  running?: boolean;
}

/** An analysis started: clear the old results. */
export interface RunStartedEvent extends EventMessage {
  type: 'runStarted';
  file: string;
  data: string;
  kind: AnalyzeParams['kind'];
}

/** One layer's sweeps arrived (live update). */
export interface LayerResultEvent extends EventMessage {
  type: 'layerResult';
  file: string;
  layer: LayerSensitivity;
  done: number;
  total: number;
}

/** Progress of the running analysis, with an ETA when known. */
export interface RunProgressEvent extends EventMessage {
  type: 'runProgress';
  file: string;
  fraction?: number;
  message: string;
}

/** The analysis ended: a result (saved to `sidecar`), a cancel, or an error. */
export interface RunFinishedEvent extends EventMessage {
  type: 'runFinished';
  file: string;
  result?: AnalyzeResult;
  analysis?: AnalysisSidecar;
  sidecar?: string;
  cancelled?: boolean;
  error?: string;
}

/** Events to the Layer Sensitivity view. */
export type ToSensitivityEvent = ShowModelEvent | RunStartedEvent | LayerResultEvent | RunProgressEvent | RunFinishedEvent;

/** The user pressed Run (or Analyze): sweep `file` on `data`. */
export interface AnalyzeEvent extends EventMessage {
  type: 'analyze';
  file: string;
  data?: string;
  kind?: AnalyzeParams['kind'];
  limit?: number;
}

/** The user pressed Cancel. */
export interface CancelEvent extends EventMessage {
  type: 'cancel';
}

/** Events from the Layer Sensitivity view. */
export type FromSensitivityEvent = ReadyEvent | AnalyzeEvent | CancelEvent;
