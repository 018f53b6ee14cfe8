import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runRecipe } from '../src/core/recipe/run';
import type { Recipe } from '../src/core/recipe/types';

/**
 * The README's example recipe on mnist-8, end to end through `runRecipe` (what `whittle run` runs): prune to
 * 50% under the chain's 1-point budget, then static int8 calibrated on the first 512 MNIST test images,
 * evaluated on the other 9,488. Runs it twice (the second time from a copy of the recipe in another folder)
 * and prints the figures, both SHA-256s and the wall time of each run; then cancels a third run after 1 s and
 * prints how long it took to stop and whether anything was left.
 *   node out/bench/recipe.js
 */
async function main(): Promise<void> {
  const shared = process.env.WHITTLE_SHARED_DATA ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data');
  const model = path.join(shared, 'models', 'onnx-mnist-8', 'mnist.onnx');
  const images = path.join(shared, 'mnist', 't10k-images-idx3-ubyte.gz');
  if (!fs.existsSync(images) || !fs.existsSync(model)) {
    console.log(`skipped: no mnist-8 or MNIST under ${shared} (set WHITTLE_SHARED_DATA)`);
    return;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-bench-recipe-'));
  try {
    const write = (folder: string): string => {
      fs.mkdirSync(folder, { recursive: true });
      fs.copyFileSync(model, path.join(folder, 'mnist.onnx'));
      for (const f of ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']) fs.copyFileSync(path.join(path.dirname(images), f), path.join(folder, f));
      const recipe: Recipe = {
        model: 'mnist.onnx',
        data: 't10k-images-idx3-ubyte.gz#512:',
        seed: 0,
        ep: 'cpu',
        maxDrop: 1,
        passes: [
          { pass: 'prune', sparsity: 0.5, scope: 'global' },
          { pass: 'quantize', mode: 'static', calibration: 'percentile', calibData: 't10k-images-idx3-ubyte.gz#:512' },
        ],
      };
      const file = path.join(folder, 'mnist.whittle.json');
      fs.writeFileSync(file, JSON.stringify(recipe, null, 2));
      return file;
    };
    const t0 = Date.now();
    const a = await runRecipe({ file: write(path.join(tmp, 'a')) });
    const t1 = Date.now();
    const b = await runRecipe({ file: write(path.join(tmp, 'b', 'elsewhere')) });
    const t2 = Date.now();
    const c = write(path.join(tmp, 'c'));
    const controller = new AbortController();
    let abortedAt = 0;
    setTimeout(() => {
      abortedAt = Date.now();
      controller.abort();
    }, 1000);
    let stopMs = -1;
    const cancelled = await runRecipe({ file: c }, controller.signal).then(
      () => 'finished',
      (err: Error) => {
        stopMs = Date.now() - abortedAt;
        return err.name;
      },
    );
    const left = fs.readdirSync(path.dirname(c)).sort();
    console.log(
      JSON.stringify(
        {
          sizeBytes: a.sizeBytes,
          params: a.params,
          sparsity: a.sparsity,
          accuracy: a.metrics.accuracy,
          samples: a.metrics.after.samples,
          budget: a.budget,
          pruneChosen: (JSON.parse(fs.readFileSync(a.steps[0].report, 'utf8')) as { budget?: { chosen: number } }).budget?.chosen,
          latencyMs: a.latencyMs,
          ep: a.ep,
          sha256: [a.sha256, b.sha256],
          identical: a.sha256 === b.sha256,
          seconds: [(t1 - t0) / 1000, (t2 - t1) / 1000],
          cancel: { result: cancelled, stopMs, left },
          warnings: a.warnings.length,
        },
        null,
        2,
      ),
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
