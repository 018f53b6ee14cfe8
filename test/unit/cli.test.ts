import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { sampleModelParams } from '../../src/core/samples/sampleModel';
import { repoRoot, tempDir } from './helpers/paths';

/** Integration tier: the built CLI (dist/cli.js) as users' scripts call it. */
const cli = path.join(repoRoot, 'dist', 'cli.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, WHITTLE_DEBUG: '' } });
const dir = tempDir();
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));

describe('whittle CLI', () => {
  test('--version prints the package version', () => {
    const r = run('--version');
    assert.equal(r.status, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test('--help lists the commands and the common flags', () => {
    const r = run('--help');
    assert.equal(r.status, 0);
    for (const word of ['inspect <model>', '--json', '--out DIR', '--ep EP', '--data SPEC', '--limit N', 'Exit codes']) assert.ok(r.stdout.includes(word), word);
  });

  test('sample writes the bundled model, and inspect --json prints one JSON object with the contract fields', () => {
    const model = path.join(dir, 'sample.onnx');
    const w = run('sample', model, '--json');
    assert.equal(w.status, 0, w.stderr);
    assert.equal(JSON.parse(w.stdout).output, model);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
    const r = run('inspect', model, '--json');
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'exactly one line of JSON on stdout');
    const s = JSON.parse(lines[0]);
    for (const key of ['format', 'irVersion', 'opsets', 'producer', 'inputs', 'outputs', 'params', 'bytes', 'layers']) assert.ok(key in s, key);
    assert.equal(s.params, sampleModelParams);
    for (const key of ['name', 'shape', 'dtype', 'params', 'bytes', 'sparsity', 'min', 'max', 'mean', 'std']) assert.ok(key in s.layers[0].weights[0], key);
  });

  test('inspect without --json prints a readable summary', () => {
    const model = path.join(dir, 'sample.onnx');
    if (!fs.existsSync(model)) run('sample', model);
    const r = run('inspect', model);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /29,738 parameters/);
    assert.match(r.stdout, /Gemm\s+\/fc1\/Gemm/);
  });

  const failures: Array<[string, string[], number, RegExp]> = [
    ['a missing file', ['inspect', path.join(dir, 'missing.onnx'), '--json'], 1, /^whittle: .*missing\.onnx: no such file$/],
    ['a garbage file', ['inspect', path.join(dir, 'garbage.onnx'), '--json'], 1, /^whittle: .*garbage\.onnx: not an ONNX model, or truncated or corrupted/],
    ['no model argument', ['inspect'], 1, /^whittle: missing <model> argument/],
    ['an unknown option', ['inspect', 'x.onnx', '--frobnicate'], 1, /^whittle: unknown option --frobnicate/],
    ['a bad --ep value', ['inspect', 'x.onnx', '--ep', 'tpu'], 1, /^whittle: option --ep must be one of auto, cpu, cuda, webgpu, dml, coreml, not 'tpu'$/],
    ['an unknown command', ['frob'], 1, /^whittle: unknown command 'frob'/],
    ['distill without --student', ['distill', '--teacher', 'x.onnx', '--data', 'random'], 1, /^whittle: distill needs --student MODEL or --student derive:RATIO$/],
    ['int4 outside weight-only', ['quantize', 'x.onnx', '--mode', 'static', '--bits', '4'], 1, /^whittle: --bits 4 is for --mode weight-only; --mode static quantizes to 8 bits$/],
    ['a bad calibration method', ['quantize', 'x.onnx', '--calibration', 'guess'], 1, /^whittle: option --calibration must be one of minmax, percentile, entropy, mse, not 'guess'$/],
    ['a planned command', ['run', 'x.whittle.json'], 2, /^whittle: The 'run' command is not available yet in this version of Whittle$/],
  ];
  fs.writeFileSync(path.join(dir, 'garbage.onnx'), Buffer.from([0x08, 0x07, 0x3a, 0xff, 0xff, 0x01, 0x02]));
  for (const [name, args, code, message] of failures) {
    test(`exits ${code} with one line on stderr for ${name}`, () => {
      const r = run(...args);
      assert.equal(r.status, code, r.stderr);
      assert.equal(r.stdout, '', 'nothing on stdout');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], message);
    });
  }
});
