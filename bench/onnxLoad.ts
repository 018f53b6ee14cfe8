import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { create, toBinary } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, TensorProtoSchema } from 'onnx-buf';
import { encodeModel, floatTensor, graph, model, node, valueInfo } from '../src/core/formats/onnx/build';
import { normal, seededRandom } from '../src/core/random';

/**
 * Reading a large ONNX model: `whittle inspect --json` against Python's `onnx.load` (and onnx.load plus numpy
 * statistics), each in its own child process so wall time and peak RSS are per tool. Baselines, run in the same
 * process: the file size, `node -e 0`, and `python3 -c "import onnx"`. Prints one JSON object; progress on stderr.
 *   node out/bench/onnxLoad.js [targetMB=500] [repeats=3]
 */
async function main(): Promise<void> {
  const [targetMB = 500, repeats = 3] = process.argv.slice(2).map(Number);
  if (!(targetMB > 0) || !Number.isInteger(repeats) || repeats < 1) throw new Error('usage: node out/bench/onnxLoad.js [targetMB=500] [repeats=3]');
  const cli = path.join(__dirname, '..', '..', 'dist', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing; run node esbuild.config.mjs first`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-onnxload-'));
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  // A terminal's Ctrl-C reaches the children too (same process group), a `kill` of this process does not.
  const onSignal = (signal: NodeJS.Signals) => {
    running?.kill('SIGKILL');
    cleanup();
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const file = path.join(dir, 'mlp.onnx');
    const preload = path.join(dir, 'peakRss.js');
    const script = path.join(dir, 'onnxLoad.py');
    fs.writeFileSync(preload, preloadSource);
    fs.writeFileSync(script, pythonSource);

    const plan = sizeFor(targetMB * 1e6);
    log(`writing ${plan.layers} layers of ${plan.hidden}x${plan.hidden} float32 (~${targetMB} MB) to ${file}`);
    const t0 = performance.now();
    const written = writeMlp(file, plan.layers, plan.hidden);
    log(`wrote ${(written.bytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const tools: Record<ToolName, Tool> = {
      nodeStartup: { command: process.execPath, args: ['--require', preload, '-e', '0'] },
      pythonImportOnnx: { command: PYTHON, args: [script, 'import'] },
      whittleInspect: { command: process.execPath, args: ['--require', preload, cli, 'inspect', file, '--json'] },
      onnxLoad: { command: PYTHON, args: [script, 'load', file] },
      onnxLoadStats: { command: PYTHON, args: [script, 'stats', file] },
    };
    const runs = Object.fromEntries(Object.keys(tools).map((k) => [k, [] as Run[]])) as Record<ToolName, Run[]>;
    // Round-robin, so page-cache state and machine load drift the same way for every tool.
    for (let r = 0; r < repeats; r++) {
      for (const [name, tool] of Object.entries(tools) as Array<[ToolName, Tool]>) {
        const run = await measure(tool, path.join(dir, `rss-${name}-${r}.json`));
        runs[name].push(run);
        log(`run ${r + 1}/${repeats} ${name}: ${run.wallMs.toFixed(0)} ms, peak RSS ${(run.peakRssKB / 1024).toFixed(0)} MB`);
      }
    }

    const checks = checkOutputs(runs.whittleInspect[0].stdout, runs.onnxLoadStats[0].stdout, written.params, written.initializers);
    const median = (name: ToolName, pick: (r: Run) => number) => med(runs[name].map(pick));
    const wall = (name: ToolName) => median(name, (r) => r.wallMs);
    const peak = (name: ToolName) => median(name, (r) => r.peakRssKB) * 1024;
    const inPy = (name: ToolName, key: string) => median(name, (r) => Number(JSON.parse(r.stdout)[key]));
    const python = JSON.parse(runs.pythonImportOnnx[0].stdout) as Record<string, unknown>;

    const ratios = {
      whittleTimeVsOnnxLoad: wall('whittleInspect') / wall('onnxLoad'),
      whittleTimeVsPythonStats: wall('whittleInspect') / wall('onnxLoadStats'),
      whittlePeakRssVsFileSize: peak('whittleInspect') / written.bytes,
      onnxLoadPeakRssVsFileSize: peak('onnxLoad') / written.bytes,
      // Context: the same figures without each runtime's fixed start-up cost.
      onnxLoadStatsPeakRssVsFileSize: peak('onnxLoadStats') / written.bytes,
      whittlePeakRssAboveNodeStartupVsFileSize: (peak('whittleInspect') - peak('nodeStartup')) / written.bytes,
      whittleTimeAboveNodeStartupVsOnnxLoadCall: (wall('whittleInspect') - wall('nodeStartup')) / inPy('onnxLoad', 'loadMs'),
    };
    const figure = (name: ToolName) => ({ wallMs: round(wall(name), 0), peakRssMB: round(peak(name) / 2 ** 20, 1) });
    console.log(
      JSON.stringify({
        model: { ...plan, initializers: written.initializers, params: written.params, fileBytes: written.bytes, fileMB: round(written.bytes / 1e6, 1) },
        repeats,
        env: { node: process.version, cpus: os.cpus().length, python: python.python, onnx: python.onnx, numpy: python.numpy, protobuf: python.protobuf },
        medians: {
          nodeStartup: figure('nodeStartup'),
          pythonImportOnnx: figure('pythonImportOnnx'),
          whittleInspect: figure('whittleInspect'),
          onnxLoad: { ...figure('onnxLoad'), loadCallMs: round(inPy('onnxLoad', 'loadMs'), 0) },
          onnxLoadStats: { ...figure('onnxLoadStats'), loadCallMs: round(inPy('onnxLoadStats', 'loadMs'), 0), statsMs: round(inPy('onnxLoadStats', 'statsMs'), 0) },
        },
        ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, round(v, 3)])),
        goals: { fasterThanOnnxLoad: ratios.whittleTimeVsOnnxLoad < 1, peakRssUnder1_3xFile: ratios.whittlePeakRssVsFileSize < 1.3 },
        checks,
      }),
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
  }
}

