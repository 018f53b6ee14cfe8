import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runPrune, type PruneParams, type PruneResult } from '../src/core/passes/run';

/**
 * The pruning issue's table: mnist-8 and opt-mnist, calibrated on the first 1,000 MNIST test images and
 * evaluated on the other 9,000, one row per method; then a pass/fail line for each of the issue's criteria.
 * Prints markdown. Needs ../shared/data (or WHITTLE_SHARED_DATA); the sources are only read.
 *   node out/bench/pruneTable.js
 */
const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
const images = path.join(shared, 'mnist/t10k-images-idx3-ubyte.gz');
const calib = `${images}#:1000`;
const evalData = `${images}#1000:`;
const models = [
  { name: 'mnist-8', file: path.join(shared, 'models/onnx-mnist-8/mnist.onnx') },
  { name: 'opt-mnist', file: path.join(shared, 'models/onnx-wonnx-opt-mnist/opt-mnist.onnx') },
];

interface Row {
  label: string;
  params: Partial<PruneParams>;
}
const rows: Row[] = [
  { label: 'magnitude 50%, per layer', params: { sparsity: 0.5 } },
  { label: 'magnitude 50%, global', params: { sparsity: 0.5, scope: 'global' } },
  { label: 'SparseGPT 50%, per layer', params: { sparsity: 0.5, method: 'sparsegpt' } },
  { label: 'magnitude 70%, uniform', params: { sparsity: 0.7 } },
  { label: 'magnitude 70%, sensitivity-guided', params: { sparsity: 0.7, scope: 'sensitivity' } },
  { label: 'Wanda 70%', params: { sparsity: 0.7, method: 'wanda' } },
  { label: 'SparseGPT 70%', params: { sparsity: 0.7, method: 'sparsegpt' } },
  { label: 'SparseGPT 70%, sensitivity-guided', params: { sparsity: 0.7, method: 'sparsegpt', scope: 'sensitivity' } },
  { label: '2:4 magnitude', params: { pattern: '2:4' } },
  { label: '2:4 SparseGPT', params: { pattern: '2:4', method: 'sparsegpt' } },
];

async function main(): Promise<void> {
  if (!fs.existsSync(images)) {
    process.stdout.write(`skipped: ${images} is not present (set WHITTLE_SHARED_DATA)\n`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-prune-'));
  process.env.WHITTLE_CACHE_DIR = path.join(tmp, 'cache');
  const verdicts: string[] = [];
  try {
    for (const m of models) {
      const results = new Map<string, PruneResult>();
      let k = 0;
      for (const row of rows) {
        const t0 = Date.now();
        const r = await runPrune({ model: m.file, data: evalData, calibData: calib, out: path.join(tmp, `${m.name}-${k++}`), ...row.params });
        results.set(row.label, r);
        process.stderr.write(`${m.name} ${row.label}: ${(Date.now() - t0) / 1000}s ${JSON.stringify(r.metrics.accuracy)} ${r.warnings.join(' | ')}\n`);
      }
      const first = results.values().next().value!;
      const acc = first.metrics.accuracy!;
      const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
      const lines = [
        `### ${m.name}: calibration ${path.basename(calib)}, evaluation ${first.data} (${first.metrics.after.samples} images)`,
        '',
        '| method | accuracy | drop (pt) | sparsity | per-layer sparsity |',
        '|---|---:|---:|---:|---|',
        `| baseline | ${pct(acc.before)} | | 0% | |`,
        ...rows.map((row) => {
          const r = results.get(row.label)!;
          return `| ${row.label} | ${pct(r.metrics.accuracy!.after)} | ${r.metrics.accuracy!.dropPt.toFixed(2)} | ${pct(r.sparsity)} | ${r.layers.map((l) => `${l.layer} ${(l.sparsity * 100).toFixed(0)}%`).join(', ')} |`;
        }),
        '',
      ];
      process.stdout.write(lines.join('\n') + '\n');
      const drop = (label: string) => results.get(label)!.metrics.accuracy!.dropPt;
      const fifty = Math.min(drop('magnitude 50%, per layer'), drop('magnitude 50%, global'));
      const uniform = drop('magnitude 70%, uniform');
      const guided = drop('magnitude 70%, sensitivity-guided');
      const recovery = Math.min(drop('Wanda 70%'), drop('SparseGPT 70%'));
      verdicts.push(
        `- ${m.name}: unstructured 50% drop <= 0.5 pt: ${fifty <= 0.5 ? 'PASS' : 'FAIL'} (per layer ${drop('magnitude 50%, per layer').toFixed(2)}, global ${drop('magnitude 50%, global').toFixed(2)} pt)`,
        `- ${m.name}: sensitivity-guided 70% drops at least 30% less than uniform 70% (or both <= 0.1 pt): ${guided <= 0.7 * uniform || (guided <= 0.1 && uniform <= 0.1) ? 'PASS' : 'FAIL'} (${guided.toFixed(2)} vs ${uniform.toFixed(2)} pt)`,
        `- ${m.name}: Wanda or SparseGPT at 70% beats magnitude 70%: ${recovery < uniform ? 'PASS' : 'FAIL'} (Wanda ${drop('Wanda 70%').toFixed(2)}, SparseGPT ${drop('SparseGPT 70%').toFixed(2)}, magnitude ${uniform.toFixed(2)} pt)`,
      );
    }
    process.stdout.write(['Criteria:', ...verdicts, ''].join('\n'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
