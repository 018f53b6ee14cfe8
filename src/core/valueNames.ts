import { OnnxModel } from './formats/onnx/model';

/** The values an ONNX model's top-level nodes compute, in graph order, with the op that computes each. */
export function nodeOutputs(file: string): Array<{ name: string; op: string }> {
  const model = OnnxModel.open(file);
  try {
    return model.graph.node.flatMap((n) => n.output.filter((o) => o !== '').map((name) => ({ name, op: n.opType })));
  } finally {
    model.close();
  }
}
