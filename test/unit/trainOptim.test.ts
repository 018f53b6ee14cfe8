import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createOptimizer, learningRate } from '../../src/core/train/optim';

const close = (got: ArrayLike<number>, want: number[], tol = 1e-6) => {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= tol, `[${i}] ${got[i]} != ${want[i]}`);
};

describe('optimizers (hand-computed steps)', () => {
  test('SGD with momentum and weight decay', () => {
    const w = Float32Array.from([1, -2]);
    const opt = createOptimizer({ kind: 'sgd', momentum: 0.9, weightDecay: 0.1 });
    // Step 1: g' = g + 0.1w = [0.5+0.1, 1-0.2] = [0.6, 0.8]; v = g'; w = [1-0.06, -2-0.08].
    opt.step([w], [[0.5, 1]], 0.1);
    close(w, [0.94, -2.08]);
    // Step 2: g' = [0.5+0.094, 1-0.208] = [0.594, 0.792]; v = 0.9[0.6,0.8] + g' = [1.134, 1.512].
    opt.step([w], [[0.5, 1]], 0.1);
    close(w, [0.94 - 0.1134, -2.08 - 0.1512]);
    assert.equal(opt.steps, 2);
  });

  test('plain SGD without momentum is w -= lr·g', () => {
    const w = Float32Array.from([3]);
    const opt = createOptimizer({ kind: 'sgd', momentum: 0 });
    opt.step([w], [[2]], 0.25);
    opt.step([w], [[2]], 0.25);
    close(w, [2]);
  });

  test('Adam: the first step moves each weight by lr·sign(g)', () => {
    const w = Float32Array.from([1, 1, 1]);
    const opt = createOptimizer({ kind: 'adam' });
    opt.step([w], [[0.3, -5, 1e-3]], 0.01);
    close(w, [0.99, 1.01, 0.99], 1e-5);
    // Step 2 with g = [0.1, ...]: m = 0.9·0.03 + 0.1·0.1 = 0.037 → m̂ = 0.037/0.19; v = 0.999·9e-5 + 0.001·0.01 = 1.0e-4 (rounded) → v̂ = v/0.001999.
    const m = (0.9 * 0.03 + 0.01) / 0.19;
    const v = (0.999 * 0.3 * 0.3 * 0.001 + 0.001 * 0.01) / (1 - 0.999 ** 2);
    const w0 = w[0];
    opt.step([w], [[0.1, -5, 1e-3]], 0.01);
    close([w[0]], [w0 - (0.01 * m) / (Math.sqrt(v) + 1e-8)], 1e-6);
  });

  test('AdamW decays the weight apart from the gradient; Adam folds decay into it', () => {
    const a = Float32Array.from([2]);
    createOptimizer({ kind: 'adamw', weightDecay: 0.5 }).step([a], [[0]], 0.1);
    // Zero gradient: only the decoupled decay acts: 2 - 0.1·0.5·2.
    close(a, [1.9]);
    const b = Float32Array.from([2]);
    createOptimizer({ kind: 'adam', weightDecay: 0.5 }).step([b], [[0]], 0.1);
    // Coupled: g = 0.5·2 = 1 > 0, so the first step is -lr.
    close(b, [1.9], 1e-5);
    const c = Float32Array.from([2]);
    createOptimizer({ kind: 'adamw', weightDecay: 0.5 }).step([c], [[-1]], 0.1);
    close(c, [2 - 0.1 + 0.1], 1e-5);
  });
});

describe('learning-rate schedules', () => {
  test('constant, warm-up, cosine', () => {
    assert.equal(learningRate(0.1, 50, 100, { kind: 'constant' }), 0.1);
    assert.ok(Math.abs(learningRate(0.1, 0, 100, { kind: 'constant', warmupSteps: 10 }) - 0.01) < 1e-12);
    assert.ok(Math.abs(learningRate(0.1, 9, 100, { kind: 'constant', warmupSteps: 10 }) - 0.1) < 1e-12);
    assert.equal(learningRate(0.1, 0, 100, { kind: 'cosine' }), 0.1);
    assert.ok(Math.abs(learningRate(0.1, 50, 100, { kind: 'cosine' }) - 0.05) < 1e-12);
    assert.ok(Math.abs(learningRate(0.1, 100, 100, { kind: 'cosine', minFactor: 0.1 }) - 0.01) < 1e-12);
    assert.ok(Math.abs(learningRate(0.1, 55, 100, { kind: 'cosine', warmupSteps: 10 }) - 0.05) < 1e-12);
  });
});
