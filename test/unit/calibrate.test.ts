import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { activationSpec, chooseRange, histogramBins, histogramMse, percentileThreshold, TensorStats } from '../../src/core/passes/quantize/calibrate';
import { qRange, quantizeValue, scaleZeroPoint } from '../../src/core/passes/quantize/math';
import { normal, seededRandom } from '../../src/core/random';

/** N(0, 1) samples with a few huge outliers, fed in batches. */
function gaussianWithOutliers(batches: number, perBatch: number, seed = 1): { stats: TensorStats; all: Float32Array } {
  const randn = normal(seededRandom(seed));
  const stats = new TensorStats();
  const all = new Float32Array(batches * perBatch);
  for (let b = 0; b < batches; b++) {
    const x = Float32Array.from({ length: perBatch }, randn);
    // Outliers arrive late, so the histogram has to widen after it was laid out for |x| ~ 4.
    if (b === batches - 1) {
      x[0] = 60;
      x[1] = -45;
      x[2] = 55;
    }
    stats.add(x, [perBatch]);
    all.set(x, b * perBatch);
  }
  return { stats, all };
}

/** Actual mean squared error of uint8-quantizing the samples over [lo, hi]. */
function sampleMse(x: Float32Array, lo: number, hi: number): number {
  const sz = scaleZeroPoint(lo, hi, activationSpec);
  const [qmin, qmax] = qRange(activationSpec);
  let e = 0;
  for (const v of x) {
    const d = v - (quantizeValue(v, sz, qmin, qmax) - sz.zeroPoint) * sz.scale;
    e += d * d;
  }
  return e / x.length;
}

describe('calibration statistics', () => {
  test('running min/max and histogram counts survive widening', () => {
    const s = new TensorStats();
    s.add(Float32Array.of(0.5, -0.25, 0, 1));
    assert.equal(s.limit, 1);
    s.add(Float32Array.of(3.5, -7));
    assert.equal(s.limit, 8, 'the limit doubles until 7 fits');
    assert.equal(s.min, -7);
    assert.equal(s.max, 3.5);
    assert.equal(s.counts.reduce((a, b) => a + b, 0), 6);
    // -7 lies in the bin (-7 + 8) / (16 / 4096) = 256.
    assert.equal(s.counts[256], 1);
    // 1 was binned at limit 1 (bin 4096, clamped to 4095), then merged three times: 3071, 2559, 2303.
    assert.equal(s.counts[2303], 1);
  });

  test('zeros before any non-zero value are counted', () => {
    const s = new TensorStats();
    s.add(new Float32Array(10));
    s.add(Float32Array.of(2));
    assert.equal(s.absHistogram()[0], 10);
    assert.deepEqual(chooseRange(s, 'minmax'), [0, 2]);
  });

  test('memory stays fixed: the histogram has the same size after 2 million samples and 20 widenings', () => {
    const s = new TensorStats('channel1');
    const randn = normal(seededRandom(3));
    for (let b = 0; b < 40; b++) {
      const x = Float32Array.from({ length: 50_000 }, () => randn() * 2 ** (b / 2));
      s.add(x, [10, 5, 1000]);
    }
    assert.equal(s.counts.length, histogramBins);
    assert.equal(s.channelMeans()!.length, 5);
    assert.equal(s.count, 2_000_000);
    assert.equal(s.counts.reduce((a, b) => a + b, 0), 2_000_000);
    assert.ok(s.limit >= Math.max(-s.min, s.max));
  });

  test('per-channel means along axis 1 and along the last axis', () => {
    const a = new TensorStats('channel1');
    // [N=2, C=2, 2]: channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
    a.add(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), [2, 2, 2]);
    assert.deepEqual([...a.channelMeans()!], [3.5, 5.5]);
    const b = new TensorStats('last');
    b.add(Float32Array.of(1, 2, 3, 4), [2, 2]);
    assert.deepEqual([...b.channelMeans()!], [2, 3]);
  });

  test('NaN in an activation is an error', () => {
    assert.throws(() => new TensorStats().add(Float32Array.of(1, NaN)), /NaN/);
  });
});

