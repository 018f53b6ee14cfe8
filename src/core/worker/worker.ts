import { parentPort } from 'node:worker_threads';
import { runStatsTasks } from '../analysis/parallelStats';
import { inspectModel } from '../inspect';
import { evaluate } from '../runtime/evaluate';
import { probeEp } from '../runtime/probe';
import { RpcEndpoint, type Handlers } from '../../protocol/rpc';
import type { FromWorkerEvent, ToWorkerEvent, WorkerHostRequests, WorkerRequests } from '../../protocol/worker';

/** The compute worker: model reading now; onnxruntime sessions, sweeps and passes as they land. */
const handlers: Handlers<WorkerRequests> = {
  inspect: ({ file }) => inspectModel(file),
  weightStats: ({ tasks }) => runStatsTasks(tasks),
  drain: () => endpoint.whenIdle(1),
  probeEp: ({ ep }) => probeEp(ep),
  evaluate: (params, signal) => evaluate(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
};

if (!parentPort) throw new Error('worker.js must run in a worker thread');
const port = parentPort;
const endpoint = new RpcEndpoint<WorkerHostRequests, WorkerRequests, FromWorkerEvent, ToWorkerEvent>(
  (msg, transfer) => port.postMessage(msg, transfer ?? []),
  handlers,
);
port.on('message', (msg) => endpoint.receive(msg));
