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

/** Min, max, mean, standard deviation and exact-zero sparsity in one pass (Welford for the variance). */
export function tensorStats(values: ArrayLike<number>): TensorStats {
  let min = Infinity;
  let max = -Infinity;
  let mean = 0;
  let m2 = 0;
  let n = 0;
  let zeros = 0;
  let nonFinite = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      nonFinite++;
      continue;
    }
    if (v === 0) zeros++;
    if (v < min) min = v;
    if (v > max) max = v;
    n++;
    const d = v - mean;
    mean += d / n;
    m2 += d * (v - mean);
  }
  if (n === 0) return { min: NaN, max: NaN, mean: NaN, std: NaN, sparsity: 0, nonFinite };
  return { min, max, mean, std: Math.sqrt(m2 / n), sparsity: zeros / values.length, nonFinite };
}
