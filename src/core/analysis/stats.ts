/** Summary statistics of one weight tensor. */
export interface TensorStats {
  min: number;
  max: number;
  mean: number;
  std: number;
  /** Fraction of elements that are exactly zero. */
  sparsity: number;
  /** Count of NaN or infinite elements; they are left out of the other figures. */
  nonFinite: number;
}

/** Min, max, mean, standard deviation and exact-zero sparsity of one array. */
export function tensorStats(values: ArrayLike<number>): TensorStats {
  return statsOfChunks([values]);
}

/**
 * The same figures over a tensor delivered in chunks, so a big tensor is never copied whole. Each chunk is
 * summed in one pass in doubles, shifted by its first value so that a large mean does not cancel the
 * variance, and chunks are merged with Chan's parallel-variance formula. The hot loop assumes finite values
 * and checks once per chunk; a chunk with NaN or infinities is redone on the careful path.
 */
export function statsOfChunks(chunks: Iterable<ArrayLike<number>>): TensorStats {
  return finishStats(accumulate(chunks));
}

/** Partial statistics of part of a tensor: mergeable, and plain data, so workers can send them back. */
export function accumulate(chunks: Iterable<ArrayLike<number>>, acc: Accumulator = emptyAccumulator()): Accumulator {
  for (const values of chunks) {
    acc.total += values.length;
    if (values.length === 0) continue;
    if (!fastChunk(values, acc)) carefulChunk(values, acc);
  }
  return acc;
}

/** An accumulator with nothing in it. */
export function emptyAccumulator(): Accumulator {
  return { min: Infinity, max: -Infinity, n: 0, mean: 0, m2: 0, zeros: 0, nonFinite: 0, total: 0 };
}

/** Merges `b` into `a` (parts of one tensor computed apart). */
export function mergeAccumulators(a: Accumulator, b: Accumulator): Accumulator {
  if (b.n > 0) merge(a, b.n, b.mean, b.m2, b.min, b.max, b.zeros);
  a.nonFinite += b.nonFinite;
  a.total += b.total;
  return a;
}

/** The final figures of an accumulator. */
export function finishStats(acc: Accumulator): TensorStats {
  const { min, max, n, mean, m2, zeros, nonFinite, total } = acc;
  if (n === 0) return { min: NaN, max: NaN, mean: NaN, std: NaN, sparsity: 0, nonFinite };
  return { min, max, mean, std: Math.sqrt(m2 / n), sparsity: total ? zeros / total : 0, nonFinite };
}

/** Running figures: count, mean and M2 of the finite values, extremes, zeros, and counts. */
export interface Accumulator {
  min: number;
  max: number;
  n: number;
  mean: number;
  m2: number;
  zeros: number;
  nonFinite: number;
  total: number;
}

function fastChunk(values: ArrayLike<number>, acc: Accumulator): boolean {
  const len = values.length;
  const shift = values[0];
  let min = Infinity;
  let max = -Infinity;
  let zeros = 0;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < len; i++) {
    const v = values[i];
    if (v === 0) zeros++;
    if (v < min) min = v;
    if (v > max) max = v;
    const d = v - shift;
    sum += d;
    sumSq += d * d;
  }
  // NaN or ±Infinity anywhere makes the sums non-finite.
  if (!(sumSq - sumSq === 0) || !(sum - sum === 0)) return false;
  merge(acc, len, shift + sum / len, Math.max(0, sumSq - (sum * sum) / len), min, max, zeros);
  return true;
}

function carefulChunk(values: ArrayLike<number>, acc: Accumulator): void {
  let cn = 0;
  let sum = 0;
  let sumSq = 0;
  let shift = NaN;
  let min = Infinity;
  let max = -Infinity;
  let zeros = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) {
      acc.nonFinite++;
      continue;
    }
    if (shift !== shift) shift = v;
    if (v === 0) zeros++;
    if (v < min) min = v;
    if (v > max) max = v;
    const d = v - shift;
    sum += d;
    sumSq += d * d;
    cn++;
  }
  if (cn > 0) merge(acc, cn, shift + sum / cn, Math.max(0, sumSq - (sum * sum) / cn), min, max, zeros);
}

function merge(acc: Accumulator, cn: number, cmean: number, cm2: number, min: number, max: number, zeros: number): void {
  const d = cmean - acc.mean;
  const n = acc.n + cn;
  acc.mean += (d * cn) / n;
  acc.m2 += cm2 + (d * d * acc.n * cn) / n;
  acc.n = n;
  if (min < acc.min) acc.min = min;
  if (max > acc.max) acc.max = max;
  acc.zeros += zeros;
}