/** Debian's python3-onnx lives here; the `python3` first on PATH may be another interpreter without onnx. */
const PYTHON = '/usr/bin/python3';

type ToolName = 'nodeStartup' | 'pythonImportOnnx' | 'whittleInspect' | 'onnxLoad' | 'onnxLoadStats';

interface Tool {
  command: string;
  args: string[];
}

interface Run {
  wallMs: number;
  peakRssKB: number;
  stdout: string;
}

/**
 * Peak RSS is VmHWM from /proc/self/status, read by the measured process itself just before it exits: for node by
 * this preload's 'exit' handler, for Python at the end of the script. Not getrusage's ru_maxrss: Linux folds the
 * pre-exec memory of a forked child into it, so a child of this (large) parent reports the parent's RSS as its
 * own peak (1.3 GB for `node -e 0` under a 1 GB parent, against 40 MB for VmHWM). Not polling /proc/<pid> from
 * outside either: that misses whatever grows after the last poll, and a zombie has no VmHWM left to read.
 */
const preloadSource = `'use strict';
const fs = require('fs');
process.on('exit', () => {
  const hwm = /VmHWM:\\s*(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  fs.writeFileSync(process.env.WHITTLE_BENCH_RSS_OUT, JSON.stringify({ peakRssKB: hwm ? Number(hwm[1]) : -1 }));
});
`;

/** import | load FILE | stats FILE; prints JSON with the timings, peak RSS (VmHWM, as above) and, for stats, per-tensor figures. */
const pythonSource = `import json, re, sys, time
t0 = time.perf_counter()
import numpy as np
import onnx
from onnx import numpy_helper
from google.protobuf.internal import api_implementation
out = {'importMs': (time.perf_counter() - t0) * 1e3, 'python': sys.version.split()[0], 'onnx': onnx.__version__,
       'numpy': np.__version__, 'protobuf': api_implementation.Type()}
mode = sys.argv[1]
if mode in ('load', 'stats'):
    t1 = time.perf_counter()
    m = onnx.load(sys.argv[2])
    out['loadMs'] = (time.perf_counter() - t1) * 1e3
    if mode == 'stats':
        t2 = time.perf_counter()
        weights = []
        for t in m.graph.initializer:
            a = numpy_helper.to_array(t)
            weights.append({'name': t.name, 'params': int(a.size), 'min': float(a.min()), 'max': float(a.max()),
                            'mean': float(a.mean()), 'std': float(a.std()), 'sparsity': (a.size - np.count_nonzero(a)) / a.size})
            del a
        out['statsMs'] = (time.perf_counter() - t2) * 1e3
        out['weights'] = weights
with open('/proc/self/status') as f:
    out['peakRssKB'] = int(re.search(r'VmHWM:\\s*(\\d+) kB', f.read()).group(1))
print(json.dumps(out))
`;

