import type { ParamSpec, PassReport } from '../pass';
import type { Preparation } from './fold';

/** Quantization modes (DESIGN.md section 7: `quantize --mode`). */
export type QuantizeMode = 'weight-only' | 'static' | 'dynamic' | 'fp16';

/** Activation range calibrators for static quantization. */
export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy' | 'mse';

/** Parsed parameters of the quantize pass. Modes read the ones that concern them and ignore the rest. */
export interface QuantizeOptions {
  mode: QuantizeMode;
  /** Weight bits: 8 or 4 (weight-only); static and dynamic use 8. */
  bits: 8 | 4;
  /** One scale per output channel (default) rather than per tensor. */
  perChannel: boolean;
  /** Symmetric weights (zero point 0). Default: symmetric for 8-bit, asymmetric for int4 blocks. */
  symmetric?: boolean;
  /** Weight-only: elements per scale along the input dimension (0 = per channel/tensor); int4 default 32. */
  block?: number;
  /** Weight-only storage of MatMul/Gemm weights: MatMulNBits (com.microsoft, fast on ORT) or DequantizeLinear (portable, opset 21 for int4). */
  format: 'auto' | 'matmulnbits' | 'qdq';
  calibration: CalibrationMethod;
  /** Percentile calibrator: the percentile of |x| kept (e.g. 99.99). */
  percentile: number;
  /** Static: 7-bit weights where the U8S8 kernel would saturate (auto: x86 without VNNI), or force 7 or 8. */
  weightBits: 'auto' | '7' | '8';
  /** Static: correct each quantized layer's output mean shift on calibration data. */
  biasCorrection: boolean;
  /** Accuracy-aware fallback: the largest accuracy drop in points (top-1 disagreement without labels). */
  maxDrop?: number;
  /** Layer names (or op types, e.g. Softmax) kept in float. */
  exclude: string[];
  /** Static: activation tensors quantized over their observed [min, max] whatever `calibration` chose (the --max-drop fallback widens clipped ranges with it). */
  fullRange?: string[];
  /** fp16: op types kept in float32. */
  keepFp32: string[];
}

/** The quantize pass's parameter table: CLI flags, recipe fields, wizard inputs and validation in one place. */
export const quantizeParams: ParamSpec[] = [
  { name: 'mode', type: 'enum', choices: ['weight-only', 'static', 'dynamic', 'fp16'], default: 'static', placeholder: 'MODE', help: 'weight-only (int8/int4 weights, float activations), static (int8 QDQ with calibration on --data), dynamic (int8 MatMul with runtime activation scales), fp16' },
  { name: 'bits', type: 'enum', choices: ['8', '4'], default: '8', placeholder: 'B', help: 'weight bits (4: weight-only only)' },
  { name: 'perChannel', type: 'boolean', default: true, help: 'one scale per output channel (--per-channel false: one per tensor)' },
  { name: 'symmetric', type: 'boolean', help: 'symmetric weights, zero point 0 (default: yes for 8-bit, no for 4-bit blocks)' },
  { name: 'block', type: 'number', min: 0, placeholder: 'N', help: 'weight-only: block size along the input dimension (16, 32, 64, 128; 0 = per channel); default 32 for 4-bit', check: (v) => ([0, 16, 32, 64, 128, 256].includes(Number(v)) ? undefined : `must be 0, 16, 32, 64, 128 or 256, not ${String(v)}`) },
  { name: 'format', type: 'enum', choices: ['auto', 'matmulnbits', 'qdq'], default: 'auto', placeholder: 'F', help: 'weight-only storage of MatMul/Gemm weights: matmulnbits (com.microsoft MatMulNBits, 4 or 8 bits, fast in onnxruntime) or qdq (DequantizeLinear, portable, dequantized on every run: slower than fp32); auto = matmulnbits for MatMul/Gemm. Convs always use DequantizeLinear' },
  { name: 'calibration', type: 'enum', choices: ['minmax', 'percentile', 'entropy', 'mse'], default: 'minmax', placeholder: 'METHOD', help: 'static: how activation ranges are chosen from the calibration data' },
  { name: 'percentile', type: 'number', min: 90, max: 100, default: 99.999, placeholder: 'P', help: 'percentile calibrator: percentile of |x| kept' },
  { name: 'weightBits', type: 'enum', choices: ['auto', '7', '8'], default: 'auto', placeholder: 'B', help: 'static: 7-bit weights avoid saturation in the x86 U8S8 kernel without VNNI; auto picks from the CPU' },
  { name: 'biasCorrection', type: 'boolean', default: false, help: 'static: correct the mean shift of each quantized layer output on the calibration data' },
  { name: 'maxDrop', type: 'number', min: 0, placeholder: 'P', help: 'accuracy-aware: largest accuracy drop in points; the worst layers go back to float until it holds' },
  { name: 'exclude', type: 'list', default: [], placeholder: 'LAYERS', help: 'comma-separated layer names or op types to keep in float' },
  { name: 'fullRange', type: 'list', default: [], placeholder: 'TENSORS', help: 'static: activation tensors quantized over their observed min..max, not the range --calibration chose (what --max-drop widens when a clipped range costs accuracy)' },
  { name: 'keepFp32', type: 'list', default: [], placeholder: 'OPS', help: 'fp16: op types kept in float32 (e.g. Softmax,LayerNormalization)' },
];

