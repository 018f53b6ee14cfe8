import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** Where the repository (the extension under test) lives: out/e2e/x.js -> repo root. */
export const repoRoot = path.resolve(__dirname, '..', '..');

/** An installed code-server: its folder and the Node it runs on. */
export interface CodeServerInstall {
  csDir: string;
  nodeDir: string;
}

/** Installs code-server into the cache (once; reused after) with scripts/installCodeServer.sh. */
export function installCodeServer(): CodeServerInstall {
  const res = spawnSync('bash', [path.join(repoRoot, 'scripts', 'installCodeServer.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) throw new Error(`installing code-server failed (exit ${res.status})`);
  const get = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(res.stdout)?.[1];
  const csDir = get('CS_DIR');
  const nodeDir = get('NODE_DIR');
  if (!csDir || !nodeDir) throw new Error(`installCodeServer.sh printed no CS_DIR/NODE_DIR:\n${res.stdout}`);
  return { csDir, nodeDir };
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A running code-server. */
export interface CodeServer {
  port: number;
  /** http://127.0.0.1:PORT */
  base: string;
  /** Its private folder: user data, extensions, logs. */
  runDir: string;
  logFile: string;
  /** Stops the server and every child it started. */
  stop(): Promise<void>;
}

/** Options for startCodeServer. */
export interface StartOptions {
  install: CodeServerInstall;
  port?: number;
  /** Link this folder into the extensions dir as the installed extension (dev mode). */
  extensionDir?: string;
  /** Install this .vsix into the extensions dir first, as a user would. */
  vsix?: string;
  /** Extra environment for the server and its extension host. */
  env?: Record<string, string>;
  /** Extra code-server flags. */
  args?: string[];
}

/**
 * Starts code-server on 127.0.0.1 with auth off and isolated user-data, extensions and XDG folders, so it
 * never writes into the home folder, and waits for /healthz.
 */
export async function startCodeServer(opts: StartOptions): Promise<CodeServer> {
  const port = opts.port ?? (await freePort());
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'whittle-cs-'));
  const exts = path.join(runDir, 'extensions');
  const userData = path.join(runDir, 'user-data');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.mkdirSync(exts, { recursive: true });
  if (opts.extensionDir) {
    const pkg = JSON.parse(fs.readFileSync(path.join(opts.extensionDir, 'package.json'), 'utf8'));
    fs.symlinkSync(opts.extensionDir, path.join(exts, `${pkg.publisher}.${pkg.name}-${pkg.version}`));
  }
  // Silence every lookup the closed network would refuse.
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'workbench.startupEditor': 'none',
      'workbench.secondarySideBar.defaultVisibility': 'hidden',
      'workbench.tips.enabled': false,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'extensions.ignoreRecommendations': true,
      'telemetry.telemetryLevel': 'off',
      'update.mode': 'none',
      'workbench.enableExperiments': false,
      'chat.disableAIFeatures': true,
      'git.enabled': false,
      'security.workspace.trust.enabled': false,
    }),
  );
  const env = {
    ...process.env,
    PATH: `${path.join(opts.install.nodeDir, 'bin')}:${process.env.PATH}`,
    XDG_CONFIG_HOME: path.join(runDir, 'xdg-config'),
    XDG_DATA_HOME: path.join(runDir, 'xdg-data'),
    XDG_CACHE_HOME: path.join(runDir, 'xdg-cache'),
    ...opts.env,
  };
  const bin = path.join(opts.install.csDir, 'node_modules', '.bin', 'code-server');
  if (opts.vsix) {
    const res = spawnSync(bin, ['--user-data-dir', userData, '--extensions-dir', exts, '--install-extension', opts.vsix], { env, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`code-server --install-extension ${opts.vsix} failed: ${res.stderr || res.stdout}`);
  }
  const config = path.join(runDir, 'config.yaml');
  fs.writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const logFile = path.join(runDir, 'server.log');
  const log = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn(
    bin,
    [
      '--config', config,
      '--user-data-dir', userData,
      '--extensions-dir', exts,
      '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust',
      '--disable-getting-started-override', '--ignore-last-opened',
      ...(opts.args ?? []),
    ],
    // Its own process group, so stop() reaches every child (extension host, pty host, watcher).
    { env, detached: true, stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const killed = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    if (!killed) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Children that outlive the leader still belong to the group.
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // none left
    }
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited with code ${child.exitCode}; see ${logFile}`);
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer /healthz within 60 s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { port, base, runDir, logFile, stop };
}
