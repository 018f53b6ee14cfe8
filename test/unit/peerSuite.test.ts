import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { writeOnnx } from '../../src/core/formats/onnx/write';
import { identicalOutputs, readTensorPb, toOrtTensor } from './helpers/ort';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';

/** Output element types onnxruntime-node can hand back to JS. */
const returnable = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);

/**
 * The peer suite: every model of the ONNX backend test suite is read and written back. The rewrite must be
 * byte-identical (or be listed in test/fixtures/peerSuite.json with a reason), and wherever onnxruntime-node
 * can load the original, original and rewrite are run on the stored inputs and must give identical outputs.
 * The counts go to test-results/peer-suite.json.
 */
test('ONNX backend test suite: read, write, run original and rewrite', { skip: noSharedData, timeout: 600_000 }, async (t) => {
  const root = path.join(sharedData!, 'onnx-backend');
  const known: Record<string, string> = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'fixtures', 'peerSuite.json'), 'utf8')).notByteIdentical;
  const out = tempDir('whittle-peer-');
  const counts = { models: 0, byteIdentical: 0, equivalentRuns: 0, skippedOrtCannotLoad: 0, skippedOrtCannotRun: 0, skippedNonTensorInputs: 0, skippedNoInputs: 0, skippedOutputTypes: 0 };
  const notIdentical: string[] = [];
  const mismatches: string[] = [];
  const readErrors: string[] = [];
  for (const suite of fs.readdirSync(root).sort()) {
    for (const name of fs.readdirSync(path.join(root, suite)).sort()) {
      const caseDir = path.join(root, suite, name);
      const file = path.join(caseDir, 'model.onnx');
      if (!fs.existsSync(file)) continue;
      counts.models++;
      const id = `${suite}/${name}`;
      const rewrite = path.join(out, `${suite}-${name}.onnx`);
      let model: OnnxModel;
      try {
        model = OnnxModel.open(file);
        writeOnnx(model, rewrite);
      } catch (err) {
        readErrors.push(`${id}: ${(err as Error).message}`);
        continue;
      }
      if (Buffer.compare(fs.readFileSync(rewrite), fs.readFileSync(file)) === 0) counts.byteIdentical++;
      else notIdentical.push(id);

      let original: ort.InferenceSession;
      try {
        original = await ort.InferenceSession.create(file, { logSeverityLevel: 4 });
      } catch {
        counts.skippedOrtCannotLoad++;
        fs.rmSync(rewrite);
        continue;
      }
      try {
        const dataSet = fs.readdirSync(caseDir).filter((d) => d.startsWith('test_data_set_')).sort()[0];
        if (!dataSet) {
          counts.skippedNoInputs++;
          continue;
        }
        const initNames = new Set(model.graph.initializer.map((i) => i.name));
        const inputNames = model.graph.input.map((v) => v.name).filter((n) => !initNames.has(n));
        const feeds: Record<string, ort.Tensor> = {};
        let tensorsOnly = true;
        inputNames.forEach((inputName, i) => {
          const pb = path.join(caseDir, dataSet, `input_${i}.pb`);
          if (!fs.existsSync(pb)) return;
          const ref = readTensorPb(pb);
          const tensor = ref && toOrtTensor(ref);
          if (tensor) feeds[inputName] = tensor;
          else tensorsOnly = false;
        });
        if (!tensorsOnly) {
          counts.skippedNonTensorInputs++;
          continue;
        }
        // onnxruntime-node aborts the process (out of memory in OrtValueToNapiValue) when returning 4-bit and
        // 8-bit-float outputs, and cannot return sequences or maps; such models are loaded but not run.
        const outputTypes = model.graph.output.map((o) => (o.type?.value.case === 'tensorType' ? o.type.value.value.elemType : -1));
        if (outputTypes.some((ty) => !returnable.has(ty))) {
          counts.skippedOutputTypes++;
          continue;
        }
        if (process.env.WHITTLE_PEER_TRACE) console.error(id);
        let expected: Record<string, ort.Tensor>;
        try {
          expected = await original.run(feeds);
        } catch {
          counts.skippedOrtCannotRun++;
          continue;
        }
        const second = await ort.InferenceSession.create(rewrite, { logSeverityLevel: 4 });
        try {
          if (identicalOutputs(expected, await second.run(feeds))) counts.equivalentRuns++;
          else mismatches.push(id);
        } finally {
          await second.release();
        }
      } finally {
        await original.release();
        model.close();
        fs.rmSync(rewrite, { force: true });
      }
    }
  }
  const summary = { ...counts, notByteIdentical: notIdentical.map((id) => ({ id, reason: known[id] ?? 'unexplained' })), mismatches, readErrors };
  fs.mkdirSync(path.join(repoRoot, 'test-results'), { recursive: true });
  fs.writeFileSync(path.join(repoRoot, 'test-results', 'peer-suite.json'), JSON.stringify(summary, null, 2));
  t.diagnostic(
    `${counts.byteIdentical} of ${counts.models} byte-identical; ${counts.equivalentRuns} run identically in onnxruntime; skipped: ${counts.skippedOrtCannotLoad} ORT cannot load, ` +
      `${counts.skippedOrtCannotRun} ORT cannot run, ${counts.skippedNonTensorInputs} non-tensor inputs, ${counts.skippedOutputTypes} outputs ORT's JS API cannot return, ${counts.skippedNoInputs} without inputs`,
  );
  assert.deepEqual(readErrors, [], 'every backend model must be readable and writable');
  assert.deepEqual(mismatches, [], 'original and rewrite must give identical outputs');
  assert.deepEqual(notIdentical.filter((id) => !known[id]), [], 'models that are not byte-identical must be listed with a reason');
  assert.ok(counts.models >= 1900, `only ${counts.models} models found`);
  assert.ok(counts.equivalentRuns > 1000, `only ${counts.equivalentRuns} models were run`);
});
