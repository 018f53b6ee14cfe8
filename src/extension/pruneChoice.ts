/** What the Prune… command asks for, and how it becomes the prune job's parameters (no `vscode` here, so unit tests reach it). */

/** Arguments a caller (a test, another extension) can pass to skip the pickers; `sparsity` alone is enough. */
export interface PruneOptions {
  /** Fraction of weights to zero; with `structured`, the fraction of channels to remove per group. */
  sparsity: number;
  scope?: 'layer' | 'global' | 'sensitivity';
  pattern?: 'none' | '2:4' | '4:8';
  /** How weights are scored (default magnitude); wanda and sparsegpt read calibration data. */
  method?: 'magnitude' | 'wanda' | 'sparsegpt';
  /** Remove whole channels with their dependency groups (the model really shrinks) instead of zeroing weights. */
  structured?: boolean;
  data?: string;
  limit?: number;
}

/** The prune job's shape parameters for a choice: N:M fixes the sparsity, structured removes channels, else sparsity and scope. */
export function pruneShape(choice: PruneOptions): { pattern: string; method?: PruneOptions['method'] } | { sparsity: number; structured: 'channels' } | { sparsity: number; scope: NonNullable<PruneOptions['scope']>; method?: PruneOptions['method'] } {
  const method = choice.method && choice.method !== 'magnitude' ? { method: choice.method } : {};
  if (choice.structured) return { sparsity: choice.sparsity, structured: 'channels' };
  if (choice.pattern && choice.pattern !== 'none') return { pattern: choice.pattern, ...method };
  return { sparsity: choice.sparsity, scope: choice.scope ?? 'layer', ...method };
}

/** How a prune choice reads in the progress title: '2:4', '50% (layer)', '30% of channels'. */
export function pruneWhat(choice: PruneOptions): string {
  const shape = pruneShape(choice);
  const method = 'method' in shape && shape.method ? `, ${shape.method}` : '';
  if ('pattern' in shape) return `${shape.pattern}${method}`;
  if ('structured' in shape) return `${Math.round(shape.sparsity * 100)}% of channels`;
  return `${Math.round(shape.sparsity * 100)}% (${shape.scope}${method})`;
}
