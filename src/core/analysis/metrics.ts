import { InputError } from '../errors';

/**
 * Streaming metrics that compare a candidate model's outputs with labels or with a reference model's outputs,
 * fed batch by batch so that an evaluation never holds a whole dataset's outputs. Everything is summed in
 * float64 whatever the outputs' precision. A shape disagreement between the two models, or labels that do not
 * fit the outputs, is an InputError (the user picked the models and the data); an array whose length does not
 * match its own dims is a caller's bug and a plain Error. A failed `add` leaves the accumulator unchanged.
 */

/** One model output as it comes back from a run: flat data and its dims, the first axis being the batch. */
export interface OutputTensor {
  data: Float32Array | Float64Array;
  dims: readonly number[];
}

/** What ClassificationMetrics reports; each figure is present only when something fed it. */
export interface ClassificationResult {
  /** Samples seen, with or without labels or a reference. */
  samples: number;
  /** Top-1 accuracy over the samples that came with labels. */
  accuracy?: number;
  /** Top-5 accuracy over the samples that came with labels; only when there are at least 5 classes. */
  top5?: number;
  /** Fraction of the samples with a reference whose top-1 class matches the reference's. */
  top1Agreement?: number;
  /**
   * Mean over samples of KL(softmax(reference) || softmax(candidate)), in nats. Infinity when the candidate
   * rules out (a -Infinity score) a class that the reference does not; NaN when any score was NaN.
   */
  kl?: number;
}

/**
 * Accuracy, top-1 agreement and KL divergence over a classifier's scores of shape [N, C]. Every axis after the
 * first is folded into C, so [N, C, 1, 1] counts as [N, C]; whether an output is class scores at all is for
 * isClassifierOutput to judge. A rank-1 output [N] is rejected rather than guessed at: it could be N
 * samples of one score or one sample of N scores, and a caller that knows which can pass dims [1, C].
 *
 * The predicted class is the first index of the highest score, so ties go to the lowest index, and NaN never
 * wins (an all-NaN row predicts class 0). Top-5 ranks ties the same way. Each figure is averaged over the
 * samples that came with what it needs (labels, a reference), so batches may differ in what they bring.
 */
export class ClassificationMetrics {
  private samples = 0;
  private classes: number | undefined;
  private labelled = 0;
  private top1Correct = 0;
  private top5Correct = 0;
  private referenced = 0;
  private agreements = 0;
  private klSum = 0;

  /** Adds one batch of candidate scores, with the reference's scores and the true labels when there are any. */
  add(candidate: OutputTensor, reference?: OutputTensor, labels?: Int32Array): void {
    const { n, c } = classifierShape(candidate, 'candidate');
    if (this.classes !== undefined && c !== this.classes) {
      throw new InputError(undefined, `candidate output has ${c} classes in this batch but ${this.classes} before`);
    }
    if (reference) {
      const ref = classifierShape(reference, 'reference');
      if (ref.n !== n || ref.c !== c) {
        throw new InputError(undefined, `reference output [${reference.dims.join(', ')}] does not match candidate output [${candidate.dims.join(', ')}]: want ${n} samples of ${c} classes`);
      }
    }
    if (labels) {
      if (labels.length !== n) throw new InputError(undefined, `${labels.length} labels for a batch of ${n} samples`);
      for (let i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= c) throw new InputError(undefined, `label ${labels[i]} of sample ${i} in this batch is outside the model's ${c} classes (0..${c - 1})`);
      }
    }
    this.classes = c;
    this.samples += n;

    const cand = candidate.data;
    for (let s = 0; s < n; s++) {
      const at = s * c;
      if (labels) {
        const label = labels[s];
        const rank = rankOf(cand, at, c, label);
        if (rank === 0) this.top1Correct++;
        if (rank < 5) this.top5Correct++;
      }
      if (reference) {
        if (argmax(cand, at, c) === argmax(reference.data, at, c)) this.agreements++;
        this.klSum += klDivergence(reference.data, cand, at, c);
      }
    }
    if (labels) this.labelled += n;
    if (reference) this.referenced += n;
  }

  /** The figures so far; with nothing added, just `{samples: 0}`. */
  result(): ClassificationResult {
    const out: ClassificationResult = { samples: this.samples };
    if (this.labelled > 0) {
      out.accuracy = this.top1Correct / this.labelled;
      // With fewer than 5 classes every label is in the top 5, which says nothing.
      if (this.classes! >= 5) out.top5 = this.top5Correct / this.labelled;
    }
    if (this.referenced > 0) {
      out.top1Agreement = this.agreements / this.referenced;
      out.kl = this.klSum / this.referenced;
    }
    return out;
  }
}

/** How one output compares with the reference's output of the same name, over all batches. */
export interface OutputComparisonResult {
  /** Cosine similarity of the whole output as one vector: 1 when identical, 0 when exactly one side is all zeros. */
  cosine: number;
  /** 10·log10(Σref² / Σ(ref−cand)²): Infinity when identical, -Infinity when the reference is all zeros and the candidate is not. */
  sqnrDb: number;
  maxAbs: number;
  meanAbs: number;
  /** Candidate elements that are NaN or ±Infinity. */
  nonFinite: number;
  /** Elements compared in all, non-finite ones included. */
  elements: number;
}