describe('range choosers on a Gaussian with outliers', () => {
  const { stats, all } = gaussianWithOutliers(20, 10_000);
  const ranges = {
    minmax: chooseRange(stats, 'minmax'),
    percentile: chooseRange(stats, 'percentile', 99.99),
    entropy: chooseRange(stats, 'entropy'),
    mse: chooseRange(stats, 'mse'),
  };

  test('minmax keeps the outliers; percentile, entropy and mse clip them', () => {
    console.log('ranges', JSON.stringify(ranges));
    assert.deepEqual(ranges.minmax, [-45, 60]);
    // MSE weighs the outliers' clipping error against everyone's rounding noise: 3 outliers of ~50 in 200k
    // samples cost enough that it clips them only partly (that is its optimum, checked below on the samples).
    assert.ok(ranges.mse[1] < 50 && ranges.mse[0] > -45, `mse clipped to [${ranges.mse}]`);
    for (const m of ['percentile', 'entropy'] as const) {
      const [lo, hi] = ranges[m];
      assert.ok(hi < 10 && lo > -10, `${m} clipped to [${lo}, ${hi}]`);
      // Not absurdly tight either: N(0,1) has plenty of mass beyond 2.
      assert.ok(hi > 2 && lo < -2, `${m} kept the bulk: [${lo}, ${hi}]`);
    }
  });

  test('percentile 99.99 of |x| is near the Gaussian quantile (3.89)', () => {
    const t = percentileThreshold(stats, 99.99);
    assert.ok(Math.abs(t - 3.89) < 0.25, `t = ${t}`);
  });

  test("mse's range has lower quantization error than minmax's, in the histogram and on the samples", () => {
    const h = { minmax: histogramMse(stats, ...ranges.minmax), mse: histogramMse(stats, ...ranges.mse) };
    const real = { minmax: sampleMse(all, ...ranges.minmax), mse: sampleMse(all, ...ranges.mse) };
    console.log('mse', JSON.stringify({ h, real }));
    assert.ok(h.mse < h.minmax * 0.9, JSON.stringify(h));
    assert.ok(real.mse < real.minmax * 0.9, JSON.stringify(real));
    // The histogram's estimate tracks the real error.
    assert.ok(Math.abs(h.mse - real.mse) / real.mse < 0.2, JSON.stringify({ h, real }));
    // And the other clipping calibrators beat minmax on real samples too.
  });

  test('without outliers heavy enough to matter, mse clips a Laplacian near the analytical 8-bit optimum (9.89 b, Banner et al.)', () => {
    const rand = seededRandom(9);
    const s = new TensorStats();
    const x = Float32Array.from({ length: 200_000 }, () => (rand() < 0.5 ? 1 : -1) * -Math.log(1 - rand()));
    s.add(x);
    const [lo, hi] = chooseRange(s, 'mse');
    console.log('laplace', JSON.stringify({ minmax: [s.min, s.max], mse: [lo, hi] }));
    assert.ok(Math.abs(hi - 9.89) < 1 && Math.abs(lo + 9.89) < 1 && hi < s.max, `[${lo}, ${hi}] against [${s.min}, ${s.max}]`);
    assert.ok(sampleMse(x, lo, hi) < sampleMse(x, s.min, s.max));
  });

  test('a non-negative tensor (after Relu) keeps lower bound 0 under every method', () => {
    const s = new TensorStats();
    const randn = normal(seededRandom(5));
    for (let b = 0; b < 5; b++) s.add(Float32Array.from({ length: 20_000 }, () => Math.max(0, randn())));
    for (const m of ['minmax', 'percentile', 'entropy', 'mse'] as const) {
      const [lo, hi] = chooseRange(s, m, 99.99);
      assert.equal(lo, 0, m);
      assert.ok(hi > 1.5 && hi <= s.max, `${m}: ${hi}`);
      assert.equal(scaleZeroPoint(lo, hi, activationSpec).zeroPoint, 0);
    }
  });

  test("entropy is not pulled down by a Relu's exact zeros: it clips well under 1% of a half-zero, long-tailed tensor", () => {
    // Like a conv's output after Relu: 60% exact zeros, the rest exponential with a long tail.
    const rand = seededRandom(11);
    const s = new TensorStats();
    const values: number[] = [];
    for (let b = 0; b < 10; b++) {
      const batch = Float32Array.from({ length: 20_000 }, () => (rand() < 0.6 ? 0 : -Math.log(1 - rand()) * 40));
      values.push(...batch);
      s.add(batch);
    }
    assert.equal(s.zeros, values.filter((v) => v === 0).length);
    const [, hi] = chooseRange(s, 'entropy');
    const clipped = values.filter((v) => v > hi).length / values.length;
    assert.ok(clipped < 0.01, `entropy clipped ${(clipped * 100).toFixed(2)}% (threshold ${hi.toFixed(1)} of max ${s.max.toFixed(1)})`);
    assert.ok(hi < s.max, 'it still clips the far tail');
  });
});
