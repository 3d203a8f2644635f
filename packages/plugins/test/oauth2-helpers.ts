// Test bed for the oauth2 plugin: real data planes (startDataPlane) on loopback, each with its
// own Redis connections under a per-test prefix, a real upstream that echoes what it received,
// and config snapshots published to Redis the way the control plane does.
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '@gatehouse/core/config.ts';
import { createLogger } from '@gatehouse/core/logger.ts';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import type { ConsumerEntity, PluginEntity, RouteEntity, ServiceEntity } from '@gatehouse/core/entities.ts';
import type { Snapshot, SnapshotContent } from '@gatehouse/core/snapshot.ts';
import { buildSnapshot, consumerEntity, pluginEntity, publishSnapshot, routeEntity, serviceEntity } from '@gatehouse/core/test-fixtures.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import type { SharedStore } from '@gatehouse/core/store/types.ts';
import { TcpRelay, tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { startDataPlane, type DataPlane } from '@gatehouse/data-plane';
import type { Oauth2DataPlaneHandler, SnapshotCredential } from '../src/oauth2/handler.ts';
import { oauth2Plugin } from '../src/oauth2/index.ts';
import { oauth2ConfigSchema, type Oauth2Config } from '../src/oauth2/schema.ts';
import { hashSecret } from '../src/oauth2/secrets.ts';
import { KEYS } from '../src/oauth2/tokens.ts';

export const silent = createLogger({ role: 'test', silent: true });
const now = () => Math.floor(Date.now() / 1000);

export function makeService(port: number, fields: Partial<ServiceEntity> = {}): ServiceEntity {
  // Short timeouts and no retries: a broken upstream fails a test quickly.
  return serviceEntity({ host: '127.0.0.1', port, retries: 0, connect_timeout: 5000, write_timeout: 5000, read_timeout: 5000, ...fields });
}

export function makeRoute(paths: string[], svc: ServiceEntity, fields: Partial<RouteEntity> = {}): RouteEntity {
  return routeEntity({ paths, ...fields }, svc);
}

export const makeConsumer = consumerEntity;

/** An oauth2 plugin entity with the config validated and completed as the control plane does. */
export function makeOauth2Plugin(config: Partial<Oauth2Config>, scope: Partial<Pick<PluginEntity, 'route' | 'service'>> = {}): PluginEntity<Oauth2Config> {
  return pluginEntity('oauth2', oauth2Plugin.completeConfig!(oauth2ConfigSchema.parse(config), null), scope);
}

export interface TestCredential extends SnapshotCredential {
  /** The plaintext secret (tests only; the snapshot carries the hash). */
  plain_secret: string;
}

export async function makeCredential(
  consumer: ConsumerEntity,
  fields: { name?: string; client_id?: string; secret?: string; hash_secret?: boolean; redirect_uris?: string[] | null; client_type?: 'confidential' | 'public' } = {},
): Promise<TestCredential> {
  const secret = fields.secret ?? `secret-${randomUUID()}`;
  return {
    id: randomUUID(),
    consumer: { id: consumer.id },
    name: fields.name ?? 'app',
    client_id: fields.client_id ?? `client-${randomUUID()}`,
    client_secret: await hashSecret(secret, fields.hash_secret ?? false),
    hash_secret: fields.hash_secret ?? false,
    redirect_uris: fields.redirect_uris === undefined ? ['https://app.test/cb'] : fields.redirect_uris,
    client_type: fields.client_type ?? 'confidential',
    tags: null,
    created_at: now(),
    plain_secret: secret,
  };
}

export interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json(): any;
}

export interface CallOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Form body (sets content-type). */
  form?: Record<string, string>;
  /** JSON body (sets content-type). */
  json?: unknown;
  https?: boolean;
}

export function form(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

export function basic(id: string, secret?: string): string {
  return `Basic ${Buffer.from(secret === undefined ? id : `${id}:${secret}`).toString('base64')}`;
}

export interface TestDataPlane {
  dp: DataPlane;
  httpPort: number;
  httpsPort: number;
  handler(): Oauth2DataPlaneHandler;
  call(path: string, options?: CallOptions): Promise<Res>;
}

export interface Upstream {
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** An upstream answering `{method, url, headers, body}` as JSON. */
export async function startEchoUpstream(): Promise<Upstream> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
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

export function request(port: number, path: string, options: CallOptions = {}): Promise<Res> {
  let body = options.body;
  const headers: Record<string, string | string[]> = { host: 'gateway.test', ...options.headers };
  if (options.form) {
    body = form(options.form);
    headers['content-type'] ??= 'application/x-www-form-urlencoded';
  } else if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] ??= 'application/json';
  }
  const method = options.method ?? (body !== undefined ? 'POST' : 'GET');
  const send = options.https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = send(
      { host: '127.0.0.1', port, path, method, headers, agent: false, rejectUnauthorized: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, headers: res.headers, body: text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      },
    );
    r.setTimeout(10_000, () => r.destroy(new Error(`request ${path} timed out`)));
    r.on('error', reject);
    r.end(body);
  });
}

