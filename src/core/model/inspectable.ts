import type { Layer } from './layers';
import type { TensorRef } from './tensorRef';

/**
 * What the Inspector's views read from a model of either format (OnnxModel, TfjsModel): its file, its weights
 * by name and its layers. Histograms and heatmap tiles work on this alone.
 */
export interface InspectableModel {
  readonly file: string;
  weights(): Map<string, { ref: TensorRef }>;
  layers(): Layer[];
}
