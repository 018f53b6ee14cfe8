import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseParams } from '../../src/core/passes/pass';
import { pruneParams } from '../../src/core/passes/prune/unstructured';
import { pruneShape, pruneWhat } from '../../src/extension/pruneChoice';

/** The Prune… command's choices become the prune pass's own parameters, which the pass's table accepts. */
describe('Prune… choices', () => {
  test('structured, N:M, scopes and methods map onto the pass parameters', () => {
    assert.deepEqual(pruneShape({ sparsity: 0.3, structured: true, method: 'wanda', scope: 'global' }), { sparsity: 0.3, structured: 'channels' });
    assert.deepEqual(pruneShape({ sparsity: 0.9, pattern: '2:4', method: 'sparsegpt' }), { pattern: '2:4', method: 'sparsegpt' });
    assert.deepEqual(pruneShape({ sparsity: 0.7, scope: 'sensitivity', method: 'wanda' }), { sparsity: 0.7, scope: 'sensitivity', method: 'wanda' });
    // Magnitude is the pass's default: callers that predate `method` send what they sent before.
    assert.deepEqual(pruneShape({ sparsity: 0.5 }), { sparsity: 0.5, scope: 'layer' });
    assert.deepEqual(pruneShape({ sparsity: 0.5, method: 'magnitude' }), { sparsity: 0.5, scope: 'layer' });
    assert.equal(pruneWhat({ sparsity: 0.3, structured: true }), '30% of channels');
    assert.equal(pruneWhat({ sparsity: 0.7, scope: 'global', method: 'sparsegpt' }), '70% (global, sparsegpt)');
    assert.equal(pruneWhat({ sparsity: 0.5, pattern: '4:8' }), '4:8');
  });

  test('every shape passes the prune parameter table', () => {
    for (const choice of [{ sparsity: 0.3, structured: true }, { sparsity: 0.5, pattern: '2:4' as const, method: 'wanda' as const }, { sparsity: 0.6, scope: 'sensitivity' as const, method: 'sparsegpt' as const }]) {
      const parsed = parseParams(pruneParams, pruneShape(choice) as Record<string, unknown>) as Record<string, unknown>;
      for (const [k, v] of Object.entries(pruneShape(choice))) assert.equal(parsed[k], v, `${k} of ${JSON.stringify(choice)}`);
    }
  });
});
