import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { CancelledError } from '../../src/protocol/rpc';
import { WorkerClient } from '../../src/core/worker/client';
import { buildSampleModel, sampleModelParams } from '../../src/core/samples/sampleModel';
import { repoRoot, tempDir } from './helpers/paths';

/** Integration tier: the built worker bundle (dist/worker.js) behind WorkerClient, as the extension uses it. */
describe('compute worker', () => {
  const dir = tempDir();
  const model = path.join(dir, 'sample.onnx');
  fs.writeFileSync(model, buildSampleModel());
  const workerFile = path.join(repoRoot, 'dist', 'worker.js');

  test('inspects a model off the main thread', async () => {
    const client = new WorkerClient(workerFile);
    try {
      const s = await client.request('inspect', { file: model });
      assert.equal(s.params, sampleModelParams);
      assert.equal(s.layers.length, 4);
    } finally {
      client.dispose();
    }
  });

  test('reports bad input as an input error naming the file, and keeps working', async () => {
    const client = new WorkerClient(workerFile);
    const bad = path.join(dir, 'bad.onnx');
    fs.writeFileSync(bad, 'not a model');
    try {
      await assert.rejects(client.request('inspect', { file: bad }), (err: Error & { input?: boolean }) => err.message.startsWith(`${bad}: `) && err.input === true);
      assert.equal((await client.request('inspect', { file: model })).params, sampleModelParams);
    } finally {
      client.dispose();
    }
  });

  test('cancelling stops the request at once, and the next request starts a fresh worker', async () => {
    const client = new WorkerClient(workerFile);
    try {
      const controller = new AbortController();
      const p = client.request('inspect', { file: model }, controller.signal);
      controller.abort();
      await assert.rejects(p, CancelledError);
      assert.equal((await client.request('inspect', { file: model })).params, sampleModelParams);
    } finally {
      client.dispose();
    }
  });
});
