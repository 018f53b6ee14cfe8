import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClassificationMetrics, isClassifierOutput, jsonNumber, latencyStats, OutputComparison, type OutputTensor } from '../../src/core/analysis/metrics';
import { normal, seededRandom } from '../../src/core/random';

// The expected figures below are computed the slow, obvious way (whole arrays, plain softmax, sorting), so
// that a mistake in the streaming code cannot be repeated in the check.

function close(actual: number | undefined, expected: number, tol: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: got ${actual}, want ${expected}`);
}

const t = (data: number[] | Float32Array, dims: number[]): OutputTensor => ({ data: Float32Array.from(data), dims });

/** Rows of an [N, C] array. */
function rows(data: Float32Array, c: number): number[][] {
  return Array.from({ length: data.length / c }, (_, i) => [...data.subarray(i * c, (i + 1) * c)]);
}

function naiveSoftmax(x: number[]): number[] {
  const e = x.map(Math.exp);
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Class indices best first; equal scores keep index order. */
function order(x: number[]): number[] {
  return x.map((_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
}

function naiveClassification(cand: number[][], ref: number[][], labels: number[]) {
  let top1 = 0;
  let top5 = 0;
  let agree = 0;
  let kl = 0;
  cand.forEach((row, i) => {
    const o = order(row);
    if (o[0] === labels[i]) top1++;
    if (o.slice(0, 5).includes(labels[i])) top5++;
    if (order(ref[i])[0] === o[0]) agree++;
    const p = naiveSoftmax(ref[i]);
    const q = naiveSoftmax(row);
    kl += p.reduce((a, pj, j) => a + pj * Math.log(pj / q[j]), 0);
  });
  const n = cand.length;
  return { accuracy: top1 / n, top5: top5 / n, top1Agreement: agree / n, kl: kl / n };
}

/** Uneven batch sizes, an empty one among them. */
const batchSizes = [3, 1, 0, 11, 7, 15];

function slices(total: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = 0;
  for (const size of batchSizes) {
    out.push([at, at + size]);
    at += size;
  }
  assert.equal(at, total);
  return out;
}

describe('ClassificationMetrics', () => {
  const n = 37;
  const c = 10;
  const randn = normal(seededRandom(11));
  const rand = seededRandom(12);
  const ref = Float32Array.from({ length: n * c }, () => 3 * randn());
  const cand = ref.map((v) => v + 1.5 * randn());
  // Labels right about half the time, so that accuracy is neither 0 nor 1.
  const labels = Int32Array.from({ length: n }, (_, i) => (rand() < 0.5 ? order(rows(ref, c)[i])[0] : Math.floor(rand() * c)));
  const want = naiveClassification(rows(cand, c), rows(ref, c), [...labels]);

  test('seeded data in uneven batches matches the naive whole-array computation', () => {
    assert.ok(want.accuracy > 0 && want.accuracy < 1 && want.top1Agreement > 0 && want.top1Agreement < 1 && want.top5 > want.accuracy, 'data exercises every figure');
    const m = new ClassificationMetrics();
    for (const [a, b] of slices(n)) m.add(t(cand.subarray(a * c, b * c), [b - a, c]), t(ref.subarray(a * c, b * c), [b - a, c]), labels.subarray(a, b));
    const got = m.result();
    assert.equal(got.samples, n);
    assert.equal(got.accuracy, want.accuracy);
    assert.equal(got.top5, want.top5);
    assert.equal(got.top1Agreement, want.top1Agreement);
    close(got.kl, want.kl, 1e-12, 'kl');
  });

  test('streaming equals one batch, and trailing 1s in the dims change nothing', () => {
    const whole = new ClassificationMetrics();
    whole.add(t(cand, [n, c, 1, 1]), t(ref, [n, c, 1, 1]), labels);
    const split = new ClassificationMetrics();
    for (const [a, b] of slices(n)) split.add(t(cand.subarray(a * c, b * c), [b - a, c]), t(ref.subarray(a * c, b * c), [b - a, c]), labels.subarray(a, b));
    const w = whole.result();
    const s = split.result();
    assert.deepEqual({ ...w, kl: 0 }, { ...s, kl: 0 });
    close(s.kl, w.kl!, 1e-12, 'kl');
  });

  test('identical outputs agree fully with zero KL', () => {
    const m = new ClassificationMetrics();
    m.add(t(ref, [n, c]), t(ref, [n, c]));
    const got = m.result();
    assert.equal(got.top1Agreement, 1);
    assert.ok(Math.abs(got.kl!) <= 1e-12, `kl ${got.kl}`);
    assert.equal(got.accuracy, undefined, 'no labels, no accuracy');
  });

  test('a hand-computed two-class KL, with a tie going to the lower index', () => {
    const m = new ClassificationMetrics();
    // Sample 0: reference (0, 0) ties and predicts 0, candidate (0, 1) predicts 1.
    //   p = (½, ½), q = (1, e)/(1+e): KL = ½·ln(½(1+e)) + ½·ln((1+e)/(2e)) = ln((1+e)/2) − ½.
    // Sample 1: reference (1, 0) predicts 0, candidate (0, 0) ties and predicts 0 too.
    //   p = (e, 1)/(1+e), q = (½, ½): KL = ln 2 + p₀·ln p₀ + p₁·ln p₁ = ln 2 + e/(1+e) − ln(1+e).
    m.add(t([0, 1, 0, 0], [2, 2]), t([0, 0, 1, 0], [2, 2]));
    const e = Math.E;
    const kl0 = Math.log((1 + e) / 2) - 0.5;
    const kl1 = Math.LN2 + e / (1 + e) - Math.log(1 + e);
    const got = m.result();
    assert.equal(got.top1Agreement, 0.5);
    close(got.kl, (kl0 + kl1) / 2, 1e-12, 'kl');
  });

  test('huge logits stay finite and exact: the softmax is taken with the max subtracted', () => {
    // softmax(1000, 999) = softmax(-1000, -1001) = softmax(1, 0); a plain exp() overflows on the first and
    // underflows to all zeros on the second. Against (½, ½) the KL is ln 2 + e/(1+e) − ln(1+e), as above.
    const want = Math.LN2 + Math.E / (1 + Math.E) - Math.log(1 + Math.E);
    for (const ref of [[1000, 999], [-1000, -1001]]) {
      const m = new ClassificationMetrics();
      m.add(t([5, 5], [1, 2]), t(ref, [1, 2]));
      close(m.result().kl, want, 1e-12, `kl for reference ${ref}`);
    }
    const same = new ClassificationMetrics();
    same.add(t([0, 1, 1000, 0], [2, 2]), t([1000, 1001, 1000, 0], [2, 2]));
    assert.ok(Math.abs(same.result().kl!) <= 1e-12, `kl ${same.result().kl}`);
  });

  test('KL is never negative, even where rounding would make a zero a hair below it', () => {
    // Adding a constant to every logit leaves the softmax as it was; unclamped, some of these rows give -1e-16.
    for (let i = 0; i < 200; i++) {
      const ref = Array.from({ length: 3 }, (_, j) => (i * 0.37 + j * 1.3) % 5);
      const m = new ClassificationMetrics();
      m.add(t(ref.map((v) => v + 0.5), [1, 3]), t(ref, [1, 3]));
      const kl = m.result().kl!;
      assert.ok(kl >= 0 && kl <= 1e-12, `row ${i}: kl ${kl}`);
    }
  });

  test('infinite logits: a masked reference class adds nothing, a class the candidate rules out gives Infinity', () => {
    const kl = (cand: number[], ref: number[]) => {
      const m = new ClassificationMetrics();
      m.add(t(cand, [1, cand.length]), t(ref, [1, ref.length]));
      return m.result().kl;
    };
    close(kl([0, 0, 0], [0, 0, -Infinity]), Math.log(3 / 2), 1e-15, 'p = (½, ½, 0), q = (⅓, ⅓, ⅓)');
    assert.equal(kl([0, -Infinity], [0, 0]), Infinity);
    assert.ok(Number.isNaN(kl([0, NaN], [0, 0])), 'a NaN score makes the KL NaN rather than a plausible number');
  });

  test('argmax ties go to the lowest index, in agreement as in accuracy', () => {
    const agreement = (cand: number[], ref: number[]) => {
      const m = new ClassificationMetrics();
      m.add(t(cand, [1, cand.length]), t(ref, [1, ref.length]));
      return m.result().top1Agreement;
    };
    assert.equal(agreement([3, 3, 3], [1, 0, 0]), 1, 'a three-way tie predicts 0');
    assert.equal(agreement([3, 3, 3], [0, 0, 1]), 0);
    assert.equal(agreement([0, 2, 2], [0, 1, 0]), 1, 'a tie of 1 and 2 predicts 1');
    assert.equal(agreement([NaN, 0, -1], [0, 1, 0]), 1, 'NaN never wins');
    assert.equal(agreement([NaN, NaN], [1, 0]), 1, 'all NaN predicts 0');
  });

  test('labels give a known top-1 and top-5 accuracy; ties rank by index', () => {
    const cases: Array<{ scores: number[]; label: number; top1: boolean; top5: boolean; why: string }> = [
      { scores: [0.1, 0.9, 0.2, 0.3, 0.4, 0.5], label: 1, top1: true, top5: true, why: 'highest' },
      { scores: [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], label: 4, top1: false, top5: true, why: 'fifth' },
      { scores: [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], label: 5, top1: false, top5: false, why: 'sixth' },
      { scores: [1, 1, 1, 1, 1, 1], label: 0, top1: true, top5: true, why: 'first of a six-way tie' },
      { scores: [1, 1, 1, 1, 1, 1], label: 1, top1: false, top5: true, why: 'second of a six-way tie' },
      { scores: [1, 1, 1, 1, 1, 1], label: 5, top1: false, top5: false, why: 'last of a six-way tie' },
      { scores: [0, 0, 0, 0, 0, 7], label: 3, top1: false, top5: true, why: 'fourth of a tie behind a clear winner' },
      { scores: [0, 0, 0, 0, 0, 7], label: 4, top1: false, top5: false, why: 'fifth of a tie behind a clear winner' },
      { scores: [NaN, 0, -1, -2, -3, -4], label: 1, top1: true, top5: true, why: 'NaN never wins' },
      { scores: [NaN, 0, -1, -2, -3, -4], label: 0, top1: false, top5: false, why: 'NaN ranks last' },
    ];
    for (const k of cases) {
      const m = new ClassificationMetrics();
      m.add(t(k.scores, [1, 6]), undefined, Int32Array.from([k.label]));
      assert.deepEqual(m.result(), { samples: 1, accuracy: +k.top1, top5: +k.top5 }, k.why);
    }
    const all = new ClassificationMetrics();
    all.add(t(cases.flatMap((k) => k.scores), [cases.length, 6]), undefined, Int32Array.from(cases, (k) => k.label));
    assert.deepEqual(all.result(), { samples: 10, accuracy: 3 / 10, top5: 6 / 10 });
  });

  test('top-5 is left out below 5 classes', () => {
    const m = new ClassificationMetrics();
    m.add(t([1, 0, 0, 0, 0, 1, 0, 0], [2, 4]), undefined, Int32Array.from([0, 2]));
    assert.deepEqual(m.result(), { samples: 2, accuracy: 0.5 });
  });

  test('each figure averages over the batches that fed it', () => {
    const m = new ClassificationMetrics();
    m.add(t([1, 0, 0, 1], [2, 2]), undefined, Int32Array.from([0, 0]));
    m.add(t([1, 0], [1, 2]), t([0, 1], [1, 2]));
    const got = m.result();
    assert.equal(got.samples, 3);
    assert.equal(got.accuracy, 0.5);
    assert.equal(got.top1Agreement, 0);
  });

  test('nothing added, or only empty batches, gives just the sample count', () => {
    assert.deepEqual(new ClassificationMetrics().result(), { samples: 0 });
    const m = new ClassificationMetrics();
    m.add(t([], [0, 10]), t([], [0, 10]), new Int32Array(0));
    // Not accuracy: NaN from 0/0.
    assert.deepEqual(m.result(), { samples: 0 });
  });

  test('shapes and labels that do not fit are clear errors, and leave the figures unchanged', () => {
    const m = new ClassificationMetrics();
    m.add(t([1, 0, 0, 1], [2, 2]), t([1, 0, 0, 1], [2, 2]), Int32Array.from([0, 1]));
    const before = m.result();
    assert.throws(() => m.add(t([1, 0, 0], [2, 2])), /dims \[2, 2\] hold 4 elements but the data has 3/);
    assert.throws(() => m.add(t([1, 0, 0, 1], [2, 2]), t([1, 0, 0, 1, 0, 0], [2, 3])), /reference output \[2, 3\] does not match candidate output \[2, 2\]/);
    assert.throws(() => m.add(t([1, 0, 0, 1], [2, 2]), t([1, 0, 0, 1], [1, 4])), /reference output/);
    assert.throws(() => m.add(t([1, 0, 0, 1], [2, 2]), undefined, Int32Array.from([0])), /1 labels for a batch of 2 samples/);
    assert.throws(() => m.add(t([1, 0, 0, 1], [2, 2]), undefined, Int32Array.from([0, 2])), /label 2 of sample 1 .* outside the model's 2 classes/);
    assert.throws(() => m.add(t([1, 0, 0], [1, 3])), /3 classes in this batch but 2 before/);
    assert.throws(() => m.add(t([1, 0, 0], [3])), /need \[N, C\]/);
    assert.throws(() => new ClassificationMetrics().add(t([1, 0], [2, 1])), /at least 2/);
    assert.deepEqual(m.result(), before);
    m.add(t([0, 1], [1, 2]), t([0, 1], [1, 2]), Int32Array.from([1]));
    assert.deepEqual({ ...m.result(), kl: 0 }, { samples: 3, accuracy: 1, top1Agreement: 1, kl: 0 }, 'still usable after the errors');
    // A failed first batch must not fix the number of classes either.
    const fresh = new ClassificationMetrics();
    assert.throws(() => fresh.add(t([1, 0, 0], [1, 3]), t([1, 0], [1, 2])), /reference output/);
    fresh.add(t([1, 0], [1, 2]));
    assert.deepEqual(fresh.result(), { samples: 1 });
  });
});

function naiveComparison(cand: number[], ref: number[]) {
  let dot = 0;
  let rr = 0;
  let cc = 0;
  let ee = 0;
  let maxAbs = 0;
  let sumAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    dot += ref[i] * cand[i];
    rr += ref[i] ** 2;
    cc += cand[i] ** 2;
    ee += (ref[i] - cand[i]) ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(ref[i] - cand[i]));
    sumAbs += Math.abs(ref[i] - cand[i]);
  }
  return { cosine: dot / Math.sqrt(rr * cc), sqnrDb: 10 * Math.log10(rr / ee), maxAbs, meanAbs: sumAbs / ref.length };
}

describe('OutputComparison', () => {
  test('seeded outputs of several kinds in uneven batches match the naive whole-array computation', () => {
    const randn = normal(seededRandom(21));
    const perSample: Record<string, number[]> = { boxes: [25, 4], scores: [25], image: [3, 8, 8] };
    const noise: Record<string, number> = { boxes: 0.01, scores: 0.2, image: 0.05 };
    const n = 37;
    const cmp = new OutputComparison();
    const whole = new OutputComparison();
    for (const [name, shape] of Object.entries(perSample)) {
      const size = shape.reduce((a, b) => a * b, 1);
      const ref = Float32Array.from({ length: n * size }, () => 10 + randn() * 4);
      const cand = ref.map((v) => v + randn() * noise[name]);
      for (const [a, b] of slices(n)) cmp.add(name, t(cand.subarray(a * size, b * size), [b - a, ...shape]), t(ref.subarray(a * size, b * size), [b - a, ...shape]));
      whole.add(name, t(cand, [n, ...shape]), t(ref, [n, ...shape]));
      const want = naiveComparison([...cand], [...ref]);
      for (const got of [cmp.result()[name], whole.result()[name]]) {
        close(got.cosine, want.cosine, 1e-12, `${name} cosine`);
        close(got.sqnrDb, want.sqnrDb, 1e-10, `${name} sqnr`);
        assert.equal(got.maxAbs, want.maxAbs, `${name} maxAbs`);
        close(got.meanAbs, want.meanAbs, 1e-12, `${name} meanAbs`);
        assert.equal(got.nonFinite, 0);
        assert.equal(got.elements, n * size);
      }
      assert.ok(want.cosine < 1 && want.sqnrDb > 0 && Number.isFinite(want.sqnrDb), `${name}: data is noisy`);
    }
    assert.deepEqual(Object.keys(cmp.result()), ['boxes', 'scores', 'image']);
  });

  test('a hand-computed case: 20 dB', () => {
    const cmp = new OutputComparison();
    // Across two batches: Σref² = 9 + 16 + 0 + 16 = 41 and Σ(ref−cand)² = 1 + 0.25; the larger error comes first.
    cmp.add('y', t([3, 5], [1, 2]), t([3, 4], [1, 2]));
    cmp.add('y', t([0, 4.5], [1, 2]), t([0, 4], [1, 2]));
    const one = new OutputComparison();
    one.add('y', t([3, 4.5], [2]), t([3, 4], [2]));
    const r = one.result().y;
    close(r.sqnrDb, 20, 1e-12, 'sqnr: 25 / 0.25 = 100');
    close(r.cosine, 27 / (5 * Math.sqrt(29.25)), 1e-15, 'cosine');
    assert.equal(r.maxAbs, 0.5);
    assert.equal(r.meanAbs, 0.25);
    const two = cmp.result().y;
    close(two.sqnrDb, 10 * Math.log10(41 / 1.25), 1e-12, 'two batches');
    assert.deepEqual([two.maxAbs, two.meanAbs, two.elements], [1, 1.5 / 4, 4]);
  });

  test('identical outputs: cosine 1, SQNR Infinity, no error', () => {
    const randn = normal(seededRandom(5));
    const x = Float32Array.from({ length: 1001 }, () => randn() * 1e3);
    const cmp = new OutputComparison();
    cmp.add('out', t(x, [7, 11, 13]), t(x, [7, 11, 13]));
    assert.deepEqual(cmp.result(), { out: { cosine: 1, sqnrDb: Infinity, maxAbs: 0, meanAbs: 0, nonFinite: 0, elements: 1001 } });
  });

  test('an all-zero reference: Infinity when the candidate is zero too, -Infinity and cosine 0 when not', () => {
    const cmp = new OutputComparison();
    cmp.add('same', t([0, 0, 0], [3]), t([0, 0, 0], [3]));
    cmp.add('off', t([0, 1, 0], [3]), t([0, 0, 0], [3]));
    cmp.add('zeroCand', t([0, 0], [2]), t([1, -1], [2]));
    const r = cmp.result();
    assert.equal(r.same.sqnrDb, Infinity);
    assert.equal(r.same.cosine, 1);
    assert.equal(r.off.sqnrDb, -Infinity);
    assert.equal(r.off.cosine, 0);
    assert.equal(r.zeroCand.cosine, 0);
    close(r.zeroCand.sqnrDb, 0, 1e-15, 'signal = noise');
  });

  test('NaN and infinities are left out of the other figures; those in the candidate are counted', () => {
    const cmp = new OutputComparison();
    cmp.add('y', t([3, NaN, 4.5, Infinity, -Infinity, 5, -1], [7]), t([3, 1, 4, 2, 2, Infinity, NaN], [7]));
    const r = cmp.result().y;
    assert.equal(r.nonFinite, 3);
    assert.equal(r.elements, 7);
    close(r.sqnrDb, 20, 1e-12, 'sqnr over the finite pairs');
    assert.equal(r.meanAbs, 0.25);
  });

  test('empty outputs give NaN figures, not a vacuous match; nothing added gives {}', () => {
    assert.deepEqual(new OutputComparison().result(), {});
    const cmp = new OutputComparison();
    cmp.add('boxes', t([], [0, 4]), t([], [0, 4]));
    const r = cmp.result().boxes;
    assert.deepEqual([r.elements, r.nonFinite], [0, 0]);
    assert.ok([r.cosine, r.sqnrDb, r.maxAbs, r.meanAbs].every(Number.isNaN));
  });

  test('shapes that differ are a clear error naming the output', () => {
    const cmp = new OutputComparison();
    assert.throws(() => cmp.add('boxes', t([1, 2, 3, 4], [1, 4]), t([1, 2, 3, 4, 5, 6, 7, 8], [2, 4])), /output "boxes": candidate shape \[1, 4\] differs from reference shape \[2, 4\]/);
    assert.throws(() => cmp.add('boxes', t([1, 2, 3, 4], [2, 2]), t([1, 2, 3, 4], [4, 1])), /differs/);
    assert.throws(() => cmp.add('boxes', t([1, 2, 3], [1, 4]), t([1, 2, 3, 4], [1, 4])), /candidate output "boxes": dims \[1, 4\] hold 4 elements but the data has 3/);
    assert.deepEqual(cmp.result(), {}, 'a failed add records nothing');
  });
});

describe('jsonNumber', () => {
  test('keeps infinities apart from NaN in JSON', () => {
    assert.equal(jsonNumber(Infinity), 'inf');
    assert.equal(jsonNumber(-Infinity), '-inf');
    assert.equal(jsonNumber(NaN), null);
    assert.equal(jsonNumber(0.25), 0.25);
    assert.equal(jsonNumber(0), 0);
    const self = new OutputComparison();
    self.add('y', t([1, 2], [2]), t([1, 2], [2]));
    assert.equal(JSON.stringify({ sqnrDb: jsonNumber(self.result().y.sqnrDb) }), '{"sqnrDb":"inf"}');
  });
});

describe('isClassifierOutput', () => {
  test('[N, C] after trailing 1s, with C >= 2', () => {
    for (const dims of [[8, 1000], [1, 1000], [8, 10, 1, 1], [8, 2], ['N', 1000], [null, 10, 1]]) assert.equal(isClassifierOutput(dims), true, JSON.stringify(dims));
    for (const dims of [[], [1000], [8, 1], [8, 1, 1, 1], [8, 3, 224, 224], [8, 10, 4], [8, 'C'], [8, 0]]) assert.equal(isClassifierOutput(dims), false, JSON.stringify(dims));
  });
});

describe('latencyStats', () => {
  test('median, nearest-rank p90, mean and extremes', () => {
    assert.deepEqual(latencyStats([5, 1, 3, 2, 4]), { median: 3, p90: 5, mean: 3, min: 1, max: 5, runs: 5 });
    assert.deepEqual(latencyStats([4, 1, 3, 2]), { median: 2.5, p90: 4, mean: 2.5, min: 1, max: 4, runs: 4 });
    // Nearest rank: the ⌈0.9·n⌉-th smallest; 10 runs → the 9th, 20 runs → the 18th, 11 runs → the 10th.
    const shuffled = (n: number) => Array.from({ length: n }, (_, i) => ((i * 7) % n) + 1);
    assert.equal(latencyStats(shuffled(10)).p90, 9);
    assert.equal(latencyStats(shuffled(20)).p90, 18);
    assert.equal(latencyStats(shuffled(11)).p90, 10);
    assert.deepEqual(latencyStats([7.5]), { median: 7.5, p90: 7.5, mean: 7.5, min: 7.5, max: 7.5, runs: 1 });
  });

  test('sorts numerically and leaves its input alone', () => {
    const times = [10, 9, 100, 2];
    const r = latencyStats(times);
    assert.deepEqual([r.min, r.median, r.max], [2, 9.5, 100]);
    assert.deepEqual(times, [10, 9, 100, 2]);
  });

  test('no runs gives NaN; a bad time throws', () => {
    const r = latencyStats([]);
    assert.equal(r.runs, 0);
    assert.ok([r.median, r.p90, r.mean, r.min, r.max].every(Number.isNaN));
    assert.throws(() => latencyStats([1, NaN]), /NaN is not a run time/);
    assert.throws(() => latencyStats([1, -2]), /-2 is not a run time/);
  });
});
