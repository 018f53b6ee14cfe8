import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { weightStats } from '../../src/core/analysis/parallelStats';
import { statsOfChunks } from '../../src/core/analysis/stats';
import { ExternalFiles } from '../../src/core/model/externalFiles';
import { TensorRef } from '../../src/core/model/tensorRef';
import { normal, seededRandom } from '../../src/core/random';
import { repoRoot, tempDir } from './helpers/paths';

/** Integration tier: statistics split across real worker threads (dist/worker.js) equal the one-thread figures. */
test('weight statistics split across workers match the single-thread computation', async () => {
  const randn = normal(seededRandom(3));
  const values = (n: number, scale: number, offset = 0) => Float32Array.from({ length: n }, (_, i) => (i % 13 === 0 ? 0 : offset + randn() * scale));
  // Weights in shared memory at odd offsets (as raw_data sits in a model file), one in float16, one external.
  const shared = new SharedArrayBuffer(4_000_000);
  const put = (at: number, data: Float32Array) => {
    new Uint8Array(shared, at, data.byteLength).set(new Uint8Array(data.buffer));
    return new Uint8Array(shared, at, data.byteLength);
  };
  const a = new TensorRef('a', 1, [300, 1000], { kind: 'bytes', bytes: put(3, values(300_000, 0.05)) }, 'm.onnx');
  const b = new TensorRef('b', 1, [1000], { kind: 'bytes', bytes: put(1_300_001, values(1000, 2, 100)) }, 'm.onnx');
  const halfBits = new Uint16Array(50_000).map((_, i) => 0x3c00 + (i % 512));
  const c = new TensorRef('c', 10, [50_000], { kind: 'bytes', bytes: new Uint8Array(halfBits.buffer) }, 'm.onnx');
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'd.bin'), Buffer.concat([Buffer.alloc(7), Buffer.from(values(200_000, 1, -3).buffer)]));
  const files = new ExternalFiles(path.join(dir, 'm.onnx'));
  const d = new TensorRef('d', 1, [200_000], { kind: 'external', file: path.join(dir, 'd.bin'), offset: 7, length: 800_000, files }, 'm.onnx');
  const refs = [a, b, c, d, a];

  const parallel = await weightStats(refs, { threads: 3, workerFile: path.join(repoRoot, 'dist', 'worker.js'), minBytes: 0 });
  assert.equal(parallel.size, 4);
  for (const ref of [a, b, c, d]) {
    const want = statsOfChunks(ref.chunks());
    const got = parallel.get(ref)!;
    assert.deepEqual([got.min, got.max, got.sparsity, got.nonFinite], [want.min, want.max, want.sparsity, want.nonFinite], ref.name);
    assert.ok(Math.abs(got.mean - want.mean) <= 1e-9 * Math.max(1, Math.abs(want.mean)), `${ref.name} mean ${got.mean} vs ${want.mean}`);
    assert.ok(Math.abs(got.std - want.std) <= 1e-9 * want.std, `${ref.name} std ${got.std} vs ${want.std}`);
  }
  files.close();
});

test('a worker that hits bad external data reports it as an input error', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'd.bin'), Buffer.alloc(400));
  const files = new ExternalFiles(path.join(dir, 'm.onnx'));
  const ok = new TensorRef('ok', 1, [100], { kind: 'external', file: path.join(dir, 'd.bin'), offset: 0, length: 400, files });
  const bad = new TensorRef('bad', 1, [100], { kind: 'external', file: path.join(dir, 'gone.bin'), offset: 0, length: 400, files });
  await assert.rejects(weightStats([ok, bad], { threads: 2, workerFile: path.join(repoRoot, 'dist', 'worker.js'), minBytes: 0 }), (err: Error) => err.name === 'InputError' && /gone\.bin: missing external data file/.test(err.message));
  files.close();
});
