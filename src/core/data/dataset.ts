/** What every source form yields, and the one Dataset built on it: ordering, shuffle, limit and batching. */
import { InputError } from '../errors';
import { seededRandom } from '../random';
import { countOf, sampleDTypes } from './tensors';
import type { Batch, Dataset, DatasetOptions, HostTensor } from './types';

/** One model input's samples, read one at a time by index (so nothing holds every sample). */
export interface SampleInput {
  /** The model input's name. */
  name: string;
  /** Reads sample `index`: its data in the input's dtype and its shape, batch axis (usually 1) included. */
  read(index: number): Promise<HostTensor>;
  /** The file a sample came from, for errors found while batching. */
  where(index: number): string;
}

/** One model input fed the same tensor in every batch (a manifest `value` or `zeros`): not stacked. */
export interface ConstantInput {
  /** The model input's name. */
  name: string;
  tensor: HostTensor;
}

/** What a source form opens: per-sample inputs of one common length, constants, and optional labels. */
export interface SampleSource {
  /** For reports: what the data came from. */
  description: string;
  /** Samples before limit. */
  count: number;
  inputs: SampleInput[];
  constants?: ConstantInput[];
  /** One class label per sample, when the data has them (small: one int each). */
  labels?: Int32Array;
  warnings?: string[];
  /** A cap of the source's own (a manifest's `limit`); the smaller of it and `--limit` applies. */
  limit?: number;
  /** The file or folder the whole source is named by, for errors such as "no samples". */
  where: string;
}

/**
 * Samples `start`..`end - 1` of a source, in the source's own order (a `#A:B` range or a manifest's `skip`),
 * before any shuffle or limit. `end` defaults to the source's count. An empty or out-of-bounds range is an
 * InputError naming `where` (the SPEC or manifest as the user wrote it) and the source's real count.
 */
export function sliceSource(source: SampleSource, start: number | undefined, end: number | undefined, where: string, what = `range #${start ?? ''}:${end ?? ''}`): SampleSource {
  const s = start ?? 0;
  const e = end ?? source.count;
  if (s > source.count || e > source.count) throw new InputError(where, `${what} is out of bounds: the source has ${source.count} samples (0..${source.count - 1})`);
  if (e <= s) throw new InputError(where, `${what} is empty: it selects no samples of the ${source.count}`);
  if (s === 0 && e === source.count) return source;
  return {
    ...source,
    description: `${source.description} #${s}:${e}`,
    count: e - s,
    inputs: source.inputs.map((i) => ({ name: i.name, read: (k: number) => i.read(k + s), where: (k: number) => i.where(k + s) })),
    // Mismatched labels are left whole, so makeDataset still reports the mismatch against the source.
    labels: source.labels && source.labels.length === source.count ? source.labels.slice(s, e) : source.labels,
  };
}

/**
 * A Dataset over a source: a seeded shuffle (when asked) and then the limit pick the samples; batches read
 * only their own samples. Samples concatenate along axis 0, which is the model's batch axis; scalar samples
 * stack on a new axis (batch size 1 keeps them scalar).
 */
export function makeDataset(source: SampleSource, opts: DatasetOptions = {}): Dataset {
  if (source.count === 0) throw new InputError(source.where, 'the dataset is empty: it has no samples');
  const limits = [opts.limit, source.limit].filter((n): n is number => n !== undefined);
  for (const n of limits) {
    if (!Number.isSafeInteger(n) || n < 1) throw new InputError(source.where, `limit must be a whole number of at least 1, not ${n}`);
  }
  if (source.labels && source.labels.length !== source.count) {
    throw new InputError(source.where, `${source.labels.length} labels for ${source.count} samples`);
  }
  const order = Array.from({ length: source.count }, (_, i) => i);
  if (opts.shuffle) shuffle(order, opts.seed ?? 0);
  const size = Math.min(source.count, ...limits);
  const picked = order.slice(0, size);

  return {
    description: source.description,
    size,
    hasLabels: source.labels !== undefined,
    warnings: source.warnings ?? [],
    batches: (batchSize, signal) => batches(source, picked, batchSize, signal),
  };
}

/** Fisher-Yates with the project's seeded PRNG, so a seed gives the same order on every machine. */
function shuffle(order: number[], seed: number): void {
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
}

async function* batches(source: SampleSource, picked: number[], batchSize: number, signal?: AbortSignal): AsyncGenerator<Batch> {
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a whole number of at least 1, not ${batchSize}`);
  for (let start = 0; start < picked.length; start += batchSize) {
    // Throwing rather than ending quietly: a cancelled calibration must not pass for a finished one.
    signal?.throwIfAborted();
    const indices = picked.slice(start, start + batchSize);
    const inputs: Record<string, HostTensor> = {};
    for (const input of source.inputs) {
      const samples = await Promise.all(indices.map((i) => input.read(i)));
      inputs[input.name] = stack(samples, input, indices);
    }
    for (const c of source.constants ?? []) inputs[c.name] = c.tensor;
    const batch: Batch = { count: indices.length, start, inputs, indices };
    if (source.labels) batch.labels = Int32Array.from(indices, (i) => source.labels![i]);
    yield batch;
  }
}

/** Joins samples along axis 0; every sample must have the first one's shape. */
function stack(samples: HostTensor[], input: SampleInput, indices: number[]): HostTensor {
  const first = samples[0];
  if (samples.length === 1) return first;
  samples.forEach((s, k) => {
    if (s.dtype !== first.dtype || s.shape.join() !== first.shape.join()) {
      throw new InputError(input.where(indices[k]), `input '${input.name}': this sample is ${s.dtype} [${s.shape.join(', ')}], the first of its batch is ${first.dtype} [${first.shape.join(', ')}]; use a batch size of 1 for samples of different shapes`);
    }
  });
  const per = countOf(first.shape);
  const data = sampleDTypes[first.dtype].alloc(per * samples.length);
  samples.forEach((s, k) => (data as Float32Array).set(s.data as Float32Array, k * per));
  const shape = first.shape.length === 0 ? [samples.length] : [first.shape[0] * samples.length, ...first.shape.slice(1)];
  return { dtype: first.dtype, shape, data };
}
