import type { NodeProto, TensorProto } from 'onnx-buf';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../formats/onnx/build';
import { normal, seededRandom } from '../random';

/** Input shape of the generated CNN. */
export const resnetLikeInput = [1, 3, 64, 64];

/**
 * A seeded ResNet-style CNN (1x3x64x64 -> 10 logits) for structured pruning's tests and benchmark, with every
 * graph pattern the dependency groups must handle: a stem Conv+BN+Relu and MaxPool, an identity residual block
 * and a 1x1-projection residual block (Add), two branches joined by Concat, a squeeze-excite gate (GlobalAveragePool,
 * Sigmoid, Mul of two activations), a depthwise Conv, a second identity block, then AveragePool, Flatten (channel x
 * 2x2 blocks) and two Gemms. 15 Convs, about 0.45 M parameters. Generated, not trained: only its structure and
 * its arithmetic matter.
 */
export function buildResnetLike(seed = 7): Uint8Array {
  const randn = normal(seededRandom(seed));
  const rand = seededRandom(seed + 1);
  const inits: TensorProto[] = [];
  const nodes: NodeProto[] = [];
  const fill = (n: number, f: () => number) => Float32Array.from({ length: n }, f);
  const conv = (name: string, x: string, cin: number, cout: number, k: number, opts: { stride?: number; group?: number; bias?: boolean } = {}): string => {
    const group = opts.group ?? 1;
    const fanIn = (cin / group) * k * k;
    inits.push(floatTensor(`${name}.weight`, [cout, cin / group, k, k], fill(cout * (cin / group) * k * k, () => randn() * Math.sqrt(2 / fanIn))));
    const inputs = [x, `${name}.weight`];
    if (opts.bias) {
      inits.push(floatTensor(`${name}.bias`, [cout], fill(cout, () => randn() * 0.05)));
      inputs.push(`${name}.bias`);
    }
    const pad = (k - 1) >> 1;
    nodes.push(node('Conv', inputs, [name], { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [opts.stride ?? 1, opts.stride ?? 1], group }, `/${name}/Conv`));
    return name;
  };
  const bn = (name: string, x: string, c: number): string => {
    inits.push(floatTensor(`${name}.scale`, [c], fill(c, () => 0.5 + rand())));
    inits.push(floatTensor(`${name}.B`, [c], fill(c, () => randn() * 0.1)));
    inits.push(floatTensor(`${name}.mean`, [c], fill(c, () => randn() * 0.1)));
    inits.push(floatTensor(`${name}.var`, [c], fill(c, () => 0.5 + rand())));
    nodes.push(node('BatchNormalization', [x, `${name}.scale`, `${name}.B`, `${name}.mean`, `${name}.var`], [name], { epsilon: 1e-5 }, `/${name}/BatchNormalization`));
    return name;
  };
  const op = (type: string, inputs: string[], out: string, attrs: Record<string, number | number[]> = {}): string => {
    nodes.push(node(type, inputs, [out], attrs, `/${out}/${type}`));
    return out;
  };
  const relu = (x: string) => op('Relu', [x], `${x}_relu`);

  // Stem: 3 -> 32 at 64x64, then 32x32.
  let x = relu(bn('stem_bn', conv('stem', 'input', 3, 32, 3), 32));
  x = op('MaxPool', [x], 'pool1', { kernel_shape: [2, 2], strides: [2, 2] });
  // Identity block, 32 channels: the stem's channels and the block's second conv share one group through the Add.
  let y = relu(bn('b1_bn1', conv('b1_conv1', x, 32, 32, 3), 32));
  y = bn('b1_bn2', conv('b1_conv2', y, 32, 32, 3), 32);
  x = relu(op('Add', [y, x], 'b1_add'));
  // Projection block, 32 -> 64 at 16x16.
  y = relu(bn('b2_bn1', conv('b2_conv1', x, 32, 64, 3, { stride: 2 }), 64));
  y = bn('b2_bn2', conv('b2_conv2', y, 64, 64, 3), 64);
  const shortcut = bn('b2_bnp', conv('b2_proj', x, 32, 64, 1, { stride: 2 }), 64);
  x = relu(op('Add', [y, shortcut], 'b2_add'));
  // Two branches joined along the channels.
  const a = relu(conv('br_a', x, 64, 32, 1, { bias: true }));
  const b = relu(conv('br_b', x, 64, 32, 3, { bias: true }));
  x = op('Concat', [a, b], 'concat', { axis: 1 });
  x = relu(bn('mix_bn', conv('mix', x, 64, 96, 3), 96));
  // Squeeze-excite: the gate multiplies the activation channel by channel.
  let s = op('GlobalAveragePool', [x], 'se_pool');
  s = relu(conv('se_fc1', s, 96, 24, 1, { bias: true }));
  s = op('Sigmoid', [conv('se_fc2', s, 24, 96, 1, { bias: true })], 'se_gate');
  x = op('Mul', [x, s], 'se_mul');
  // Depthwise then pointwise, and down to 8x8.
  x = relu(conv('dw', x, 96, 96, 3, { group: 96, bias: true }));
  x = relu(bn('pw_bn', conv('pw', x, 96, 128, 1), 128));
  x = op('MaxPool', [x], 'pool2', { kernel_shape: [2, 2], strides: [2, 2] });
  // Identity block, 128 channels at 8x8.
  y = relu(bn('b3_bn1', conv('b3_conv1', x, 128, 128, 3), 128));
  y = bn('b3_bn2', conv('b3_conv2', y, 128, 128, 3), 128);
  x = relu(op('Add', [y, x], 'b3_add'));
  // Head: 2x2 spatial blocks per channel into the classifier.
  x = op('AveragePool', [x], 'pool3', { kernel_shape: [4, 4], strides: [4, 4] });
  x = op('Flatten', [x], 'flat', { axis: 1 });
  inits.push(floatTensor('fc1.weight', [64, 512], fill(64 * 512, () => randn() * Math.sqrt(2 / 512))));
  inits.push(floatTensor('fc1.bias', [64], fill(64, () => randn() * 0.05)));
  x = relu(op('Gemm', [x, 'fc1.weight', 'fc1.bias'], 'fc1', { transB: 1 }));
  inits.push(floatTensor('fc2.weight', [10, 64], fill(10 * 64, () => randn() * Math.sqrt(1 / 64))));
  inits.push(floatTensor('fc2.bias', [10], new Float32Array(10)));
  op('Gemm', [x, 'fc2.weight', 'fc2.bias'], 'logits', { transB: 1 });

  const g = graph('whittle_resnet_like', nodes, [valueInfo('input', 1, resnetLikeInput)], [valueInfo('logits', 1, [1, 10])], inits);
  return encodeModel(model(g, 13));
}
