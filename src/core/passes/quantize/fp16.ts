import { NotImplementedError } from '../../errors';
import type { OnnxModel } from '../../formats/onnx/model';
import type { PassContext } from '../pass';
import type { QuantizeOptions, QuantizeReport } from './params';

/** --mode fp16: lands with its implementation; until then it says so rather than writing anything. */
export function convertFp16(_model: OnnxModel, _p: QuantizeOptions, _ctx: PassContext): Promise<QuantizeReport> {
  return Promise.reject(new NotImplementedError('quantize --mode fp16'));
}
