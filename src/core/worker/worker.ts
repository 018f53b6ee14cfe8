import { parentPort } from 'node:worker_threads';
import { layerHistogram } from '../analysis/histogram';
import { runStatsTasks } from '../analysis/parallelStats';
import { analyze } from '../analysis/sensitivity';
import { tensorTile } from '../analysis/tiles';
import { cachedQuantError } from '../analysis/quantError';
import { inspectModel } from '../inspect';
import { evaluate } from '../runtime/evaluate';
import { probeEp } from '../runtime/probe';
import { runPrune } from '../passes/run';
import { runQuantize } from '../passes/quantize/run';
import { runQuantizeTfjs } from '../passes/quantize/tfjs';
import { runPruneTfjs } from '../passes/prune/tfjs';
import { runFinetune } from '../train/finetune';
import { runRecipe } from '../recipe/run';
import { compareModels } from '../report/compare';
import { runDistill } from '../passes/distill/run';
import { nodeOutputs } from '../valueNames';
import { ModelCache } from './modelCache';
import { RpcEndpoint, type Handlers } from '../../protocol/rpc';
import type { FromWorkerEvent, ToWorkerEvent, WorkerHostRequests, WorkerRequests } from '../../protocol/worker';

/** Models the panels look into, kept open across their histogram and tile requests. */
const models = new ModelCache(3);

/** The compute worker: model reading now; onnxruntime sessions, sweeps and passes as they land. */
const handlers: Handlers<WorkerRequests> = {
  inspect: ({ file }) => inspectModel(file),
  weightStats: ({ tasks }) => runStatsTasks(tasks),
  drain: () => endpoint.whenIdle(1),
  probeEp: ({ ep }) => probeEp(ep),
  evaluate: (params, signal) => evaluate(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  prune: (params, signal) => runPrune(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  quantize: (params, signal) => runQuantize(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  finetune: (params, signal) =>
    runFinetune(
      params,
      signal,
      (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message }),
      (t) => endpoint.sendEvent({ type: 'trainStep', point: { ...t } }),
    ),
  pruneTfjs: (params, signal) => runPruneTfjs(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  quantizeTfjs: (params, signal) => runQuantizeTfjs(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  runRecipe: (params, signal) => runRecipe(params, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  compareModels: ({ a, b, ...options }, signal) => compareModels(a, b, options, signal, (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message })),
  distill: (params, signal) =>
    runDistill(
      params,
      signal,
      (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message }),
      (progress) => endpoint.sendEvent({ type: 'distillStep', progress }),
    ),
  valueNames: ({ file }) => nodeOutputs(file),
  layerHistogram: ({ file, layer, tensor, bins, range }) => layerHistogram(models.get(file), layer, tensor, bins, range),
  tensorTile: ({ file, tensor, row, col, rows, cols, stride, mode, source }) => tensorTile(models.get(file), tensor, row, col, rows, cols, stride, mode, source ? models.onnx(source) : undefined),
  quantError: ({ file, source, layer }) => {
    const { error: _values, axis: _axis, ...summary } = cachedQuantError(models.onnx(file), models.onnx(source), layer);
    return summary;
  },
  analyze: (params, signal) =>
    analyze(
      params,
      signal,
      (event) => endpoint.sendEvent(event),
      (fraction, message) => endpoint.sendEvent({ type: 'progress', fraction, message }),
    ),
};

if (!parentPort) throw new Error('worker.js must run in a worker thread');
const port = parentPort;
const endpoint = new RpcEndpoint<WorkerHostRequests, WorkerRequests, FromWorkerEvent, ToWorkerEvent>(
  (msg, transfer) => port.postMessage(msg, transfer ?? []),
  handlers,
);
port.on('message', (msg) => endpoint.receive(msg));
