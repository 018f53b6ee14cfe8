import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { readSidecar, sidecarPath, writeAnalysis, writeChoice } from '../../src/core/analysisSidecar';
import type { AnalyzeResult } from '../../src/protocol/analysis';

const result = (names: string[]): AnalyzeResult => ({
  baseline: { samples: 4, metricName: '1 - top-1 agreement' },
  layers: names.map((name, i) => ({ name, op: 'Conv', params: 10, score: i, prune: [{ sparsity: 0, metric: 0, cosine: 1 }] })),
  ranking: [...names].reverse(),
  ep: 'cpu',
  data: 'random',
  warnings: [],
});

test('the sensitivity sidecar lives in <model dir>/<model name>.whittle/analysis.json and keeps choices across runs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-sidecar-'));
  const model = path.join(dir, 'net.onnx');
  fs.writeFileSync(model, 'model bytes');
  assert.equal(sidecarPath(model), path.join(dir, 'net.whittle', 'analysis.json'));
  assert.equal(readSidecar(model), undefined);
  assert.throws(() => writeChoice(model, 'a', { exclude: true }), /run one first/);

  writeAnalysis(model, { data: 'random', kind: 'prune', result: result(['a', 'b']) });
  writeChoice(model, 'a', { exclude: true, bits: 4 });
  writeChoice(model, 'b', { sparsity: 0.5 });
  assert.throws(() => writeChoice(model, 'b', { sparsity: 1.5 }), /sparsity must be in \[0, 1\)/);
  assert.throws(() => writeChoice(model, 'b', { bits: 3.5 }), /bits must be a whole number/);
  let s = readSidecar(model)!;
  assert.deepEqual(s.choices, { a: { exclude: true, bits: 4 }, b: { sparsity: 0.5 } });
  assert.equal(s.model, 'net.onnx');
  assert.match(s.sha256!, /^[0-9a-f]{64}$/);

  // A new run keeps the choices of layers that still exist and drops the others.
  writeAnalysis(model, { data: 'x.npz', kind: 'both', result: result(['a', 'c']) });
  s = readSidecar(model)!;
  assert.deepEqual(s.choices, { a: { exclude: true, bits: 4 } });
  assert.equal(s.kind, 'both');
  writeChoice(model, 'a', null);
  assert.deepEqual(readSidecar(model)!.choices, {});
  // Atomic writes leave no temp files behind.
  assert.deepEqual(fs.readdirSync(path.join(dir, 'net.whittle')), ['analysis.json']);
});
