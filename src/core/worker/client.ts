import { Worker } from 'node:worker_threads';
import { CancelledError, RpcEndpoint } from '../../protocol/rpc';
import type { FromWorkerEvent, ToWorkerEvent, WorkerHostRequests, WorkerRequests } from '../../protocol/worker';

/**
 * The host's handle on the compute worker (`dist/worker.js`). It starts the worker on first use. A cancelled
 * request is rejected at once; its worker is retired: told to cancel, drained (the job stops at its next check,
 * after at most one onnxruntime run) and then terminated, while the next request starts a fresh worker.
 * Terminating a worker in the middle of an onnxruntime run aborts the whole process (a Napi::Error thrown
 * during teardown, measured with onnxruntime-node 1.30), so a busy worker is only terminated after a grace period.
 */
export class WorkerClient {
  private worker: Worker | undefined;
  private endpoint: RpcEndpoint<WorkerRequests, WorkerHostRequests, ToWorkerEvent, FromWorkerEvent> | undefined;
  private inFlight = 0;
  private retiring = 0;

  /** How long a cancelled job may take to reach its next check before its worker is terminated regardless. */
  static drainTimeoutMs = 10_000;

  constructor(
    private readonly workerFile: string,
    private readonly onEvent: (event: FromWorkerEvent) => void = () => {},
  ) {}

  /** Runs a request in the worker; aborting `signal` stops it within a second, whatever it is doing. */
  async request<K extends keyof WorkerRequests & string>(method: K, params: WorkerRequests[K]['params'], signal?: AbortSignal): Promise<WorkerRequests[K]['result']> {
    const endpoint = this.start();
    const onAbort = () => this.retire();
    signal?.addEventListener('abort', onAbort, { once: true });
    // An idle worker must not keep a CLI process alive, a busy one must.
    if (this.inFlight++ === 0) this.worker?.ref();
    try {
      return await endpoint.request(method, params, { signal });
    } catch (err) {
      if (signal?.aborted) throw new CancelledError();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (--this.inFlight === 0) this.worker?.unref();
    }
  }

  /** True while a worker thread is alive, a retiring one included. */
  get running(): boolean {
    return this.worker !== undefined || this.retiring > 0;
  }

  /** Retires the worker (drained, then terminated). */
  dispose(): void {
    this.retire();
  }

  private start() {
    if (this.endpoint) return this.endpoint;
    const worker = new Worker(this.workerFile);
    const endpoint = new RpcEndpoint<WorkerRequests, WorkerHostRequests, ToWorkerEvent, FromWorkerEvent>(
      (msg, transfer) => worker.postMessage(msg, transfer ?? []),
      {},
      this.onEvent,
    );
    worker.on('message', (msg) => endpoint.receive(msg));
    worker.on('error', (err) => {
      if (this.worker === worker) this.stop(`worker failed: ${err.message}`);
    });
    worker.on('exit', (code) => {
      if (this.worker === worker) this.stop(`worker exited with code ${code}`);
    });
    this.worker = worker;
    this.endpoint = endpoint;
    return endpoint;
  }

  /** Detaches the current worker and terminates it once it is idle (or after drainTimeoutMs). */
  private retire(): void {
    const worker = this.worker;
    const endpoint = this.endpoint;
    if (!worker || !endpoint) return;
    this.worker = undefined;
    this.endpoint = undefined;
    this.retiring++;
    worker.ref();
    let timer: NodeJS.Timeout | undefined;
    const drained = endpoint.request('drain', {});
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, WorkerClient.drainTimeoutMs)));
    void Promise.race([drained, timeout])
      .catch(() => {})
      .then(async () => {
        clearTimeout(timer);
        endpoint.dispose('worker retired');
        await worker.terminate();
        this.retiring--;
      });
  }

  private stop(reason: string): void {
    const worker = this.worker;
    const endpoint = this.endpoint;
    this.worker = undefined;
    this.endpoint = undefined;
    endpoint?.dispose(reason);
    void worker?.terminate();
  }
}