/**
 * Cosine similarity, SQNR and absolute errors between a candidate's and a reference's outputs, per output name,
 * for any kind of output (detector boxes, OCR sequences, super-resolved images). Sums are float64 dot products
 * and norms accumulated across batches, so the result is that of one long vector per output.
 *
 * A pair in which either side is NaN or infinite is counted (in `nonFinite` when the candidate is at fault)
 * and left out of the other figures, as tensorStats does, so that one bad element does not turn every figure
 * into NaN; a caller must therefore look at `nonFinite` before trusting the rest. When no finite pair has been
 * seen (an output that was always empty, say), the figures are NaN rather than a vacuous "identical".
 */
export class OutputComparison {
  private readonly sums = new Map<string, Sums>();

  /** Adds one batch of one output; candidate and reference must have the same dims. */
  add(name: string, candidate: OutputTensor, reference: OutputTensor): void {
    checkLength(candidate, `candidate output "${name}"`);
    checkLength(reference, `reference output "${name}"`);
    if (!sameDims(candidate.dims, reference.dims)) {
      throw new InputError(undefined, `output "${name}": candidate shape [${candidate.dims.join(', ')}] differs from reference shape [${reference.dims.join(', ')}]`);
    }
    let s = this.sums.get(name);
    if (!s) {
      s = { dot: 0, refSq: 0, candSq: 0, errSq: 0, maxAbs: 0, sumAbs: 0, compared: 0, nonFinite: 0, elements: 0 };
      this.sums.set(name, s);
    }
    const cand = candidate.data;
    const ref = reference.data;
    const len = cand.length;
    // Locals rather than fields in the hot loop: a big super-resolution output is millions of elements a batch.
    let dot = 0;
    let refSq = 0;
    let candSq = 0;
    let errSq = 0;
    let maxAbs = s.maxAbs;
    let sumAbs = 0;
    let compared = 0;
    let nonFinite = 0;
    for (let i = 0; i < len; i++) {
      const c = cand[i];
      const r = ref[i];
      if (!Number.isFinite(c)) {
        nonFinite++;
        continue;
      }
      if (!Number.isFinite(r)) continue;
      const d = r - c;
      const a = Math.abs(d);
      dot += r * c;
      refSq += r * r;
      candSq += c * c;
      errSq += d * d;
      sumAbs += a;
      if (a > maxAbs) maxAbs = a;
      compared++;
    }
    s.dot += dot;
    s.refSq += refSq;
    s.candSq += candSq;
    s.errSq += errSq;
    s.sumAbs += sumAbs;
    s.maxAbs = maxAbs;
    s.compared += compared;
    s.nonFinite += nonFinite;
    s.elements += len;
  }

  /** The figures per output name, in the order the names were first added. */
  result(): Record<string, OutputComparisonResult> {
    const out: Record<string, OutputComparisonResult> = {};
    for (const [name, s] of this.sums) out[name] = finishComparison(s);
    return out;
  }
}

/**
 * A number as JSON can carry it: ±Infinity become the strings 'inf' and '-inf', and NaN becomes null (what
 * JSON.stringify would write for all three, losing the difference). The CLI writes every metric through it,
 * so that `eval --reference` of a model against itself reports `"sqnrDb": "inf"` rather than null.
 */
export function jsonNumber(x: number): number | 'inf' | '-inf' | null {
  if (Number.isNaN(x)) return null;
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  return x;
}

/**
 * Whether classification metrics make sense for an output of these dims: after dropping trailing 1s, exactly
 * [N, C] with C >= 2. The batch axis may be symbolic (a model's declared shape); the others must be known.
 */
export function isClassifierOutput(dims: ReadonlyArray<number | string | null>): boolean {
  let rank = dims.length;
  while (rank > 2 && dims[rank - 1] === 1) rank--;
  if (rank !== 2) return false;
  const c = dims[1];
  return typeof c === 'number' && c >= 2;
}

/** Latency figures over timed runs, in milliseconds. */
export interface LatencyStats {
  /** The middle run, or the mean of the two middle runs when there is an even number. */
  median: number;
  /** Nearest-rank 90th percentile: the ⌈0.9·runs⌉-th fastest run, always one that was measured. */
  p90: number;
  mean: number;
  min: number;
  max: number;
  runs: number;
}

/**
 * Median, nearest-rank p90, mean and extremes of run times in milliseconds. Nearest rank is used rather than
 * interpolation so that p90 is a time that actually happened; with fewer than 10 runs it is the slowest run.
 * No runs gives NaN figures and `runs: 0`; a non-finite or negative time is a caller's bug and throws.
 */
