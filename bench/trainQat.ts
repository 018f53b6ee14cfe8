// Quantization-aware training on mnist-8, against post-training quantization, all evaluated on MNIST t10k:
//  - int8: PTQ = static U8S8 QDQ of the original (calibrated on 512 training images); QAT = train with per-channel
//    int8 weight fake-quant, then the same static U8S8 pass on the trained float weights;
//  - 4-bit weights: PTQ = weights fake-quantized to 4 bits (per channel, symmetric, -7..7) with no training; QAT =
//    train with 4-bit weight fake-quant, evaluated with the same 4-bit weights.
// A control trains the same budget without fake-quant (plain fine-tune) and quantizes it the same way, so a QAT gain
// is not just extra training. Training: Adam, cosine schedule, batch 64, seed 1, MNIST train (--limit caps samples).
// With activations (W8A8 / W4A8 rows): uint8 activation fake-quant on each layer's data input too, ranges calibrated
// as the static pass does (minmax over 512 training images) and held constant; int8 exported by the same static pass,
// 4-bit evaluated with its 4-bit weights and uint8 activation fake-quant.
// Usage: node out/bench/trainQat.js [--epochs 1] [--limit 60000] [--lr 0.0002] [--rows all|weights|activations]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { replaceTensorData } from '../src/core/formats/onnx/edit';
import { OnnxModel } from '../src/core/formats/onnx/model';
import { writeOnnx } from '../src/core/formats/onnx/write';
import { runQuantize } from '../src/core/passes/quantize/run';
import { evaluate } from '../src/core/runtime/evaluate';
import { train } from '../src/core/train/loop';
import { calibrateActivations, insertWeightFakeQuant } from '../src/core/train/qat';
import type { ScaleZero } from '../src/core/passes/quantize/math';

const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
const source = path.join(shared, 'models', 'onnx-mnist-8', 'mnist.onnx');
const trainData = path.join(shared, 'mnist', 'train-images-idx3-ubyte.gz');
const test = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const epochs = Number(arg('epochs', '1'));
const limit = Number(arg('limit', '60000'));
const lr = Number(arg('lr', '0.0002'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-qat-bench-'));
const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

/** Static U8S8 QDQ of a float model (calibration: 512 training images); t10k accuracy. */
async function staticInt8(model: string, tag: string): Promise<number> {
  const r = await runQuantize({ model, mode: 'static', data: test, calibData: `${trainData}#:512`, out: path.join(tmp, `q-${tag}`) });
  return r.metrics.after.accuracy!;
}

/** Writes the model with 4-bit weight fake-quant (the weights it runs on lie on the 4-bit grid); t10k accuracy. */
async function fourBit(model: string, tag: string, activations?: Record<string, ScaleZero>): Promise<number> {
  const m = OnnxModel.open(model);
  const file = path.join(tmp, `w4-${tag}.onnx`);
  fs.writeFileSync(file, toBinary(ModelProtoSchema, insertWeightFakeQuant(m.proto, { bits: 4, activations }).proto));
  m.close();
  return (await evaluate({ model: file, data: test })).accuracy!;
}

/** Trains (with fake-quant at `bits`, or plain when undefined) and writes the trained float model. */
async function trained(bits: 8 | 4 | undefined, tag: string, activations?: Record<string, ScaleZero>): Promise<{ file: string; seconds: number; samplesPerSec: number }> {
  const m = OnnxModel.open(source);
  const t0 = performance.now();
  const r = await train(m, { data: trainData, epochs, batch: 64, lr, limit, optimizer: { kind: 'adam' }, schedule: { kind: 'cosine' }, seed: 1, ...(bits ? { qat: { bits, activations } } : {}) });
  const seconds = (performance.now() - t0) / 1000;
  for (const [name, w] of r.weights) replaceTensorData(m.graph, name, w);
  const file = path.join(tmp, `${tag}.onnx`);
  writeOnnx(m, file);
  m.close();
  return { file, seconds, samplesPerSec: r.samplesPerSec };
}

(async () => {
  const budget = `${epochs} epoch(s) of ${limit} MNIST training samples, Adam lr ${lr} cosine, batch 64, seed 1`;
  const float = (await evaluate({ model: source, data: test })).accuracy!;
  console.log(`mnist-8 float: ${pct(float)} (t10k, 10000 images)`);

  const rows = arg('rows', 'all');
  const ptq8 = await staticInt8(source, 'ptq');
  const ptq4 = await fourBit(source, 'ptq');
  if (rows !== 'activations') {
    const qat8 = await trained(8, 'qat8');
    const qat8Acc = await staticInt8(qat8.file, 'qat8');
    const plain = await trained(undefined, 'plain');
    const plain8 = await staticInt8(plain.file, 'plain');
    const plainFloat = (await evaluate({ model: plain.file, data: test })).accuracy!;
    console.log(`int8 U8S8 static:  PTQ ${pct(ptq8)} (drop ${((float - ptq8) * 100).toFixed(2)} pt) | QAT int8 weights then static ${pct(qat8Acc)} (drop ${((float - qat8Acc) * 100).toFixed(2)} pt; ${qat8.seconds.toFixed(1)} s, ${qat8.samplesPerSec} samples/s) | control, plain fine-tune then static ${pct(plain8)} (its float ${pct(plainFloat)})`);
    const qat4 = await trained(4, 'qat4');
    const qat4Acc = await fourBit(qat4.file, 'qat4');
    const plain4 = await fourBit(plain.file, 'plain');
    console.log(`4-bit weights:     PTQ ${pct(ptq4)} (drop ${((float - ptq4) * 100).toFixed(2)} pt) | QAT 4-bit ${pct(qat4Acc)} (drop ${((float - qat4Acc) * 100).toFixed(2)} pt; ${qat4.seconds.toFixed(1)} s) | control, plain fine-tune then 4-bit ${pct(plain4)}`);
  }
  if (rows !== 'weights') {
    const m = OnnxModel.open(source);
    const acts8 = await calibrateActivations(m, { bits: 8 }, `${trainData}#:512`, { warnings: [] });
    m.close();
    const qa8 = await trained(8, 'qa8', acts8);
    const qa8Acc = await staticInt8(qa8.file, 'qa8');
    console.log(`int8 W8A8 static:  PTQ ${pct(ptq8)} | QAT int8 weights + uint8 activations, then static ${pct(qa8Acc)} (drop ${((float - qa8Acc) * 100).toFixed(2)} pt; ${qa8.seconds.toFixed(1)} s)`);
    const ptq4a = await fourBit(source, 'ptq4a', acts8);
    const qa4 = await trained(4, 'qa4', acts8);
    const qa4Acc = await fourBit(qa4.file, 'qa4', acts8);
    console.log(`W4A8 (4-bit weights, uint8 activations): PTQ ${pct(ptq4a)} (drop ${((float - ptq4a) * 100).toFixed(2)} pt) | QAT ${pct(qa4Acc)} (drop ${((float - qa4Acc) * 100).toFixed(2)} pt; ${qa4.seconds.toFixed(1)} s)`);
  }
  console.log(`training budget: ${budget}; weights per output channel, symmetric, scale = max|W|/qmax recomputed each step; cross-entropy on logits scaled by the auto logit scale`);
  fs.rmSync(tmp, { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
