import { OnnxModel } from '../formats/onnx/model';
import { buildSampleModel } from '../samples/sampleModel';
import type { EpName } from './ep';
import { openSession } from './session';

/** What an execution-provider setting resolves to on this machine. */
export interface EpProbe {
  requested: EpName;
  /** The provider that passed its self-check (CPU at worst). */
  inUse: string;
  warnings: string[];
}

/**
 * Resolves an EP setting the way every run does (self-check against CPU, and for `auto` speed against CPU),
 * on the bundled sample model, so the status bar can show the provider actually in use before any real run.
 */
export async function probeEp(requested: EpName): Promise<EpProbe> {
  const model = OnnxModel.fromBytes(buildSampleModel(), 'whittle-sample.onnx');
  const s = await openSession(model, { ep: requested });
  try {
    return { requested, inUse: s.ep, warnings: s.warnings };
  } finally {
    await s.release();
  }
}
