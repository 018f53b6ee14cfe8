// Bundles the extension host, the CLI, the worker, one bundle per webview, and the test/e2e programs.
// Usage: node esbuild.config.mjs [--watch] [--production]
import * as esbuild from 'esbuild';
import { readFileSync, readdirSync, existsSync, mkdirSync, copyFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

const node = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  // onnxruntime-node is a native addon shipped beside the bundle; vscode is provided by the host.
  external: ['vscode', 'onnxruntime-node', 'playwright-core'],
  define: { WHITTLE_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
};

const testsIn = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => `${dir}/${f}`) : []);

const builds = [
  { ...node, entryPoints: { extension: 'src/extension/extension.ts', worker: 'src/core/worker/worker.ts' }, outdir: 'dist' },
  { ...node, entryPoints: { cli: 'src/cli/main.ts' }, outdir: 'dist', banner: { js: '#!/usr/bin/env node' } },
  {
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: !production,
    minify: production,
    entryPoints: { inspector: 'webview/inspector/main.ts', sensitivity: 'webview/sensitivity/main.ts', compress: 'webview/compress/main.ts', training: 'webview/training/main.ts' },
    outdir: 'dist/webview',
    loader: { '.css': 'text' },
    logLevel: 'warning',
  },
  // Test and tool programs: not shipped.
  { ...node, entryPoints: testsIn('test/unit'), outdir: 'out/test/unit' },
  { ...node, entryPoints: ['test/integration/index.ts'], outdir: 'out/test/integration' },
  { ...node, entryPoints: { run: 'test/e2e/run.ts', start: 'scripts/start.ts', compressOnly: 'test/e2e/compressOnly.ts' }, outdir: 'out/e2e' },
  { ...node, entryPoints: testsIn('bench'), outdir: 'out/bench' },
].filter((b) => (Array.isArray(b.entryPoints) ? b.entryPoints.length : true));

// tfjs-backend-wasm loads its binaries from the folder setWasmPaths names: the one beside each bundle.
const wasmSrc = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
for (const dir of ['dist', 'out/test/unit', 'out/bench']) {
  mkdirSync(dir, { recursive: true });
  for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm']) copyFileSync(`${wasmSrc}/${f}`, `${dir}/${f}`);
}

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
  console.log('esbuild: watching');
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
