// Test helpers for the data plane: Kong-shaped entities with their defaults, snapshots with a
// real hash written to the store exactly as the control plane does, and a real upstream
// server on loopback that echoes what it received.
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { createConnection, type AddressInfo } from 'node:net';
import type { GatehouseConfig } from '@gatehouse/core/config.ts';
import { loadConfig } from '@gatehouse/core/config.ts';
import type { RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import { buildSnapshot, publishSnapshot, routeEntity } from '@gatehouse/core/test-fixtures.ts';

const now = () => Math.floor(Date.now() / 1000);

export { consumerEntity as consumer, pluginEntity as plugin, serviceEntity as service } from '@gatehouse/core/test-fixtures.ts';
export { buildSnapshot as snapshot, publishSnapshot as publish } from '@gatehouse/core/test-fixtures.ts';

// Routes made one after another get increasing created_at (ms-spaced), so Kong's
// "older route first" tie-break is deterministic in tests.
let createdSeq = 0;
export function route(fields: Partial<RouteEntity>, svc?: ServiceEntity | null): RouteEntity {
  const t = now() * 1000 + createdSeq++;
  return routeEntity({ created_at: t, updated_at: t, ...fields }, svc);
}

export interface Echo {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  upstream: string;
}

export interface Upstream {
  port: number;
  server: Server;
  requests: number;
  close(): Promise<void>;
}

/** An upstream answering JSON `{method, url, headers, body, upstream: name}`; `handler` may take over. */
export async function startUpstream(
  name: string,
  handler?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, body: Buffer) => boolean | void,
): Promise<Upstream> {
  const up: Upstream = { port: 0, server: null as unknown as Server, requests: 0, close: async () => {} };
  const server = createServer((req, res) => {
    up.requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (handler && handler(req, res, body) === true) return;
      const echo: Echo = { method: req.method!, url: req.url!, headers: req.headers, body: body.toString(), upstream: name };
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(JSON.stringify(echo));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as AddressInfo).port;
  up.server = server;
  up.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return up;
}

export interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json(): any;
}

/** One HTTP request (no keep-alive agent, so nothing outlives the test). */
export function req(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; host?: string; timeoutMs?: number } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: { host: options.host ?? 'localhost', ...options.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body) });
        });
        res.on('error', reject);
      },
    );
    r.setTimeout(options.timeoutMs ?? 10_000, () => r.destroy(new Error(`request ${path} timed out`)));
    r.on('error', reject);
    if (options.body !== undefined) r.end(options.body);
    else r.end();
  });
}

/** Sends `request` as raw bytes (it should say `Connection: close`) and resolves with all the answer. */
export function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1', () => socket.write(request));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (text += d));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw exchange timed out')));
  });
}

export function dpConfig(overrides: Record<string, string>): GatehouseConfig {
  return loadConfig({ GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0', GATEHOUSE_LOG_LEVEL: 'error', ...overrides });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 10_000, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * Publishes numbered snapshots to `store` and waits until `dataPlane()` serves each; `version`
 * is the last one published (other data planes on the same store can wait for it too).
 */
export function snapshotApplier(store: Parameters<typeof publishSnapshot>[0], dataPlane: () => { configVersion: { version: number } | null }) {
  const applier = {
    version: 0,
    async apply(content: Parameters<typeof buildSnapshot>[1]): Promise<void> {
      const snap = buildSnapshot(++applier.version, content);
      await publishSnapshot(store, snap);
      await waitFor('snapshot applied', () => dataPlane().configVersion?.version === snap.version);
    },
  };
  return applier;
}

/** Writes `chunk` again and again, as fast as `out` takes it, until it is destroyed (an upstream that never ends). */
export function writeForever(out: import('node:stream').Writable, chunk: Buffer | string): void {
  const more = () => {
    while (!out.destroyed) if (!out.write(chunk)) return void out.once('drain', more);
  };
  more();
}