export function latencyStats(samplesMs: readonly number[]): LatencyStats {
  const runs = samplesMs.length;
  if (runs === 0) return { median: NaN, p90: NaN, mean: NaN, min: NaN, max: NaN, runs: 0 };
  for (const t of samplesMs) {
    if (!Number.isFinite(t) || t < 0) throw new Error(`latencyStats: ${t} is not a run time in milliseconds`);
  }
  const sorted = Float64Array.from(samplesMs).sort();
  const mid = runs >> 1;
  const median = runs % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  let sum = 0;
  for (const t of sorted) sum += t;
  return { median, p90: sorted[Math.ceil(0.9 * runs) - 1], mean: sum / runs, min: sorted[0], max: sorted[runs - 1], runs };
}

interface Sums {
  dot: number;
  refSq: number;
  candSq: number;
  errSq: number;
  maxAbs: number;
  sumAbs: number;
  compared: number;
  nonFinite: number;
  elements: number;
}

function finishComparison(s: Sums): OutputComparisonResult {
  const { nonFinite, elements } = s;
  if (s.compared === 0) return { cosine: NaN, sqnrDb: NaN, maxAbs: NaN, meanAbs: NaN, nonFinite, elements };
  // Identical outputs are exactly 1 and Infinity: sqrt(a)·sqrt(a) need not round back to a.
  if (s.errSq === 0) return { cosine: 1, sqnrDb: Infinity, maxAbs: 0, meanAbs: 0, nonFinite, elements };
  const norms = Math.sqrt(s.refSq) * Math.sqrt(s.candSq);
  const cosine = norms === 0 ? 0 : Math.min(1, Math.max(-1, s.dot / norms));
  return { cosine, sqnrDb: 10 * Math.log10(s.refSq / s.errSq), maxAbs: s.maxAbs, meanAbs: s.sumAbs / s.compared, nonFinite, elements };
}

function checkLength(t: OutputTensor, what: string): void {
  let count = 1;
  for (const d of t.dims) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what}: dims [${t.dims.join(', ')}] are not a shape`);
    count *= d;
  }
  if (count !== t.data.length) throw new Error(`${what}: dims [${t.dims.join(', ')}] hold ${count} elements but the data has ${t.data.length}`);
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Samples and classes of a classifier output; trailing axes are folded into the class axis. */
function classifierShape(t: OutputTensor, what: string): { n: number; c: number } {
  checkLength(t, `${what} output`);
  if (t.dims.length < 2) {
    throw new InputError(undefined, `${what} output has dims [${t.dims.join(', ')}]; classification metrics need [N, C] (give a single sample as [1, C])`);
  }
  const n = t.dims[0];
  let c = 1;
  for (let i = 1; i < t.dims.length; i++) c *= t.dims[i];
  // One class makes top-1 always right and KL always 0: a sigmoid score wants OutputComparison instead.
  if (c < 2) throw new InputError(undefined, `${what} output has dims [${t.dims.join(', ')}]: ${c} class, and classification metrics need at least 2`);
  return { n, c };
}

/** NaN ranks below everything, -Infinity included, so a broken score is never the prediction. */
function key(v: number): number {
  return Number.isNaN(v) ? -Infinity : v;
}

function argmax(x: ArrayLike<number>, at: number, c: number): number {
  let best = 0;
  let bestKey = key(x[at]);
  for (let j = 1; j < c; j++) {
    const k = key(x[at + j]);
    if (k > bestKey) {
      best = j;
      bestKey = k;
    }
  }
  return best;
}

/** 0-based rank of class `label` with ties to the lower index, in O(C) and without sorting the row. */
function rankOf(x: ArrayLike<number>, at: number, c: number, label: number): number {
  const k = key(x[at + label]);
  let rank = 0;
  for (let j = 0; j < c; j++) {
    const kj = key(x[at + j]);
    if (kj > k || (kj === k && j < label)) rank++;
  }
  return rank;
}

/** log Σ exp(x), shifted by the max so that large logits neither overflow nor lose the small terms. */
function logSumExp(x: ArrayLike<number>, at: number, c: number): number {
  let m = -Infinity;
  for (let j = 0; j < c; j++) if (x[at + j] > m) m = x[at + j];
  let sum = 0;
  for (let j = 0; j < c; j++) sum += Math.exp(x[at + j] - m);
  return m + Math.log(sum);
}

/** KL(softmax(ref) || softmax(cand)) of one sample from log-softmaxes in float64. */
function klDivergence(ref: ArrayLike<number>, cand: ArrayLike<number>, at: number, c: number): number {
  const lseRef = logSumExp(ref, at, c);
  const lseCand = logSumExp(cand, at, c);
  let kl = 0;
  for (let j = 0; j < c; j++) {
    const logP = ref[at + j] - lseRef;
    const p = Math.exp(logP);
    // 0·log(0/q) is 0 by continuity; skipping it also avoids 0·(-Infinity) = NaN when q is 0 too.
    if (p === 0) continue;
    kl += p * (logP - (cand[at + j] - lseCand));
  }
  // KL is never negative, but rounding can leave a near-zero sum a hair below 0; NaN passes through.
  return Math.max(0, kl);
}
