import * as path from 'node:path';
import { installCodeServer, repoRoot, startCodeServer } from './codeServer';
import { makeSampleWorkspace } from './sampleWorkspace';

/**
 * `npm start`: the main job on the bundled default. Starts real VS Code (code-server) with Whittle loaded on a
 * sample workspace holding the generated sample model, prints the URL, and runs until Ctrl+C.
 */
async function main(): Promise<void> {
  const workspace = path.join(repoRoot, 'samples', 'workspace');
  const model = makeSampleWorkspace(workspace);
  console.error('Installing code-server into the cache if needed (first time: a few minutes)…');
  const install = installCodeServer();
  const server = await startCodeServer({ install, port: Number(process.env.PORT ?? 8080), extensionDir: repoRoot });
  const url = `${server.base}/?folder=${encodeURIComponent(workspace)}`;
  console.log(`Whittle is running in VS Code at ${url}`);
  console.log(`Sample model: ${model}  (CLI: node dist/cli.js inspect ${path.relative(process.cwd(), model)})`);
  console.log('Press Ctrl+C to stop.');
  const shutdown = () => void server.stop().then(() => process.exit(0));
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  if (process.env.WHITTLE_START_EXIT_AFTER_MS) setTimeout(shutdown, Number(process.env.WHITTLE_START_EXIT_AFTER_MS));
}

main().catch((err) => {
  console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
