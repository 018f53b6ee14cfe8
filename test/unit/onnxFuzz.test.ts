import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, StringStringEntryProtoSchema } from 'onnx-buf';
import { OnnxModel } from '../../src/core/formats/onnx/model';
import { decodeOnnx } from '../../src/core/formats/onnx/read';
import { writeOnnx } from '../../src/core/formats/onnx/write';
import { seededRandom } from '../../src/core/random';
import { buildSampleModel } from '../../src/core/samples/sampleModel';
import { repoRoot, tempDir } from './helpers/paths';

/**
 * Bad input, at scale: a corpus of mutated models (truncations, flipped bytes, huge varint lengths, external
 * data that escapes its folder or is missing or short) is fed to `whittle inspect` and `whittle rewrite`.
 * Each must exit 1 with one line on stderr naming the file, within 5 s, and leave no output file.
 */
const cli = path.join(repoRoot, 'dist', 'cli.js');
const dir = tempDir('whittle-fuzz-');

interface Case {
  name: string;
  /** The model file (its folder may hold external data). */
  file: string;
}

function corpus(): Case[] {
  const cases: Case[] = [];
  const base = buildSampleModel();
  const rand = seededRandom(42);
  const add = (name: string, bytes: Uint8Array, extra?: (caseDir: string) => void): void => {
    const caseDir = path.join(dir, name);
    fs.mkdirSync(caseDir);
    const file = path.join(caseDir, 'model.onnx');
    fs.writeFileSync(file, bytes);
    extra?.(caseDir);
    cases.push({ name, file });
  };
  // Truncations anywhere, from the first bytes to the last.
  const cuts = new Set<number>();
  for (let i = 0; i < 80; i++) cuts.add(i < 10 ? i + 1 : Math.floor((base.length - 1) * (i / 80) ** 0.5));
  for (const at of cuts) add(`truncate-${at}`, base.subarray(0, at));
  // Flipped bytes in the structure (outside weight data, where a flip still leaves a valid model).
  const weightRegions = rawDataRegions(base);
  const structural = [...base.keys()].filter((i) => !weightRegions.some(([s, e]) => i >= s && i < e));
  const flipped = new Set<number>();
  for (let tries = 0; flipped.size < 100 && tries < 20000; tries++) {
    const at = structural[Math.floor(rand() * structural.length)];
    if (flipped.has(at)) continue;
    const bytes = Uint8Array.from(base);
    bytes[at] ^= 0xff;
    if (stillValid(bytes)) continue;
    add(`flip-${at}`, bytes);
    flipped.add(at);
  }
  // Huge length prefixes: the length varint of a length-delimited field replaced by ~4 GB or 2^62.
  const lengths = lengthFieldOffsets(base);
  for (let i = 0; i < 40; i++) {
    const { tagEnd, lenBytes } = lengths[Math.floor((i / 40) * lengths.length)];
    const huge = i % 2 ? [0xff, 0xff, 0xff, 0xff, 0x0f] : [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
    add(`huge-length-${i}`, Uint8Array.from([...base.subarray(0, tagEnd), ...huge, ...base.subarray(tagEnd + lenBytes)]));
  }
  // External data: escaping the folder, absolute, missing, short, negative or overflowing offsets.
  const external = externalModel();
  const withLocation = (location: string, offset = '0', length?: string) => {
    const m = { proto: decodeOnnx(external.bytes, 'x.onnx') };
    const t = m.proto.graph!.initializer[0];
    t.externalData = [create(StringStringEntryProtoSchema, { key: 'location', value: location }), create(StringStringEntryProtoSchema, { key: 'offset', value: offset })];
    if (length) t.externalData.push(create(StringStringEntryProtoSchema, { key: 'length', value: length }));
    return toBinary(ModelProtoSchema, m.proto);
  };
  const data = (caseDir: string) => fs.writeFileSync(path.join(caseDir, 'weights.bin'), external.data);
  add('ext-parent-passwd', withLocation('../../etc/passwd'), data);
  add('ext-parent-deep', withLocation('../../../../../../../../etc/passwd'), data);
  add('ext-absolute', withLocation('/etc/passwd'), data);
  add('ext-sibling-dir', withLocation('../x/weights.bin'), data);
  add('ext-missing', withLocation('weights.bin'));
  add('ext-missing-other-name', withLocation('nope.bin'), data);
  add('ext-folder', withLocation('sub'), (d) => fs.mkdirSync(path.join(d, 'sub')));
  add('ext-short', withLocation('weights.bin'), (d) => fs.writeFileSync(path.join(d, 'weights.bin'), external.data.subarray(0, 10)));
  add('ext-offset-past-end', withLocation('weights.bin', '1000000'), data);
  add('ext-negative-offset', withLocation('weights.bin', '-8'), data);
  add('ext-huge-length', withLocation('weights.bin', '0', '99999999999999'), data);
  add('ext-nan-offset', withLocation('weights.bin', 'abc'), data);
  return cases;
}

/** A small model whose one weight lives in weights.bin. */
function externalModel(): { bytes: Uint8Array; data: Uint8Array } {
  const src = path.join(dir, 'ext-src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'm.onnx'), buildSampleModel());
  const out = path.join(src, 'out', 'm.onnx');
  writeOnnx(OnnxModel.open(path.join(src, 'm.onnx')), out, { externalData: 'always', minTensorBytes: 0 });
  // Re-point every initializer's location at weights.bin, keeping offsets.
  const proto = decodeOnnx(fs.readFileSync(out), out);
  for (const t of proto.graph!.initializer) for (const e of t.externalData) if (e.key === 'location') e.value = 'weights.bin';
  return { bytes: toBinary(ModelProtoSchema, proto), data: fs.readFileSync(`${out}.data`) };
}

function stillValid(bytes: Uint8Array): boolean {
  try {
    OnnxModel.fromBytes(bytes, 'probe.onnx').close();
    return true;
  } catch {
    return false;
  }
}

/** [start, end) of every raw_data payload, found by re-encoding markers would be brittle: use the decoded views. */
function rawDataRegions(bytes: Uint8Array): Array<[number, number]> {
  const m = OnnxModel.fromBytes(bytes, 'probe.onnx');
  return m.graph.initializer.map((t) => [t.rawData.byteOffset - bytes.byteOffset, t.rawData.byteOffset - bytes.byteOffset + t.rawData.byteLength]);
}

/** Where length-delimited fields' length varints sit, scanning the top-level message and the graph. */
function lengthFieldOffsets(bytes: Uint8Array): Array<{ tagEnd: number; lenBytes: number }> {
  const found: Array<{ tagEnd: number; lenBytes: number }> = [];
  const scan = (start: number, end: number, depth: number) => {
    let pos = start;
    while (pos < end) {
      const [tag, tagLen] = varint(bytes, pos);
      pos += tagLen;
      const wire = tag & 7;
      if (wire === 0) pos += varint(bytes, pos)[1];
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const [len, lenBytes] = varint(bytes, pos);
        found.push({ tagEnd: pos, lenBytes });
        // Descend into the graph (field 7 of ModelProto) to reach nodes and initializers.
        if (depth === 0 && tag >> 3 === 7) scan(pos + lenBytes, pos + lenBytes + len, 1);
        pos += lenBytes + len;
      } else break;
    }
  };
  scan(0, bytes.length, 0);
  return found;
}

function varint(bytes: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let shift = 0;
  let n = 0;
  while (true) {
    const b = bytes[pos + n++];
    v += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return [v, n];
    shift += 7;
  }
}

function runCli(args: string[]): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, stdout, ms: Date.now() - t0 });
    });
  });
}

