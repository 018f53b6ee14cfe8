import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as ort from 'onnxruntime-node';
import tolerances from './epTolerances.json';

/** Execution providers a user can ask for (`whittle.executionProvider`, `--ep`). */
export const epNames = ['auto', 'cpu', 'cuda', 'webgpu', 'dml', 'coreml'] as const;

/** One execution provider setting. */
export type EpName = (typeof epNames)[number];

/** A concrete provider (not 'auto'). */
export type ConcreteEp = Exclude<EpName, 'auto'>;

/** The tolerance a provider must meet against CPU (src/core/runtime/epTolerances.json). */
export function toleranceOf(ep: ConcreteEp, precision: ModelPrecision = 'fp32'): { atol: number; rtol: number } {
  const base = (tolerances as unknown as Record<string, { atol: number; rtol: number }>)[ep] ?? { atol: 0, rtol: 0 };
  const low = precision === 'fp32' ? undefined : (tolerances as unknown as { precision: Record<string, { atol: number; rtol: number }> }).precision[precision];
  return low ? { atol: Math.max(base.atol, low.atol), rtol: Math.max(base.rtol, low.rtol) } : base;
}

/** How a model stores its numbers, for the EP self-check's allowance: int8 (any quantized op), fp16, or fp32. */
export type ModelPrecision = 'fp32' | 'fp16' | 'int8';

/** onnxruntime's provider list for a concrete EP; CPU always comes last as the fallback for unsupported nodes. */
export function providerConfig(ep: ConcreteEp): ort.InferenceSession.ExecutionProviderConfig[] {
  switch (ep) {
    case 'cpu':
      return ['cpu'];
    // WebGPU must use NCHW: with its default layout it gave wrong LeNet outputs (DESIGN.md section 4).
    case 'webgpu':
      return [{ name: 'webgpu', preferredLayout: 'NCHW' } as ort.InferenceSession.ExecutionProviderConfig, 'cpu'];
    default:
      return [ep, 'cpu'];
  }
}

/** True when onnxruntime-node's CUDA provider library is present beside its binding (it is not bundled). */
export function cudaLibraryPresent(): boolean {
  try {
    const dir = path.dirname(require.resolve('onnxruntime-node/package.json'));
    const bin = path.join(dir, 'bin', 'napi-v6', process.platform, process.arch);
    return fs.existsSync(path.join(bin, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

/**
 * The providers `auto` tries, in order; CPU is always the last resort. WebGPU is left out of `auto` (it is
 * used when asked for by name): the extension host's integration tests saw Dawn crash the process (SIGSEGV)
 * shortly after a WebGPU session started in a worker thread, and on the software adapters CI has it is much
 * slower than CPU anyway. DESIGN.md lists it in `auto`; this is the measured reason it is not.
 */
export function autoCandidates(): ConcreteEp[] {
  const list: ConcreteEp[] = [];
  if (cudaLibraryPresent()) list.push('cuda');
  if (process.platform === 'win32') list.push('dml');
  if (process.platform === 'darwin') list.push('coreml');
  return list;
}
