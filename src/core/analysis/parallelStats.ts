import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InputError } from '../errors';
import { ExternalFiles } from '../model/externalFiles';
import { TensorRef } from '../model/tensorRef';
import { RpcError } from '../../protocol/rpc';
import type { StatsTask } from '../../protocol/worker';
import { WorkerClient } from '../worker/client';
import { accumulate, emptyAccumulator, finishStats, mergeAccumulators, type Accumulator, type TensorStats } from './stats';

/** Below this many bytes of weights, starting workers costs more than it saves. */
const parallelThreshold = 64 << 20;

/** Options for weightStats. */
export interface ParallelOptions {
  /** Threads to use, the calling one included (default: the machine's available parallelism). */
  threads?: number;
  /** The worker bundle; default `worker.js` beside the running bundle. Without one, everything runs inline. */
  workerFile?: string;
  /** Bytes of weights below which everything runs inline (default 64 MiB). */
  minBytes?: number;
}

/**
 * Statistics of many weights, split across cores: each big tensor is cut into element ranges, shared with
 * workers without copying (the model file sits in a SharedArrayBuffer; external data is read by each worker
 * from its file), and the partial results are merged. Tensors that cannot be shared are done on this thread.
 */
export async function weightStats(refs: TensorRef[], opts: ParallelOptions = {}): Promise<Map<TensorRef, TensorStats>> {
  const unique = [...new Set(refs)].filter((r) => r.numeric && r.count > 0);
  const threads = Math.max(1, opts.threads ?? os.availableParallelism());
  const workerFile = opts.workerFile ?? path.join(__dirname, 'worker.js');
  const totalBytes = unique.reduce((a, r) => a + r.byteLength, 0);
  const partials = new Map<TensorRef, Accumulator>(unique.map((r) => [r, emptyAccumulator()]));
  const shareable = unique.filter((r) => taskStorage(r) !== undefined);
  if (threads < 2 || totalBytes < (opts.minBytes ?? parallelThreshold) || shareable.length === 0 || !fs.existsSync(workerFile)) {
    for (const r of unique) accumulate(r.chunks(), partials.get(r)!);
    return finish(partials);
  }

  // Cut the shareable elements into `threads` equal portions, crossing tensor boundaries.
  const total = shareable.reduce((a, r) => a + r.count, 0);
  const per = Math.ceil(total / threads);
  const portions: Array<Array<{ ref: TensorRef; start: number; end: number }>> = Array.from({ length: threads }, () => []);
  let p = 0;
  let room = per;
  for (const ref of shareable) {
    for (let start = 0; start < ref.count; ) {
      const end = Math.min(ref.count, start + room);
      portions[p].push({ ref, start, end });
      room -= end - start;
      start = end;
      if (room === 0 && p < threads - 1) {
        p++;
        room = per;
      }
    }
  }
  const clients = portions.slice(1).map(() => new WorkerClient(workerFile));
  try {
    const remote = portions.slice(1).map((portion, i) =>
      clients[i].request('weightStats', { tasks: portion.map(({ ref, start, end }) => ({ ...describe(ref), start, end })) }),
    );
    // If this thread's share fails first, the workers' answers must not become unhandled rejections.
    for (const r of remote) r.catch(() => {});
    // This thread's share, while the workers run theirs.
    for (const { ref, start, end } of portions[0]) accumulate(ref.chunks(undefined, start, end), partials.get(ref)!);
    for (const r of unique) if (!shareable.includes(r)) accumulate(r.chunks(), partials.get(r)!);
    const results = await Promise.all(remote);
    results.forEach((accs, i) => portions[i + 1].forEach(({ ref }, j) => mergeAccumulators(partials.get(ref)!, accs[j])));
    return finish(partials);
  } catch (err) {
    if (err instanceof RpcError && err.input) throw new InputError(undefined, err.message);
    throw err;
  } finally {
    for (const c of clients) c.dispose();
  }
}

function finish(partials: Map<TensorRef, Accumulator>): Map<TensorRef, TensorStats> {
  return new Map([...partials].map(([r, acc]) => [r, finishStats(acc)]));
}

/** How a worker reaches a tensor's bytes without a copy, or undefined when it cannot. */
function taskStorage(ref: TensorRef): StatsTask['storage'] | undefined {
  const s = ref.storage;
  if (s.kind === 'bytes' && s.bytes.buffer instanceof SharedArrayBuffer) return { kind: 'shared', buffer: s.bytes.buffer, byteOffset: s.bytes.byteOffset, byteLength: s.bytes.byteLength };
  if (s.kind === 'external') return { kind: 'external', modelFile: s.files.modelFile, file: s.file, offset: s.offset, length: s.length };
  return undefined;
}

function describe(ref: TensorRef): Omit<StatsTask, 'start' | 'end'> {
  return { name: ref.name, dtype: ref.dtype, shape: ref.shape, source: ref.source ?? '', storage: taskStorage(ref)! };
}

/** The worker's side: partial statistics of each task's element range. */
export function runStatsTasks(tasks: StatsTask[]): Accumulator[] {
  const files = new Map<string, ExternalFiles>();
  try {
    return tasks.map((t) => {
      let ref: TensorRef;
      if (t.storage.kind === 'shared') {
        ref = new TensorRef(t.name, t.dtype, t.shape, { kind: 'bytes', bytes: new Uint8Array(t.storage.buffer, t.storage.byteOffset, t.storage.byteLength) }, t.source);
      } else {
        const { modelFile, file, offset, length } = t.storage;
        let ext = files.get(modelFile);
        if (!ext) files.set(modelFile, (ext = new ExternalFiles(modelFile)));
        ref = new TensorRef(t.name, t.dtype, t.shape, { kind: 'external', file, offset, length, files: ext }, t.source);
      }
      return accumulate(ref.chunks(undefined, t.start, t.end));
    });
  } finally {
    for (const f of files.values()) f.close();
  }
}
