import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { parseArgs, commonFlags } from '../../src/cli/args';
import { writeFileAtomic } from '../../src/core/atomicWrite';
import { tensorStats } from '../../src/core/analysis/stats';
import { tempDir } from './helpers/paths';

describe('writeFileAtomic', () => {
  const dir = tempDir();

  test('writes the file, creates its folder, and leaves no temp file', () => {
    const file = path.join(dir, 'a', 'b', 'out.bin');
    writeFileAtomic(file, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...fs.readFileSync(file)], [1, 2, 3]);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['out.bin']);
  });

  test('replaces an existing file whole', () => {
    const file = path.join(dir, 'replace.txt');
    fs.writeFileSync(file, 'old contents that are longer');
    writeFileAtomic(file, 'new');
    assert.equal(fs.readFileSync(file, 'utf8'), 'new');
  });

  test('a failed write leaves neither a partial file nor a temp file', () => {
    const target = path.join(dir, 'is-a-folder');
    fs.mkdirSync(target);
    assert.throws(() => writeFileAtomic(target, 'x'));
    assert.ok(fs.statSync(target).isDirectory());
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });
});

describe('parseArgs', () => {
  test('values, = values, booleans and repeats', () => {
    const { positionals, flags } = parseArgs(['m.onnx', '--json', '--ep=cpu', '--limit', '10', '--shape', 'x=1x3', '--shape', 'y=2'], commonFlags);
    assert.deepEqual(positionals, ['m.onnx']);
    assert.deepEqual(flags, { json: true, ep: 'cpu', limit: '10', shape: ['x=1x3', 'y=2'] });
  });

  test('a missing value and a value on a boolean are errors', () => {
    assert.throws(() => parseArgs(['--out'], commonFlags), /--out needs a value/);
    assert.throws(() => parseArgs(['--json=yes'], commonFlags), /--json takes no value/);
  });
});

describe('tensorStats', () => {
  test('min, max, mean, population std and exact-zero sparsity', () => {
    const s = tensorStats(Float32Array.from([0, 2, 0, 4, -1]));
    assert.deepEqual([s.min, s.max, s.sparsity, s.nonFinite], [-1, 4, 0.4, 0]);
    assert.ok(Math.abs(s.mean - 1) < 1e-12);
    assert.ok(Math.abs(s.std - Math.sqrt((1 + 1 + 1 + 9 + 4) / 5)) < 1e-12);
  });

  test('an all-NaN tensor has no figures, only a count', () => {
    const s = tensorStats([NaN, NaN]);
    assert.equal(s.nonFinite, 2);
    assert.ok(Number.isNaN(s.mean));
  });
});