/** What happened to one layer's weight. */
export interface QuantLayerSummary {
  layer: string;
  op: string;
  weight: string;
  shape: number[];
  /** 'float' when the layer was kept in float (then `reason` says why). */
  format: 'qdq' | 'matmulnbits' | 'dynamic' | 'fp16' | 'float';
  bits?: number;
  /** 'per-tensor', 'per-channel' or 'block-32' etc. */
  granularity?: string;
  symmetric?: boolean;
  /** SQNR of the dequantized weight against the float one, in dB. */
  sqnrDb?: number;
  reason?: string;
  /** Static: the activation tensor whose QuantizeLinear follows the layer (its output, after a folded Relu). */
  activation?: string;
}

/** Static: how one activation tensor's range was chosen, and the quantization error expected from it. */
export interface ActivationRange {
  tensor: string;
  /** The range quantized over. */
  range: [number, number];
  /** The observed minimum and maximum on the calibration data. */
  observed: [number, number];
  /** True when the range was widened to `observed` by `fullRange`. */
  full: boolean;
  /** Expected SQNR of quantizing this tensor alone (its own rounding and clipping, not upstream error), dB, from the calibration histogram. */
  sqnrDb: number;
  /** The same over the observed range. */
  fullRangeSqnrDb: number;
  /** Share of calibration values outside the range (clipped). */
  clipped: number;
  /** The range each calibrator would choose on the same statistics, to compare with the one used. */
  calibrators?: Record<CalibrationMethod, [number, number]>;
  /** The calibration histogram over the observed range, 64 equal bins (from the streaming 4,096-bin one). */
  histogram?: { lo: number; hi: number; counts: number[] };
}

/** Per-element weight error of one layer, kept in memory for the Inspector's quantization-error heatmap. */
export interface WeightError {
  layer: string;
  weight: string;
  shape: number[];
  /** dequantized - original, per element. */
  error: Float32Array;
  /** SQNR per output channel, dB. */
  channelSqnrDb: Float64Array;
}

/** The quantize pass's report. */
export interface QuantizeReport extends PassReport {
  mode: QuantizeMode;
  layers: QuantLayerSummary[];
  /** Static: how activation ranges were chosen. */
  calibration?: { method: CalibrationMethod; data: string; samples: number; tensors: number };
  /** Static: 7- or 8-bit weights and why. */
  weightBits?: { bits: 7 | 8; reason: string };
  /** Ops that stayed float in onnxruntime's optimized graph (read through optimizedModelFilePath). */
  floatOps?: Record<string, number>;
  /** Static: every op of onnxruntime's optimized graph, by type (QLinearConv, QGemm, ...). */
  optimizedOps?: Record<string, number>;
  errors: WeightError[];
  /** Static: SQNR of each quantized activation (post-DQ) against the float model's on calibration data, worst first. */
  activations?: Array<{ tensor: string; sqnrDb: number }>;
  /** Static: each calibrated activation's range and the error expected from it alone, worst first. */
  ranges?: ActivationRange[];
  /** Static: what graph preparation did (folded BatchNorms and bias Adds, MatMul+Add to Gemm, opset raise). */
  preparation?: Preparation;
}
