/**
 * Optimizers that update Float32Array weights in place from their gradients: SGD (momentum, weight decay) and
 * Adam/AdamW. The learning rate is passed per step so schedules stay outside.
 */

/** Optimizer settings. */
export interface OptimizerOptions {
  kind: 'sgd' | 'adam' | 'adamw';
  /** SGD momentum (default 0.9). */
  momentum?: number;
  /** Nesterov momentum for SGD (default false). */
  nesterov?: boolean;
  /** L2 weight decay: added to the gradient for SGD and Adam, decoupled for AdamW (default 0). */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

/** An optimizer over a fixed list of weight arrays. */
export interface Optimizer {
  /** Applies one update with learning rate `lr`; `grads[i]` matches `weights[i]`. */
  step(weights: Float32Array[], grads: ArrayLike<number>[], lr: number): void;
  /** Steps taken. */
  readonly steps: number;
}

/** Builds an optimizer. */
export function createOptimizer(o: OptimizerOptions): Optimizer {
  return o.kind === 'sgd' ? sgd(o) : adam(o);
}

function sgd(o: OptimizerOptions): Optimizer {
  const momentum = o.momentum ?? 0.9;
  const wd = o.weightDecay ?? 0;
  const nesterov = o.nesterov ?? false;
  let velocity: Float32Array[] | undefined;
  let steps = 0;
  return {
    get steps() {
      return steps;
    },
    step(weights, grads, lr) {
      velocity ??= weights.map((w) => new Float32Array(w.length));
      for (let k = 0; k < weights.length; k++) {
        const w = weights[k];
        const g = grads[k];
        const v = velocity[k];
        for (let i = 0; i < w.length; i++) {
          const gi = g[i] + wd * w[i];
          // PyTorch's form: v = μv + g; w -= lr·v (or lr·(g + μv) with Nesterov); the first step takes v = g.
          v[i] = momentum * v[i] + gi;
          w[i] -= lr * (nesterov ? gi + momentum * v[i] : v[i]);
        }
      }
      steps++;
    },
  };
}

function adam(o: OptimizerOptions): Optimizer {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  const eps = o.eps ?? 1e-8;
  const wd = o.weightDecay ?? 0;
  const decoupled = o.kind === 'adamw';
  let m: Float32Array[] | undefined;
  let v: Float32Array[] | undefined;
  let steps = 0;
  return {
    get steps() {
      return steps;
    },
    step(weights, grads, lr) {
      m ??= weights.map((w) => new Float32Array(w.length));
      v ??= weights.map((w) => new Float32Array(w.length));
      steps++;
      const c1 = 1 - b1 ** steps;
      const c2 = 1 - b2 ** steps;
      for (let k = 0; k < weights.length; k++) {
        const w = weights[k];
        const g = grads[k];
        const mk = m[k];
        const vk = v[k];
        for (let i = 0; i < w.length; i++) {
          if (decoupled) w[i] -= lr * wd * w[i];
          const gi = decoupled ? g[i] : g[i] + wd * w[i];
          mk[i] = b1 * mk[i] + (1 - b1) * gi;
          vk[i] = b2 * vk[i] + (1 - b2) * gi * gi;
          w[i] -= (lr * (mk[i] / c1)) / (Math.sqrt(vk[i] / c2) + eps);
        }
      }
    },
  };
}

/** Learning-rate schedule settings. */
export interface ScheduleOptions {
  kind: 'constant' | 'cosine';
  /** Linear warm-up steps from 0 to the base rate (default 0). */
  warmupSteps?: number;
  /** Cosine: the floor as a fraction of the base rate (default 0). */
  minFactor?: number;
}

/** The learning rate at `step` (0-based) of `total` steps. */
export function learningRate(base: number, step: number, total: number, s: ScheduleOptions): number {
  const warm = s.warmupSteps ?? 0;
  if (step < warm) return (base * (step + 1)) / warm;
  if (s.kind === 'constant') return base;
  const span = Math.max(1, total - warm);
  const t = Math.min(1, (step - warm) / span);
  const floor = s.minFactor ?? 0;
  return base * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * t)));
}