/** The child being measured, if any, so a signal can take it down with us. */
let running: ChildProcess | undefined;

/** Runs one child to completion; wall time is spawn to exit as seen from here, start-up included. */
function measure(tool: Tool, rssFile: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(tool.command, tool.args, { env: { ...process.env, WHITTLE_BENCH_RSS_OUT: rssFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    running = child;
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => stdout.push(b));
    child.stderr.on('data', (b: Buffer) => stderr.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const wallMs = performance.now() - t0;
      clearTimeout(timer);
      running = undefined;
      const what = `${path.basename(tool.command)} ${tool.args.join(' ')}`;
      if (code !== 0) return reject(new Error(`${what} failed (${signal ?? `exit ${code}`}): ${Buffer.concat(stderr).toString().trim().slice(-2000)}`));
      const out = Buffer.concat(stdout).toString();
      try {
        const fromChild = JSON.parse(tool.command === PYTHON ? out : fs.readFileSync(rssFile, 'utf8')) as { peakRssKB: number };
        if (!(fromChild.peakRssKB > 0)) throw new Error('no VmHWM in /proc/self/status');
        resolve({ wallMs, peakRssKB: fromChild.peakRssKB, stdout: out });
      } catch (err) {
        reject(new Error(`${what}: no peak RSS report (${err instanceof Error ? err.message : String(err)})`));
      }
    });
  });
}

interface WeightFigures {
  name: string;
  params: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  std: number | null;
  sparsity: number;
}

/** Whittle's JSON must parse, count every parameter, and agree with numpy's statistics; throws if not. */
function checkOutputs(whittleOut: string, statsOut: string, params: number, initializers: number) {
  const summary = JSON.parse(whittleOut) as { params: number; layers: Array<{ weights: WeightFigures[] }> };
  if (summary.params !== params) throw new Error(`whittle inspect reports ${summary.params} params, the model has ${params}`);
  const ours = new Map(summary.layers.flatMap((l) => l.weights).map((w) => [w.name, w]));
  const theirs = (JSON.parse(statsOut) as { weights: WeightFigures[] }).weights;
  if (ours.size !== initializers || theirs.length !== initializers) throw new Error(`weights: whittle ${ours.size}, numpy ${theirs.length}, model ${initializers}`);
  let worstMeanStd = 0;
  for (const np of theirs) {
    const w = ours.get(np.name);
    if (!w) throw new Error(`whittle inspect has no weight ${np.name}`);
    // Float32 extremes are exact in both; numpy sums in float32 (pairwise), Whittle in float64, hence a tolerance.
    const off = Math.max(Math.abs(w.mean! - np.mean!), Math.abs(w.std! - np.std!)) / np.std!;
    worstMeanStd = Math.max(worstMeanStd, off);
    if (w.params !== np.params || w.min !== np.min || w.max !== np.max || w.sparsity !== np.sparsity || !(off < 1e-4)) {
      throw new Error(`weight ${np.name}: whittle ${JSON.stringify(w)} vs numpy ${JSON.stringify(np)}`);
    }
  }
  return { whittleParams: summary.params, statsMatchNumpy: true, worstMeanStdRelDiff: Number(worstMeanStd.toExponential(2)) };
}

/** Layer count and width for about `bytes` of float32 weights: square matrices of ~16M elements, at least two layers. */
function sizeFor(bytes: number): { layers: number; hidden: number } {
  const layers = Math.max(2, Math.round(bytes / (4096 * 4096 * 4)));
  const hidden = Math.max(64, Math.floor(Math.sqrt(bytes / (layers * 4)) / 64) * 64);
  return { layers, hidden };
}