export interface Env {
  prefix: string;
  /** The store the test (standing in for the control plane) writes snapshots with. */
  store: SharedStore;
  upstream: Upstream;
  dataPlanes: TestDataPlane[];
  /** Publishes the content as the next snapshot and waits until every data plane serves it. */
  publish(content: Partial<SnapshotContent>): Promise<Snapshot>;
  close(): Promise<void>;
}

export async function startEnv(
  options: { dataPlanes?: number; trustedIps?: string; dataPlaneRedisUrl?: string; plugins?: ReadonlyMap<string, PluginDefinition> } = {},
): Promise<Env> {
  const prefix = testRedisPrefix();
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  // What the control plane sets once the store holds its restored tokens: without it, a token
  // not found is 503 (the store is being restored), not 401.
  await store.set(KEYS.sentinel, String(Date.now()));
  const upstream = await startEchoUpstream();
  const dirs: { path: string; remove(): void }[] = [];
  const dataPlanes: TestDataPlane[] = [];
  let version = 0;
  for (let i = 0; i < (options.dataPlanes ?? 1); i++) {
    const dir = tempDir('gatehouse-oauth2-');
    dirs.push(dir);
    const config = loadConfig({
      REDIS_URL: options.dataPlaneRedisUrl ?? TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl',
      GATEHOUSE_LOG_LEVEL: 'error',
      GATEHOUSE_TRUSTED_IPS: options.trustedIps ?? '',
    });
    const dp = await startDataPlane({ config, logger: silent, pollIntervalMs: 200, plugins: options.plugins });
    const httpPort = dp.addresses.find((a) => !a.ssl)!.port;
    const httpsPort = dp.addresses.find((a) => a.ssl)!.port;
    dataPlanes.push({
      dp,
      httpPort,
      httpsPort,
      handler: () => dp.proxy.plugins.handler('oauth2') as Oauth2DataPlaneHandler,
      call: (path, o = {}) => request(o.https === false ? httpPort : httpsPort, path, { https: o.https !== false, ...o }),
    });
  }
  return {
    prefix,
    store,
    upstream,
    dataPlanes,
    async publish(content) {
      version++;
      // Test-only plaintext never reaches the snapshot.
      const credentials = Object.fromEntries(
        Object.entries(content.credentials ?? {}).map(([k, list]) => [k, (list as Record<string, unknown>[]).map(({ plain_secret: _p, ...rest }) => rest)]),
      );
      const snap = buildSnapshot(version, { ...content, credentials });
      await publishSnapshot(store, snap);
      const deadline = Date.now() + 10_000;
      while (dataPlanes.some((d) => d.dp.configVersion?.version !== version)) {
        if (Date.now() > deadline) throw new Error(`data planes did not apply snapshot ${version}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return snap;
    },
    async close() {
      for (const d of dataPlanes) await d.dp.close();
      await upstream.close();
      await store.close();
      for (const d of dirs) d.remove();
    },
  };
}

/** A typical set-up: service + route /api with the oauth2 plugin, one consumer and credential. */
export async function standardSetup(env: Env, config: Partial<Oauth2Config>, credentialFields: Parameters<typeof makeCredential>[1] = {}) {
  const service = makeService(env.upstream.port);
  const route = makeRoute(['/api'], service);
  const plugin = makeOauth2Plugin(config, { service: { id: service.id } });
  const consumer = makeConsumer('bob', 'bob-custom');
  const credential = await makeCredential(consumer, credentialFields);
  const content = { services: [service], routes: [route], plugins: [plugin], consumers: [consumer], credentials: { oauth2_credentials: [credential] } };
  await env.publish(content);
  return { service, route, plugin, consumer, credential, content, provisionKey: plugin.config.provision_key as string };
}

export type Relay = TcpRelay;

/** A TCP relay to Redis that a test can cut and restore (a Redis outage without touching Redis). */
export function startRedisRelay(): Promise<Relay> {
  return startTcpRelay(TEST_REDIS_URL);
}

/** A relay to the server of `url` (redis:// or postgresql://), already open. */
export async function startTcpRelay(targetUrl: string): Promise<Relay> {
  const relay = new TcpRelay(targetUrl);
  await relay.open();
  return relay;
}
