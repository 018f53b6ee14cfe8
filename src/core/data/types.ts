/** Element types a dataset can produce, named as onnxruntime names them. */
export type SampleDType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

/** A tensor in plain JS memory: element type, shape and data (float16 as Uint16Array bits, bool as Uint8Array). */
export interface HostTensor {
  dtype: SampleDType;
  shape: number[];
  data: Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;
}

/** What a dataset needs to know about one model input. A dimension is a number, a symbol, or null. */
export interface ModelInput {
  name: string;
  /** ONNX TensorProto.DataType code. */
  elemType: number;
  shape: Array<number | string | null>;
}

/** A batch of samples: each input stacked along a new leading axis (or along the model's batch axis). */
export interface Batch {
  /** Number of samples in this batch. */
  count: number;
  /** Index of the first sample in dataset order (after shuffling and limiting). */
  start: number;
  /** Each sample's index in the source's own order (before shuffling): a stable key for caches. */
  indices?: number[];
  inputs: Record<string, HostTensor>;
  /** Class labels, when the dataset has them. */
  labels?: Int32Array;
}

/** Options for opening a dataset. */
export interface DatasetOptions {
  /** Cap on samples (`--limit`). */
  limit?: number;
  /** Seed for shuffling and for `random` data. */
  seed?: number;
  /** Shuffle sample order (seeded). Default false. */
  shuffle?: boolean;
  /** Fixed shapes for dynamic dims (`--shape NAME=1x3x224x224`). */
  shapes?: Record<string, number[]>;
  /** Sample count for `random` data (default 8). */
  randomCount?: number;
}

/** An opened dataset: streams batches; never holds every sample in memory. */
export interface Dataset {
  /** What the data came from, for reports ("mnist idx t10k-images-idx3-ubyte.gz", "random"...). */
  description: string;
  /** Number of samples after limit. */
  size: number;
  /** True when samples carry class labels. */
  hasLabels: boolean;
  /** Warnings for the user (random data is not representative, ...). */
  warnings: string[];
  /** Batches of at most `batchSize` samples, in order; aborting `signal` stops between batches. */
  batches(batchSize: number, signal?: AbortSignal): AsyncGenerator<Batch>;
}