/**
 * Writes an MLP (MatMul, Add, Relu per layer) with seeded N(0, 0.02) weights, ~10% of them exactly zero, one
 * tensor at a time so the writer holds one layer, not the model. Byte layout is what onnx's C++ serializer emits
 * (fields in number order); the graph's length prefix is worked out before the tensors exist.
 */
function writeMlp(file: string, layers: number, hidden: number): { bytes: number; params: number; initializers: number } {
  const randn = normal(seededRandom(20240611));
  const nodes = [];
  for (let i = 0; i < layers; i++) {
    const x = i === 0 ? 'x' : `h${i - 1}`;
    nodes.push(node('MatMul', [x, `w${i}`], [`mm${i}`]), node('Add', [`mm${i}`, `b${i}`], [`add${i}`]), node('Relu', [`add${i}`], [`h${i}`]));
  }
  const g = graph('mlp', nodes, [valueInfo('x', 1, ['n', hidden])], [valueInfo(`h${layers - 1}`, 1, ['n', hidden])], []);
  const m = model(g, 13);
  // Concatenated encodings of one message type decode as their merge, so each part is encoded on its own and
  // the initializers (GraphProto field 5) go between the nodes and name (1, 2) and the inputs and outputs (11, 12).
  const modelHead = encodeModel(create(ModelProtoSchema, { irVersion: m.irVersion, producerName: m.producerName }));
  const modelTail = encodeModel(create(ModelProtoSchema, { opsetImport: m.opsetImport }));
  const graphHead = toBinary(GraphProtoSchema, create(GraphProtoSchema, { node: g.node, name: g.name }));
  const graphTail = toBinary(GraphProtoSchema, create(GraphProtoSchema, { input: g.input, output: g.output }));

  const tensors = Array.from({ length: layers }, (_, i) => [
    { name: `w${i}`, dims: [hidden, hidden] },
    { name: `b${i}`, dims: [hidden] },
  ]).flat();
  // A float tensor's encoding is its header (dims, data_type, name) then raw_data, field 9.
  const tensorLength = (name: string, dims: number[]) => {
    const n = dims.reduce((a, b) => a * b, 1) * 4;
    return toBinary(TensorProtoSchema, create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 1 })).length + fieldLength(n);
  };
  const graphLength = graphHead.length + tensors.reduce((sum, t) => sum + fieldLength(tensorLength(t.name, t.dims)), 0) + graphTail.length;

  const fd = fs.openSync(file, 'w');
  try {
    const write = (b: Uint8Array) => fs.writeSync(fd, b);
    write(modelHead);
    write(lengthDelimited(7, graphLength));
    write(graphHead);
    let params = 0;
    for (const t of tensors) {
      const values = new Float32Array(t.dims.reduce((a, b) => a * b, 1));
      for (let i = 0; i < values.length; i++) {
        const v = randn() * 0.02;
        values[i] = Math.abs(v) < 0.0025 ? 0 : v;
      }
      const encoded = toBinary(TensorProtoSchema, floatTensor(t.name, t.dims, values));
      if (encoded.length !== tensorLength(t.name, t.dims)) throw new Error(`tensor ${t.name}: encoded ${encoded.length} bytes, expected ${tensorLength(t.name, t.dims)}`);
      write(lengthDelimited(5, encoded.length));
      write(encoded);
      params += values.length;
    }
    write(graphTail);
    write(modelTail);
    // Let writeback finish now rather than during the timed runs.
    fs.fsyncSync(fd);
    return { bytes: fs.fstatSync(fd).size, params, initializers: tensors.length };
  } finally {
    fs.closeSync(fd);
  }
}

/** Tag and length prefix of a length-delimited protobuf field (wire type 2). */
function lengthDelimited(field: number, length: number): Uint8Array {
  return Uint8Array.from([...varint((field << 3) | 2), ...varint(length)]);
}

/** Encoded size of a length-delimited field numbered below 16 (one tag byte) with a payload of `length` bytes. */
function fieldLength(length: number): number {
  return 1 + varint(length).length + length;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function med(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}

function log(message: string): void {
  process.stderr.write(`onnxLoad: ${message}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`onnxLoad: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
