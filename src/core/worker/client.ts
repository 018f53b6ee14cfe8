import { Worker } from 'node:worker_threads';
import { CancelledError, RpcEndpoint } from '../../protocol/rpc';
import type { FromWorkerEvent, ToWorkerEvent, WorkerHostRequests, WorkerRequests } from '../../protocol/worker';

/**
 * The host's handle on the compute worker (`dist/worker.js`). It starts the worker on first use, and
 * terminates it when a request is cancelled (a blocking ORT run cannot be interrupted any other way) or on
 * dispose; the next request starts a fresh one.
 */
export class WorkerClient {
  private worker: Worker | undefined;
  private endpoint: RpcEndpoint<WorkerRequests, WorkerHostRequests, ToWorkerEvent, FromWorkerEvent> | undefined;
  private inFlight = 0;

  constructor(
    private readonly workerFile: string,
    private readonly onEvent: (event: FromWorkerEvent) => void = () => {},
  ) {}

  /** Runs a request in the worker; aborting `signal` stops it within a second, whatever it is doing. */
  async request<K extends keyof WorkerRequests & string>(method: K, params: WorkerRequests[K]['params'], signal?: AbortSignal): Promise<WorkerRequests[K]['result']> {
    const endpoint = this.start();
    const onAbort = () => this.stop('cancelled');
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

  /** Terminates the worker. */
  dispose(): void {
    this.stop('worker disposed');
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

  private stop(reason: string): void {
    const worker = this.worker;
    const endpoint = this.endpoint;
    this.worker = undefined;
    this.endpoint = undefined;
    endpoint?.dispose(reason);
    void worker?.terminate();
  }
}
