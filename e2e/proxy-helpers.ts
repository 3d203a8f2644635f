// Helpers for the proxy end-to-end tests: `node bin/gatehouse.js <command>` (or `npm start`) as a
// child process, an upstream on loopback, an admin client, and a TCP link to Redis the test can cut.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { getFreePort, TcpRelay, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';

export const root = join(import.meta.dirname, '..');

export interface Proc {
  child: ChildProcess;
  output: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The environment a started process gets: ours without the servers and data dir, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = { ...process.env };
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'GATEHOUSE_REDIS_PREFIX', 'GATEHOUSE_DATA_DIR', 'GATEHOUSE_WORKERS']) delete clean[k];
  return { ...clean, GATEHOUSE_LOG_LEVEL: 'warn', ...env };
}

/** `kill` sends a signal to what the Proc stands for (the child, or its whole process group). */
function track(child: ChildProcess, kill: (signal: NodeJS.Signals) => void = (signal) => child.kill(signal)): Proc {
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: Proc = {
    child,
    output: '',
    exited,
    stop: (signal = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        kill(signal);
      }),
  };
  child.stdout!.on('data', (c) => (proc.output += c));
  child.stderr!.on('data', (c) => (proc.output += c));
  return proc;
}

export function gatehouse(command: string, env: Record<string, string>, nodeArgs: string[] = []): Proc {
  return track(spawn(process.execPath, [...nodeArgs, join(root, 'bin/gatehouse.js'), command], { cwd: root, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
}

/**
 * `npm start`, the README's command: npm, its shell and gatehouse run in a process group of
 * their own, which is signalled as a whole (npm need not pass signals on).
 */
export function npmStart(env: Record<string, string>): Proc {
  const child = spawn('npm', ['start'], { cwd: root, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const signalGroup = (signal: NodeJS.Signals | 0) => {
    try {
      process.kill(-child.pid!, signal);
      return true;
    } catch {
      return false; // the group is gone
    }
  };
  const proc = track(child, signalGroup);
  const stopNpm = proc.stop;
  // npm (or its shell) can exit before gatehouse has closed its data dir: wait for the whole group.
  proc.stop = async (signal) => {
    await stopNpm(signal);
    const deadline = Date.now() + 10_000;
    while (signalGroup(0)) {
      if (Date.now() > deadline) signalGroup('SIGKILL');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return proc;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, procs: Proc[] = [], stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ''}\n${procs.map((p) => p.output.slice(-3000)).join('\n---\n')}`);
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any;
}

export function http(port: number, path: string, options: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const r = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        agent: false,
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...options.headers },
      },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body) }));
      },
    );
    r.setTimeout(10_000, () => r.destroy(new Error(`${path} timed out`)));
    r.on('error', reject);
    r.end(payload);
  });
}

/** An upstream answering `{"upstream": name, "url": ...}`. */
export async function upstream(name: string): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: name, url: req.url, host: req.headers.host }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** A relay to the test Redis that the test can cut and restore (the shared Redis keeps running). */
export async function redisLink(port: number): Promise<TcpRelay> {
  return new TcpRelay(TEST_REDIS_URL, port);
}

/** `gatehouse data-plane` with two workers on a plain and a TLS listener, on the test Redis under `prefix`. */
export async function dataPlaneProcess(prefix: string, dataDir: string, env: Record<string, string> = {}): Promise<{ proc: Proc; port: number; tlsPort: number }> {
  const port = await getFreePort();
  const tlsPort = await getFreePort();
  const proc = gatehouse('data-plane', {
    REDIS_URL: TEST_REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}, 127.0.0.1:${tlsPort} ssl`,
    GATEHOUSE_DATA_DIR: dataDir,
    GATEHOUSE_WORKERS: '2',
    ...env,
  });
  return { proc, port, tlsPort };
}