test('a corpus of 200+ mutated models: exit 1, one line naming the file, no hang, no output', { timeout: 600_000 }, async (t) => {
  const cases = corpus();
  assert.ok(cases.length >= 200, `${cases.length} cases`);
  const problems: string[] = [];
  let slowest = 0;
  const examples = new Map<string, string>();
  const queue = [...cases];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      for (const command of ['inspect', 'rewrite']) {
        const out = path.join(path.dirname(c.file), `out-${command}`);
        const r = await runCli([command, c.file, '--json', '--out', out]);
        slowest = Math.max(slowest, r.ms);
        const lines = r.stderr.trimEnd().split('\n');
        const what = `${c.name} ${command}`;
        if (r.signal) problems.push(`${what}: killed by ${r.signal} after ${r.ms} ms`);
        else if (r.code !== 1) problems.push(`${what}: exit ${r.code}: ${r.stderr.slice(0, 200)}`);
        else if (lines.length !== 1 || !lines[0].startsWith('whittle: ')) problems.push(`${what}: stderr is not one line: ${r.stderr.slice(0, 300)}`);
        else if (!lines[0].includes(path.dirname(c.file))) problems.push(`${what}: the message does not name the file: ${lines[0]}`);
        else examples.set(`${c.name.replace(/-?\d+$/, '')} ${command}`, lines[0].replace(path.dirname(c.file), '<case>'));
        if (r.stdout !== '') problems.push(`${what}: printed on stdout`);
        if (fs.existsSync(out)) problems.push(`${what}: left an output folder`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  t.diagnostic(`${cases.length} mutated models x 2 commands; slowest ${slowest} ms`);
  for (const [kind, message] of [...examples].sort()) t.diagnostic(`${kind}: ${message}`);
  assert.deepEqual(problems, []);
});
