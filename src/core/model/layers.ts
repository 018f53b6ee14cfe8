import type { TensorRef } from './tensorRef';

/** What kind of weight-bearing layer a node is; passes pick their rules by it. */
export type LayerKind = 'conv' | 'convTranspose' | 'gemm' | 'matmul' | 'rnn' | 'embedding' | 'batchNorm' | 'layerNorm' | 'other';

/**
 * A weight-bearing node with its weights, format-neutral: ONNX nodes and TF.js layers both map onto it. The
 * analysis and the passes work on layers, not on raw graphs.
 */
export interface Layer {
  /** Node (or Keras layer) name; unique within the model. */
  name: string;
  /** Operator type as the format names it (Conv, Gemm, MatMul, LSTM, ...). */
  op: string;
  kind: LayerKind;
  /** The main weight: the one pruning and quantization act on. */
  weight: TensorRef;
  bias?: TensorRef;
  /** Every weight of the layer by role (weight, bias, recurrence, scale, mean, var...). */
  tensors: Record<string, TensorRef>;
  /**
   * For MatMul/Gemm/Conv: the axis of `weight` that indexes output channels (0 for Conv and Gemm with
   * transB=1, 1 for MatMul and Gemm with transB=0). Per-channel statistics and quantization use it.
   */
  outputAxis: number;
  /**
   * Set when `weight` is stored quantized and reaches the node through a DequantizeLinear: `weight` is then the
   * integer initializer, and real values are (q - zeroPoint) * scale per `axis` (blocks of `blockSize` along
   * it when > 0), as DequantizeLinear computes them.
   */
  quant?: LayerQuant;
}

/** How a layer's quantized weight dequantizes (see Layer.quant). */
export interface LayerQuant {
  /** The DequantizeLinear node. */
  node: string;
  scale: TensorRef;
  zeroPoint?: TensorRef;
  axis: number;
  blockSize: number;
}
