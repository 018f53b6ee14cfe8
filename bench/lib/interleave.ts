import type * as ort from 'onnxruntime-node';

/**
 * Times two sessions on the same feeds, alternating run by run so that drift in a shared machine's load hits
 * both alike, after `warmup` runs of each. Returns each side's per-run milliseconds, in run order.
 */
export async function interleave(a: ort.InferenceSession, b: ort.InferenceSession, feeds: Record<string, ort.Tensor>, runs: number, warmup = 5): Promise<{ a: number[]; b: number[] }> {
  for (let i = 0; i < warmup; i++) {
    await a.run(feeds);
    await b.run(feeds);
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < runs; i++) {
    let s = performance.now();
    await a.run(feeds);
    ta.push(performance.now() - s);
    s = performance.now();
    await b.run(feeds);
    tb.push(performance.now() - s);
  }
  return { a: ta, b: tb };
}
