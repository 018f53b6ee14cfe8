import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { InputError } from '../../src/core/errors';
import { valueInfo } from '../../src/core/formats/onnx/build';
import { replaceTensorData } from '../../src/core/formats/onnx/edit';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { parseParams } from '../../src/core/passes/pass';
import { findGroups, keptCount, type ChannelGraph, type ChannelGroup } from '../../src/core/passes/prune/structured';
import { prunePass, type PruneOptions } from '../../src/core/passes/prune/unstructured';
import { runPrune } from '../../src/core/passes/run';
import { buildResnetLike, resnetLikeInput } from '../../src/core/samples/resnetLike';
import { noSharedData, sharedData, tempDir } from './helpers/paths';

ort.env.logLevel = 'fatal';
const dir = tempDir('whittle-structured-');
const zoo = (name: string) => path.join(sharedData ?? '', 'models', 'onnx-light-zoo-archs', `light_${name}.onnx`);
const ultraface = path.join(sharedData ?? '', 'models', 'onnx-ultraface-rfb-320', 'Ultraface_version-RFB-320.onnx');

const cnn = () => OnnxModel.fromBytes(buildResnetLike(), path.join(dir, 'cnn.onnx'));
const byProducer = (cg: ChannelGraph, node: string): ChannelGroup => {
  const g = cg.groups.find((x) => x.producers.includes(node));
  assert.ok(g, `no group produced by ${node}`);
  return g;
};
const member = (g: ChannelGroup, tensor: string, axis: number) => g.members.find((m) => m.tensor === tensor && m.axis === axis);

/** Runs model bytes on one seeded input; outputs by name. */
async function run(bytes: Uint8Array, input: string, shape: number[], seed = 3): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(bytes);
  let a = seed;
  const n = shape.reduce((x, y) => x * y, 1);
  const data = Float32Array.from({ length: n }, () => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
  try {
    return await s.run({ [input]: new ort.Tensor('float32', data, shape) });
  } finally {
    await s.release();
  }
}
const bytesOf = (m: OnnxModel) => toBinary(ModelProtoSchema, m.proto);
const maxDiff = (a: ort.Tensor, b: ort.Tensor) => {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  return d;
};

