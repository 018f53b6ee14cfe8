import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { humanModels, humanRow, type HumanRow } from './lib/tfjsHuman';

/**
 * The graph models of @vladmandic/human: inspect, round trip (identical dequantized weights), and every float
 * weight re-quantized to uint8, uint16 and float16, run in tfjs against the original (output cosine, shard bytes).
 * Prints one JSON object; one line per model on stderr as it goes.
 *   node out/bench/tfjsHuman.js
 */
async function main(): Promise<void> {
  const files = humanModels();
  if (!files.length) throw new Error('npm package @vladmandic/human is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-human-'));
  try {
    const rows: HumanRow[] = [];
    for (const f of files) {
      const row = await humanRow(f, dir);
      process.stderr.write(`${JSON.stringify(row)}\n`);
      rows.push(row);
    }
    process.stdout.write(JSON.stringify({ models: rows }, null, 1) + '\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = 1;
  });
}
