// Helpers for the proxy end-to-end tests: `node bin/gatehouse.js <command>` as a child
// process, an upstream on loopback, an admin client, and a TCP link to Redis the test can cut.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { TcpRelay, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';

export const root = join(import.meta.dirname, '..');

export interface Proc {
  child: ChildProcess;
  output: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function gatehouse(command: string, env: Record<string, string>, nodeArgs: string[] = []): Proc {
  const clean = { ...process.env };
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'GATEHOUSE_REDIS_PREFIX', 'GATEHOUSE_DATA_DIR', 'GATEHOUSE_WORKERS']) delete clean[k];
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'bin/gatehouse.js'), command], {
    cwd: root,
    env: { ...clean, GATEHOUSE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: Proc = {
    child,
    output: '',
    exited,
    stop: (signal = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill(signal);
      }),
  };
  child.stdout!.on('data', (c) => (proc.output += c));
  child.stderr!.on('data', (c) => (proc.output += c));
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
