/**
 * `whittle distill`: trains a student on a frozen teacher's outputs and writes the run folder.
 */
import { InputError } from '../../errors';
import type { Progress } from '../../runtime/evaluate';
import type { DistillParams, DistillProgress, DistillResult } from './types';

/** Distils `p.teacher` into `p.student` and writes the run folder. */
export async function runDistill(p: DistillParams, signal?: AbortSignal, progress: Progress = () => {}, onStep: (s: DistillProgress) => void = () => {}): Promise<DistillResult> {
  void signal;
  void progress;
  void onStep;
  throw new InputError(p.teacher, 'distillation is not implemented yet');
}
