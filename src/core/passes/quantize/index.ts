import { InputError } from '../../errors';
import type { Pass } from '../pass';
import { quantizeDynamic } from './dynamic';
import { convertFp16 } from './fp16';
import { quantizeParams, type QuantizeOptions, type QuantizeReport } from './params';
import { quantizeStatic } from './static';
import { quantizeWeightOnly } from './weightOnly';

/**
 * Brings parsed parameters to their typed form (enum values arrive as strings) and rejects combinations that
 * would silently mean something else.
 */
export function normalizeQuantizeOptions(raw: QuantizeOptions): QuantizeOptions {
  const p: QuantizeOptions = { ...raw, bits: Number(raw.bits) as 8 | 4 };
  if (p.bits === 4 && p.mode !== 'weight-only') throw new InputError(undefined, `--bits 4 is for --mode weight-only; --mode ${p.mode} quantizes to 8 bits`);
  if (p.block !== undefined && p.block > 0 && p.mode !== 'weight-only') throw new InputError(undefined, `--block applies to --mode weight-only, not ${p.mode}`);
  if (p.keepFp32.length && p.mode !== 'fp16') throw new InputError(undefined, `--keep-fp32 applies to --mode fp16, not ${p.mode}`);
  if (p.fullRange?.length && p.mode !== 'static') throw new InputError(undefined, `--full-range applies to --mode static, not ${p.mode}`);
  return p;
}

/** Post-training quantization: weight-only int8/int4, static int8 QDQ with calibration, dynamic int8, or fp16. */
export const quantizePass: Pass<QuantizeOptions, QuantizeReport> = {
  name: 'quantize',
  summary: 'post-training quantization: weight-only int8/int4, static int8 QDQ calibrated on --data, dynamic int8 MatMul, or fp16',
  params: quantizeParams,
  async apply(model, raw, ctx) {
    const p = normalizeQuantizeOptions(raw);
    const modes = { 'weight-only': quantizeWeightOnly, static: quantizeStatic, dynamic: quantizeDynamic, fp16: convertFp16 };
    try {
      return await modes[p.mode](model, p, ctx);
    } finally {
      // Every mode rewrites initializers and nodes in place.
      model.invalidate();
    }
  },
};