/** python3-onnx's checker on a written file: '' when it passes, else its message. */
function onnxCheck(file: string): string {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1])); print("ok")', file], { encoding: 'utf8' });
  return r.stdout.trim() === 'ok' ? '' : `${r.stdout}${r.stderr}`;
}
const hasPythonOnnx = spawnSync('/usr/bin/python3', ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0;

/** Zeros the given indices along one axis of a stored float32 tensor. */
function zeroAlong(m: OnnxModel, tensor: string, axis: number, indices: number[]): void {
  const ref = m.weights().get(tensor)!.ref;
  const data = ref.toFloat32().slice();
  const shape = ref.shape;
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len = shape[axis];
  const drop = new Set(indices);
  for (let i = 0; i < data.length; i++) if (drop.has(Math.floor(i / inner) % len)) data[i] = 0;
  replaceTensorData(m.graph, tensor, data);
}

/**
 * Makes the chosen channels of a group dead: their producers' weight rows and biases, depthwise rows and BN
 * scales and shifts are zeroed, so each such channel is exactly 0 everywhere it flows and removing it must not
 * change any output.
 */
function killChannels(m: OnnxModel, cg: ChannelGraph, gid: number, units: number[]): void {
  for (const p of cg.channelPositions(gid, units)) {
    if (['out', 'bias', 'bn', 'depthwise'].includes(p.role)) zeroAlong(m, p.tensor, p.axis, p.indices);
  }
}

describe('structured pruning: dependency groups', () => {
  test('the generated CNN: residual, concat, squeeze-excite, depthwise and flatten groups', () => {
    const m = cnn();
    const cg = findGroups(m);
    assert.equal(m.graph.node.filter((n) => n.opType === 'Conv').length, 15);
    assert.equal(cg.groups.length, 12);
    // Identity residual: the stem and the block's second conv are added, so they share 32 channels.
    const stem = byProducer(cg, '/stem/Conv');
    assert.deepEqual(stem.producers, ['/stem/Conv', '/b1_conv2/Conv']);
    assert.equal(stem.channels, 32);
    assert.ok(stem.values.includes('b1_add'));
    for (const t of ['b1_conv1.weight', 'b2_conv1.weight', 'b2_proj.weight']) assert.ok(member(stem, t, 1), `${t} axis 1`);
    assert.ok(member(stem, 'stem_bn.var', 0) && member(stem, 'b1_bn2.scale', 0));
    // Projection residual: conv2 and the 1x1 projection.
    assert.deepEqual(byProducer(cg, '/b2_proj/Conv').producers, ['/b2_conv2/Conv', '/b2_proj/Conv']);
    // Concat: the second branch's channels sit at offset 32 of the next conv's input.
    assert.equal(member(byProducer(cg, '/br_a/Conv'), 'mix.weight', 1)?.offset, 0);
    assert.deepEqual({ ...member(byProducer(cg, '/br_b/Conv'), 'mix.weight', 1) }, { tensor: 'mix.weight', axis: 1, offset: 32, count: 32, block: 1, role: 'in', node: '/mix/Conv' });
    // Squeeze-excite Mul of two activations couples the gate's conv with the gated one; the depthwise conv follows.
    const mix = byProducer(cg, '/mix/Conv');
    assert.deepEqual(mix.producers, ['/mix/Conv', '/se_fc2/Conv']);
    assert.equal(member(mix, 'dw.weight', 0)?.role, 'depthwise');
    assert.ok(member(mix, 'pw.weight', 1) && member(mix, 'se_fc1.weight', 1));
    // Flatten into Gemm: each of the 128 channels owns a block of 2x2 = 4 inputs of fc1.
    const pw = byProducer(cg, '/pw/Conv');
    assert.equal(member(pw, 'fc1.weight', 1)?.block, 4);
    assert.equal(member(pw, 'fc1.weight', 1)?.count, 128);
    // The logits never change shape.
    const head = byProducer(cg, '/logits/Gemm');
    assert.equal(head.prunable, false);
    assert.match(head.reason ?? '', /model output 'logits'/);
    assert.equal(cg.groups.filter((g) => g.prunable).length, 11);
  });

  test('ResNet50: each residual stage is one group with every conv whose output is added', { skip: noSharedData }, () => {
    const m = OnnxModel.open(zoo('resnet50'));
    const cg = findGroups(m);
    const producer = new Map(m.graph.node.flatMap((n) => n.output.map((o) => [o, n])));
    // Walk each Sum's inputs back through BN (and Relu) to its Conv, independently of the finder.
    const convOf = (v: string): string => {
      let n = producer.get(v)!;
      while (n.opType !== 'Conv') n = producer.get(n.input[0])!;
      return n.name;
    };
    const sums = m.graph.node.filter((n) => n.opType === 'Sum');
    assert.equal(sums.length, 16);
    const stageOf = (s: (typeof sums)[number]) => cg.groups.find((g) => g.values.includes(s.output[0]))!;
    // Stage res2 (3 blocks) is one group of 256 channels: its 3 branch2c convs and the projection branch1.
    const res2 = stageOf(sums[0]);
    assert.equal(res2.channels, 256);
    for (const s of sums.slice(0, 3)) {
      assert.equal(stageOf(s).id, res2.id);
      for (const i of s.input) assert.ok(res2.producers.includes(convOf(i)), `${convOf(i)} feeds ${s.output[0]}`);
    }
    assert.equal(res2.producers.length, 4);
    // The four stages are four different groups of 256, 512, 1024 and 2048 channels.
    const stages = [0, 3, 7, 13].map((i) => stageOf(sums[i]));
    assert.deepEqual(stages.map((g) => g.channels), [256, 512, 1024, 2048]);
    assert.equal(new Set(stages.map((g) => g.id)).size, 4);
    // The last stage feeds the classifier through AveragePool and Reshape: 2048 rows of the Gemm weight.
    assert.equal(member(stages[3], 'gpu_0/pred_w_0', 1)?.count, 2048);
    assert.equal(cg.groups.filter((g) => g.prunable).length, 37);
    m.close();
  });

  test('DenseNet121: concat offsets grow with each dense layer', { skip: noSharedData }, () => {
    const m = OnnxModel.open(zoo('densenet121'));
    const cg = findGroups(m);
    const convName = (w: string) => m.graph.node.find((n) => n.opType === 'Conv' && n.input[1] === w)!.name;
    // Block 1 starts from the 64-channel stem; each dense layer adds 32 channels by Concat.
    const first = byProducer(cg, convName('conv2_1/x2_w_0'));
    const second = byProducer(cg, convName('conv2_2/x2_w_0'));
    assert.equal(first.channels, 32);
    assert.equal(member(first, 'conv2_2/x1_w_0', 1)?.offset, 64);
    assert.equal(member(first, 'conv2_3/x1_w_0', 1)?.offset, 64);
    assert.equal(member(second, 'conv2_3/x1_w_0', 1)?.offset, 96);
    assert.equal(member(second, 'conv2_2/x1_w_0', 1), undefined);
    // The BN of a later layer also takes the slice, behind its Mul/Add scale constants.
    assert.equal(member(second, 'conv2_3/x1/bn_scale_0', 0)?.offset, 96);
    assert.equal(cg.groups.length, 121);
    m.close();
  });

  test('ShuffleNet: grouped convs and the channel-shuffle Reshape/Transpose make every group skipped, with reasons', { skip: noSharedData }, () => {
    const m = OnnxModel.open(zoo('shufflenet'));
    const cg = findGroups(m);
    assert.equal(cg.groups.filter((g) => g.prunable).length, 0);
    const reasons = cg.groups.flatMap((g) => g.reasons);
    assert.ok(reasons.some((r) => /^Reshape '.*' to \[.*\] cannot be traced$/.test(r)), 'a channel-shuffle Reshape is named');
    assert.ok(reasons.some((r) => /grouped Conv '.*' \(group=4\)/.test(r)));
    for (const g of cg.groups) assert.ok(g.reason && g.reason.length > 0);
    m.close();
  });

  test('Inception v1, v2 and SqueezeNet: branch concats, LRN', { skip: noSharedData }, () => {
    const v1 = OnnxModel.open(zoo('inception_v1'));
    let cg = findGroups(v1);
    const conv = (m: OnnxModel, w: string) => m.graph.node.find((n) => n.opType === 'Conv' && n.input[1] === w)!.name;
    assert.equal(member(byProducer(cg, conv(v1, 'inception_3a/3x3_w_0')), 'inception_3b/1x1_w_0', 1)?.offset, 64);
    assert.equal(member(byProducer(cg, conv(v1, 'inception_3a/5x5_w_0')), 'inception_3b/1x1_w_0', 1)?.offset, 192);
    assert.match(byProducer(cg, conv(v1, 'conv1/7x7_s2_w_0')).reason ?? '', /^LRN node/);
    v1.close();
    const v2 = OnnxModel.open(zoo('inception_v2'));
    cg = findGroups(v2);
    assert.equal(cg.groups.length, 70);
    assert.equal(member(byProducer(cg, conv(v2, 'inception_3a/3x3_w_0')), 'inception_3b/1x1_w_0', 1)?.offset, 64);
    v2.close();
    const sq = OnnxModel.open(zoo('squeezenet'));
    cg = findGroups(sq);
    assert.equal(member(byProducer(cg, conv(sq, 'fire2/expand3x3_w_0')), 'fire3/squeeze1x1_w_0', 1)?.offset, 64);
    assert.equal(byProducer(cg, conv(sq, 'fire2/squeeze1x1_w_0')).members.filter((x) => x.role === 'in').length, 2);
    assert.equal(cg.groups.filter((g) => g.prunable).length, 25);
    sq.close();
  });

  test('the zoo models cannot be shrunk (their weights are ConstantOfShape outputs): InputError naming the reason', { skip: noSharedData }, async () => {
    const m = OnnxModel.open(zoo('resnet50'));
    const p = parseParams<PruneOptions>(prunePass.params, { structured: 'channels', sparsity: 0.3 });
    await assert.rejects(prunePass.apply(m, p, { warnings: [] }), (e: Error) => e instanceof InputError && /not a float32 weight stored in the main graph .*ConstantOfShape/.test(e.message));
    m.close();
  });

  test('ultraface: depthwise chains are grouped, the Transpose-fed heads are skipped', { skip: noSharedData }, () => {
    const m = OnnxModel.open(ultraface);
    const cg = findGroups(m);
    assert.equal(cg.groups.length, 33);
    assert.equal(cg.groups.filter((g) => g.prunable).length, 25);
    const skipped = cg.groups.filter((g) => !g.prunable);
    assert.ok(skipped.every((g) => /^Transpose '.*' \(perm \[0,2,3,1\]\) moves the channels/.test(g.reason ?? '')));
    const first = cg.groups[0];
    assert.equal(member(first, 'ConvBnFusion_W_base_net.1.0.weight', 0)?.role, 'depthwise');
    m.close();
  });

  test('keptCount keeps at least one channel and rounds to the multiple', () => {
    assert.equal(keptCount(32, 0.3), 22);
    assert.equal(keptCount(3, 0.99), 1);
    assert.equal(keptCount(32, 0.3, 8), 24);
    assert.equal(keptCount(6, 0.3, 8), 4);
    assert.equal(keptCount(10, 0), 10);
  });
});

describe('structured pruning: physical shrinking', () => {
  test('removing dead channels leaves the outputs unchanged (residual, concat, squeeze-excite + depthwise, flatten -> Gemm)', async () => {
    for (const producer of ['/stem/Conv', '/br_b/Conv', '/mix/Conv', '/pw/Conv', '/fc1/Gemm']) {
      const m = cnn();
      const cg = findGroups(m);
      const g = byProducer(cg, producer);
      const units = [0, 3, 4, g.channels - 1];
      killChannels(m, cg, g.id, units);
      const want = await run(bytesOf(m), 'input', resnetLikeInput);
      const changed = cg.shrink(new Map([[g.id, units]]));
      assert.ok(changed.size >= 3, `${producer}: ${changed.size} tensors changed`);
      const got = await run(bytesOf(m), 'input', resnetLikeInput);
      const d = maxDiff(got.logits, want.logits);
      assert.ok(d <= 1e-5, `${producer}: outputs moved by ${d}`);
      // And the channels are really gone from the model.
      for (const mem of g.members) {
        const shape = m.graph.initializer.find((t) => t.name === mem.tensor)!.dims.map(Number);
        const before = OnnxModel.fromBytes(buildResnetLike(), 'x.onnx').weights().get(mem.tensor)!.ref.shape[mem.axis];
        assert.equal(shape[mem.axis], before - units.length * mem.block, `${producer}: ${mem.tensor}[${mem.axis}]`);
      }
      if (producer === '/mix/Conv') assert.equal(Number(m.graph.node.find((n) => n.name === '/dw/Conv')!.attribute.find((a) => a.name === 'group')!.i), 96 - units.length);
    }
  });

  test('value_info of a shrunk activation gets its new width; unrelated entries stay', async () => {
    const m = cnn();
    m.graph.valueInfo.push(valueInfo('stem_bn', 1, [1, 32, 64, 64]), valueInfo('pool1', 1, [1, 32, 32, 32]), valueInfo('b1_bn1', 1, [1, 32, 32, 32]), valueInfo('flat', 1, [1, 512]));
    const cg = findGroups(m);
    cg.shrink(new Map([[byProducer(cg, '/stem/Conv').id, [0, 1]], [byProducer(cg, '/pw/Conv').id, [5]]]));
    const dims = (name: string) => {
      const vi = m.graph.valueInfo.find((v) => v.name === name)!;
      return vi.type!.value.case === 'tensorType' ? vi.type!.value.value.shape!.dim.map((d) => Number(d.value.value)) : [];
    };
    assert.deepEqual(dims('stem_bn'), [1, 30, 64, 64]);
    assert.deepEqual(dims('pool1'), [1, 30, 32, 32]);
    assert.deepEqual(dims('b1_bn1'), [1, 32, 32, 32]);
    assert.deepEqual(dims('flat'), [1, 508]);
    const got = await run(bytesOf(m), 'input', resnetLikeInput);
    assert.deepEqual(got.logits.dims, [1, 10]);
  });

  test('ultraface: removing dead channels leaves both outputs unchanged (depthwise, RFB concat + residual Add)', { skip: noSharedData }, async () => {
    const src = fs.readFileSync(ultraface);
    for (const producer of ['246', '282', '290', '310', '347']) {
      const m = OnnxModel.fromBytes(src, ultraface);
      const cg = findGroups(m);
      const g = byProducer(cg, producer);
      assert.ok(g.prunable, `${producer}: ${g.reason}`);
      const units = [1, 2, g.channels - 2];
      killChannels(m, cg, g.id, units);
      const want = await run(bytesOf(m), 'input', [1, 3, 240, 320]);
      cg.shrink(new Map([[g.id, units]]));
      const got = await run(bytesOf(m), 'input', [1, 3, 240, 320]);
      for (const o of ['scores', 'boxes']) {
        assert.deepEqual(got[o].dims, want[o].dims);
        const d = maxDiff(got[o], want[o]);
        assert.ok(d <= 1e-5, `${producer} ${o}: moved by ${d}`);
      }
    }
  });

  test('msra segmentation CNN: removing dead channels of its residual groups leaves the mask unchanged', { skip: noSharedData }, async () => {
    const file = path.join(sharedData ?? '', 'models', 'onnx-msra-190729-teams', 'msra_190729.onnx');
    const src = fs.readFileSync(file);
    const residual = findGroups(OnnxModel.fromBytes(src, file)).groups.filter((g) => g.prunable && g.producers.length >= 2);
    assert.ok(residual.length >= 4, `${residual.length} residual groups`);
    for (const r of residual.slice(0, 4)) {
      const m = OnnxModel.fromBytes(src, file);
      const cg = findGroups(m);
      const units = [0, r.channels - 1];
      killChannels(m, cg, r.id, units);
      const want = await run(bytesOf(m), 'bgrm', [1, 4, 64, 64]);
      cg.shrink(new Map([[r.id, units]]));
      const got = await run(bytesOf(m), 'bgrm', [1, 4, 64, 64]);
      for (const [name, t] of Object.entries(want)) {
        const d = maxDiff(got[name], t);
        assert.ok(d <= 1e-5, `${r.producers.join(',')} ${name}: moved by ${d}`);
      }
    }
  });

  test('30% of the channels of the generated CNN: a smaller, faster-shaped model that runs, checks and leaves the source alone', async () => {
    const folder = path.join(dir, 'cnn30');
    fs.mkdirSync(folder, { recursive: true });
    const file = path.join(folder, 'cnn.onnx');
    fs.writeFileSync(file, buildResnetLike());
    const srcBytes = fs.readFileSync(file);
    // Exact counts (--channel-multiple 1) so the shapes below follow from 30%; the default rounds to multiples of 8.
    const r = await runPrune({ model: file, structured: 'channels', sparsity: 0.3, channelMultiple: 1, limit: 4 });
    assert.deepEqual(fs.readFileSync(file), srcBytes);
    const ratio = r.params.after / r.params.before;
    // Inner convs lose 30% of inputs and of outputs (0.7^2 ~ 0.49); the input and logits layers keep one side.
    assert.ok(ratio > 0.42 && ratio < 0.6, `params ratio ${ratio}`);
    const sizeRatio = r.sizeBytes.after / r.sizeBytes.before;
    assert.ok(Math.abs(sizeRatio - ratio) < 0.03, `size ratio ${sizeRatio} vs params ${ratio}`);
    assert.equal(r.structured!.groups.length, 11);
    assert.equal(r.structured!.skipped.length, 1);
    assert.match(r.structured!.skipped[0].reason, /logits/);
    for (const g of r.structured!.groups) assert.equal(g.kept, g.channels - Math.round(0.3 * g.channels));
    const pm = OnnxModel.open(r.output);
    assert.equal(pm.weights().get('stem.weight')!.ref.shape[0], 22);
    assert.equal(pm.weights().get('fc1.weight')!.ref.shape[1], 4 * 90);
    pm.close();
    // Same output names and shapes in onnxruntime.
    const got = await run(fs.readFileSync(r.output), 'input', resnetLikeInput);
    assert.deepEqual(Object.keys(got), ['logits']);
    assert.deepEqual(got.logits.dims, [1, 10]);
    if (hasPythonOnnx) assert.equal(onnxCheck(r.output), '');
    const md = fs.readFileSync(path.join(path.dirname(r.output), 'report.md'), 'utf8');
    assert.match(md, /11 dependency group\(s\) pruned, 1 skipped/);
    assert.match(md, /\| fc2\.weight\[axis 0\], fc2\.bias\[axis 0\] \| its channels reach the model output 'logits' \|/);
    const layer = r.layers.find((l) => l.layer === '/b3_conv1/Conv')!;
    assert.deepEqual(layer.shape, [90, 90, 3, 3]);
    assert.deepEqual(layer.shapeBefore, [128, 128, 3, 3]);
  });

  test('0% removed gives bit-identical outputs; masks hold the removed rows in the original indexing', async () => {
    const m = cnn();
    const want = await run(bytesOf(m), 'input', resnetLikeInput);
    const p0 = parseParams<PruneOptions>(prunePass.params, { structured: 'channels', sparsity: 0 });
    const r0 = await prunePass.apply(m, p0, { warnings: [] });
    assert.equal(r0.layers.length, 0);
    const got = await run(bytesOf(m), 'input', resnetLikeInput);
    assert.deepEqual(got.logits.data, want.logits.data);

    const m2 = cnn();
    const p = parseParams<PruneOptions>(prunePass.params, { structured: 'channels', sparsity: 0.25, importance: 'l2' });
    const r = await prunePass.apply(m2, p, { warnings: [] });
    const mask = r.masks.find((x) => x.layer === '/b1_conv1/Conv')!;
    assert.deepEqual(mask.shape, [32, 32, 3, 3]);
    assert.equal(mask.removedRows!.length, 8);
    assert.equal(mask.removedCols!.length, 8);
    const bits = [...mask.kept].reduce((a, b) => a + b.toString(2).split('1').length - 1, 0);
    assert.equal(bits, 24 * 24 * 9);
    // The rows removed are the group's 8 lowest-L2 channels, as the report says.
    const g = r.structured!.groups.find((x) => x.members.includes('b1_conv1.weight[axis 0]'))!;
    assert.deepEqual(mask.removedRows, g.removed);
  });

  test('importance kinds, global scope with bounds, channel multiple and exclude', async () => {
    const removedBy = async (raw: Record<string, unknown>) => {
      const m = cnn();
      const r = await prunePass.apply(m, parseParams<PruneOptions>(prunePass.params, { structured: 'channels', ...raw }), { warnings: [], calibration: { data: 'random', limit: 4 } });
      const out = await run(bytesOf(m), 'input', resnetLikeInput);
      assert.deepEqual(out.logits.dims, [1, 10]);
      return r.structured!;
    };
    const l1 = await removedBy({ sparsity: 0.3 });
    const bn = await removedBy({ sparsity: 0.3, importance: 'bn' });
    const act = await removedBy({ sparsity: 0.3, importance: 'activation' });
    assert.notDeepEqual(l1.groups.map((g) => g.removed), bn.groups.map((g) => g.removed));
    assert.notDeepEqual(l1.groups.map((g) => g.removed), act.groups.map((g) => g.removed));
    const global = await removedBy({ sparsity: 0.3, scope: 'global', minSparsity: 0.1, maxSparsity: 0.5 });
    const total = global.groups.reduce((a, g) => a + g.channels, 0);
    const removed = global.groups.reduce((a, g) => a + g.removed.length, 0);
    assert.ok(Math.abs(removed - 0.3 * total) <= 1, `${removed} of ${total}`);
    for (const g of global.groups) {
      assert.ok(g.removed.length >= Math.round(0.1 * g.channels) && g.removed.length <= Math.round(0.5 * g.channels), `${g.removed.length} of ${g.channels}`);
    }
    assert.ok(new Set(global.groups.map((g) => g.removed.length / g.channels)).size > 1, 'global scope prunes groups unevenly');
    const mult = await removedBy({ sparsity: 0.3, channelMultiple: 8 });
    for (const g of mult.groups) if (g.channels >= 8) assert.equal(g.kept % 8, 0, `${g.kept} of ${g.channels}`);
    // An excluded layer keeps its weight whole: neither its output group nor the group feeding it is pruned.
    const ex = await removedBy({ sparsity: 0.3, exclude: ['/br_b/Conv'] });
    assert.equal(ex.groups.length, 9);
    const exSkipped = ex.skipped.filter((s) => /excluded layer '\/br_b\/Conv'/.test(s.reason));
    assert.equal(exSkipped.length, 2);
    assert.ok(exSkipped.some((s) => s.members.includes('br_b.weight[axis 0]')) && exSkipped.some((s) => s.members.includes('br_b.weight[axis 1]')));
  });

  test('ultraface at 30%: params and size drop, outputs keep their names and shapes, the checker passes', { skip: noSharedData }, async () => {
    const r = await runPrune({ model: ultraface, out: path.join(dir, 'uf30'), structured: 'channels', sparsity: 0.3, limit: 2 });
    const ratio = r.params.after / r.params.before;
    assert.ok(ratio > 0.45 && ratio < 0.75, `params ratio ${ratio}`);
    const sizeRatio = r.sizeBytes.after / r.sizeBytes.before;
    assert.ok(Math.abs(sizeRatio - ratio) < 0.05, `size ratio ${sizeRatio} vs params ${ratio}`);
    assert.equal(r.structured!.groups.length, 25);
    assert.equal(r.structured!.skipped.length, 8);
    const got = await run(fs.readFileSync(r.output), 'input', [1, 3, 240, 320]);
    assert.deepEqual(Object.keys(got).sort(), ['boxes', 'scores']);
    assert.deepEqual(got.scores.dims, [1, 4420, 2]);
    assert.deepEqual(got.boxes.dims, [1, 4420, 4]);
    if (hasPythonOnnx) assert.equal(onnxCheck(r.output), '');
  });

  test('bad options are InputErrors', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ structured: 'channels' }, /--sparsity is required/],
      [{ structured: 'channels', sparsity: 0.3, pattern: '2:4' }, /--pattern/],
      [{ structured: 'channels', sparsity: 0.3, scope: 'sensitivity' }, /--scope sensitivity/],
      [{ structured: 'channels', sparsity: 0.3, method: 'wanda' }, /--importance/],
    ];
    for (const [raw, re] of cases) {
      await assert.rejects(prunePass.apply(cnn(), parseParams<PruneOptions>(prunePass.params, raw), { warnings: [] }), (e: Error) => e instanceof InputError && re.test(e.message));
    }
    assert.throws(() => parseParams(prunePass.params, { structured: 'channels', channelMultiple: 2.5 }), /whole number/);
  });
});
