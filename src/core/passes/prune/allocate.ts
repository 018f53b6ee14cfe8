import type { LayerSensitivity } from '../../../protocol/analysis';

/** One layer's measured pruning curve: cost at each sparsity level, levels ascending. */
export interface CostCurve {
  /** Elements of the layer's weight. */
  params: number;
  sparsities: number[];
  costs: number[];
}

/** Per-layer sparsities chosen by `allocateSparsity`, with the cost the curves predict for them. */
export interface Allocation {
  sparsities: number[];
  predictedCost: number[];
  /** Fraction of all the layers' elements the allocation prunes (below the target when the bounds forbid more). */
  overall: number;
}

/**
 * A layer's cost curve from its sensitivity sweep. The cost is the sweep's metric (accuracy drop with labels)
 * plus 1e-4 x (1 - cosine): on a few thousand samples the accuracy drop is quantised (0.1 pt steps on 1,000)
 * and flat at zero for the first levels of every layer, and the cosine term ranks those ties by how much the
 * outputs actually moved, without ever outweighing one misclassified sample.
 */
export function costCurve(s: LayerSensitivity): CostCurve | undefined {
  const points = [...(s.prune ?? [])].sort((a, b) => a.sparsity - b.sparsity);
  if (points.length === 0) return undefined;
  if (points[0].sparsity > 0) points.unshift({ sparsity: 0, metric: 0, cosine: 1 });
  return { params: s.params, sparsities: points.map((p) => p.sparsity), costs: points.map((p) => p.metric + 1e-4 * (1 - p.cosine)) };
}

/** The curve's cost at sparsity `x`, linear between levels and held flat past the last one. */
export function costAt(c: CostCurve, x: number): number {
  const s = c.sparsities;
  if (x <= s[0]) return c.costs[0];
  for (let i = 1; i < s.length; i++) {
    if (x <= s[i]) return c.costs[i - 1] + ((c.costs[i] - c.costs[i - 1]) * (x - s[i - 1])) / (s[i] - s[i - 1]);
  }
  return c.costs[s.length - 1];
}

/**
 * Chooses per-layer sparsities that prune `target` of all the layers' elements at the least total predicted
 * cost: every layer starts at `min`, then the greedy repeatedly advances the layer whose next step (to its next
 * measured level, or to `max`) costs least per element removed, taking only part of the last step so the total
 * lands on the target. Between levels the cost is linear, so a partial step costs its share. A layer never goes
 * past its last measured level (no extrapolation) nor outside [min, max].
 */
export function allocateSparsity(curves: CostCurve[], target: number, min: number, max: number): Allocation {
  const total = curves.reduce((a, c) => a + c.params, 0);
  const goal = target * total;
  const cap = curves.map((c) => Math.min(max, c.sparsities[c.sparsities.length - 1]));
  const s = curves.map((_, i) => Math.min(min, cap[i]));
  let removed = s.reduce((a, x, i) => a + x * curves[i].params, 0);
  /** The next stop of layer i above its current sparsity: its next level, or its cap. */
  const next = (i: number) => Math.min(cap[i], curves[i].sparsities.find((l) => l > s[i] + 1e-12) ?? cap[i]);
  while (removed < goal - 1e-9) {
    let best = -1;
    let bestRate = Infinity;
    for (let i = 0; i < curves.length; i++) {
      const to = next(i);
      if (to <= s[i] + 1e-12) continue;
      const rate = (costAt(curves[i], to) - costAt(curves[i], s[i])) / ((to - s[i]) * curves[i].params);
      // Ties (flat curves) go to the bigger layer: fewer, larger steps reach the goal with less churn.
      if (rate < bestRate - 1e-15 || (Math.abs(rate - bestRate) <= 1e-15 && best >= 0 && curves[i].params > curves[best].params)) {
        best = i;
        bestRate = rate;
      }
    }
    if (best < 0) break;
    const to = next(best);
    const gain = (to - s[best]) * curves[best].params;
    if (removed + gain >= goal) {
      s[best] += (goal - removed) / curves[best].params;
      removed = goal;
    } else {
      s[best] = to;
      removed += gain;
    }
  }
  return { sparsities: s, predictedCost: s.map((x, i) => costAt(curves[i], x)), overall: total ? removed / total : 0 };
}
