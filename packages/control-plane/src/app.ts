// The admin API: Kong's routes over the entity engine, plus `/`, `/status`, `/plugins/enabled`,
// `/schemas/plugins/{name}` and `/clustering/data-planes`. Express 5 carries the middleware
// (request ids, logging, the admin token); routing is done here on path segments so that 404,
// 405 and nested lookups behave exactly as Kong's generated endpoints.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { GATEHOUSE_VERSION } from '@gatehouse/core/version.ts';
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import {
  DATA_PLANE_TTL_S,
  KongError,
  SNAPSHOT_KEYS,
  createLogger,
  nowSeconds,
  safeEqual,
  type ControlPlanePart,
  type DataPlaneHeartbeat,
  type Database,
  type EntityDefinition,
  type GatehouseConfig,
  type Logger,
  type PluginDefinition,
  type SharedStore,
} from '@gatehouse/core';
import { plugins as registeredPlugins } from '@gatehouse/plugins';
import { parseBody } from './body.ts';
import { consumersEntity, pluginsEntity, routesEntity, servicesEntity } from './core-entities.ts';
import { EntityEngine, UUID_RE, type ParentScope } from './engine.ts';
import { mapError } from './errors.ts';
import { parsePointer, type SnapshotPublisher } from './publisher.ts';

export { GATEHOUSE_VERSION };

export interface AdminAppOptions {
  config: GatehouseConfig;
  db: Database;
  store: SharedStore;
  logger?: Logger;
  /** Plugins available on this node (default: the registry in packages/plugins). */
  plugins?: ReadonlyMap<string, PluginDefinition>;
  /** Admin entities declared by plugins (ControlPlanePart.entities). */
  entities?: EntityDefinition[];
  /** Plugins' control-plane parts: their `afterEntityCommit` hooks see every committed write. */
  parts?: ControlPlanePart[];
  /** Notified after each committed config write; /status reports its state. */
  publisher?: SnapshotPublisher;
  nodeId?: string;
}

export interface AdminAppLocals {
  engine: EntityEngine;
  stats: { requests: number; startedAt: number; active: number };
}

const METHODS_ITEM = 'GET, HEAD, PUT, PATCH, DELETE, OPTIONS';
const METHODS_COLLECTION = 'GET, HEAD, POST, OPTIONS';

const notFound = () => new KongError(404, { message: 'Not found' });
const methodNotAllowed = () => new KongError(405, { message: 'Method not allowed' });

/** Builds the engine with the core entities and the given plugin entities. */
export function createEngine(options: {
  db: Database;
  plugins: ReadonlyMap<string, PluginDefinition>;
  entities?: EntityDefinition[];
  parts?: ControlPlanePart[];
  onConfigChange?: () => void;
  logger?: Logger;
}): EntityEngine {
  const engine = new EntityEngine({
    db: options.db,
    onConfigChange: options.onConfigChange,
    afterEntityCommit: (options.parts ?? []).flatMap((p) => (p.afterEntityCommit ? [p.afterEntityCommit.bind(p)] : [])),
    onAfterCommitError: (err, def) =>
      options.logger?.error('after-commit hook failed', { entity: def.name, error: (err as Error).message }),
  });
  engine.register(servicesEntity);
  engine.register(routesEntity);
  engine.register(consumersEntity);
  engine.register(pluginsEntity((name) => options.plugins.get(name)));
  for (const def of options.entities ?? []) engine.register(def);
  return engine;
}

/** Kong-like `/schemas/plugins/{name}`: the plugin entity's fields with `config` from the plugin's schema. */
function kongSchema(json: any, depth = 0): any {
  if (!json || depth > 16) return { type: 'any' };
  const anyOf: any[] | undefined = json.anyOf ?? json.oneOf;
  if (anyOf) {
    const nonNull = anyOf.filter((x) => x.type !== 'null');
    return nonNull.length === 1 ? kongSchema({ ...nonNull[0], default: json.default }, depth) : { type: 'any' };
  }
  const out: any = {};
  const type = Array.isArray(json.type) ? json.type.find((t: string) => t !== 'null') : json.type;
  if (json.enum) {
    out.type = typeof json.enum[0] === 'number' ? 'number' : 'string';
    out.one_of = json.enum;
  } else if (type === 'object' && json.properties) {
    out.type = 'record';
    const required = new Set<string>(json.required ?? []);
    out.fields = Object.entries(json.properties).map(([k, v]: [string, any]) => {
      const f = kongSchema(v, depth + 1);
      if (required.has(k) && v.default === undefined) f.required = true;
      return { [k]: f };
    });
  } else if (type === 'object') {
    out.type = 'map';
    out.keys = { type: 'string' };
    out.values = kongSchema(json.additionalProperties, depth + 1);
  } else if (type === 'array') {
    out.type = 'array';
    out.elements = kongSchema(json.items, depth + 1);
  } else out.type = type ?? 'any';
  if (json.default !== undefined) out.default = json.default;
  if (json.minimum !== undefined && json.maximum !== undefined) out.between = [json.minimum, json.maximum];
  return out;
}

export function pluginSchemaDocument(plugin: PluginDefinition): Record<string, unknown> {
  let config: any;
  try {
    config = kongSchema(z.toJSONSchema(plugin.configSchema as z.ZodType, { io: 'input', unrepresentable: 'any' }));
  } catch {
    config = { type: 'record', fields: [] };
  }
  config.required = true;
  const fk = (reference: string) => ({ type: 'foreign', reference, default: null, eq: null });
  const protocols = plugin.protocols ?? ['grpc', 'grpcs', 'http', 'https'];
  return {
    fields: [
      { id: { type: 'string', uuid: true, auto: true } },
      { name: { type: 'string', required: true } },
      { instance_name: { type: 'string' } },
      { created_at: { type: 'integer', timestamp: true, auto: true } },
      { updated_at: { type: 'integer', timestamp: true, auto: true } },
      { route: { ...fk('routes'), eq: undefined } },
      { service: { ...fk('services'), eq: undefined } },
      { consumer: plugin.checkEntity?.({ consumer: { id: 'x' }, route: null, service: null, protocols })?.consumer ? fk('consumers') : { ...fk('consumers'), eq: undefined } },
      { protocols: { type: 'set', elements: { type: 'string', one_of: protocols }, default: protocols, required: true } },
      { enabled: { type: 'boolean', default: true } },
      { tags: { type: 'set', elements: { type: 'string' } } },
      { config },
    ],
  };
}

/** Kong-like `/schemas/{entity}`: auto fields, the entity's own fields, its foreign keys. */
export function entitySchemaDocument(def: EntityDefinition): Record<string, unknown> {
  let own: any;
  try {
    own = kongSchema(z.toJSONSchema(def.schema as z.ZodType, { io: 'input', unrepresentable: 'any' }));
  } catch {
    own = { fields: [] };
  }
  const fields: Record<string, unknown>[] = [
    { id: { type: 'string', uuid: true, auto: true } },
    { created_at: { type: 'integer', timestamp: true, auto: true } },
  ];
  if (def.hasUpdatedAt) fields.push({ updated_at: { type: 'integer', timestamp: true, auto: true } });
  fields.push(...(own.fields ?? []));
  for (const fk of def.foreignKeys) {
    fields.push({ [fk.field]: { type: 'foreign', reference: fk.entity, required: fk.required, on_delete: fk.onDelete ?? 'cascade' } });
  }
  return { fields, ...(def.endpointKey ? { endpoint_key: def.endpointKey } : {}) };
}

function requestIdFrom(req: Request): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && /^[\x21-\x7e]{1,200}$/.test(given)) return given;
  return randomUUID();
}

/** Path for logs: item segments of non-config entities (tokens) may be secrets. */
function loggablePath(segments: string[], engine: EntityEngine): string {
  const out = segments.map((s) => (s.length > 80 ? `${s.slice(0, 80)}…` : s));
  for (let i = 0; i + 1 < segments.length; i += 2) {
    const def = engine.byPath.get(segments[i]);
    if (def && !def.isConfig && !UUID_RE.test(segments[i + 1])) out[i + 1] = '[redacted]';
  }
  return `/${out.join('/')}`;
}

export function createAdminApp(options: AdminAppOptions): express.Express {
  const { config, db, store, publisher } = options;
  const logger = options.logger ?? createLogger({ role: 'control-plane', level: config.logLevel });
  const plugins = options.plugins ?? registeredPlugins;
  const nodeId = options.nodeId ?? config.nodeId ?? randomUUID();
  const engine = createEngine({ db, plugins, entities: options.entities, parts: options.parts, onConfigChange: () => publisher?.notify(), logger });
  const stats = { requests: 0, startedAt: Date.now(), active: 0 };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', false);
  app.locals.engine = engine;
  app.locals.stats = stats;

  // Request id, one log line per request.
  app.use((req, res, next) => {
    const id = requestIdFrom(req);
    const started = process.hrtime.bigint();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    res.setHeader('Server', `gatehouse/${GATEHOUSE_VERSION}`);
    stats.requests++;
    stats.active++;
    let logged = false;
    const log = () => {
      if (logged) return;
      logged = true;
      stats.active--;
      try {
        logRequest();
      } catch {
        // Logging must never take the process down (e.g. the socket is already gone).
      }
    };
    const logRequest = () => {
      const segments = req.path.split('/').filter(Boolean).map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      });
      logger.info('admin request', {
        request_id: id,
        method: req.method,
        path: loggablePath(segments, engine),
        status: res.statusCode,
        latency_ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
        client_ip: req.socket?.remoteAddress ?? null,
      });
    };
    res.on('finish', log);
    res.on('close', log);
    next();
  });

  // The admin token, when configured, guards every request.
  app.use((req, res, next) => {
    const token = config.adminToken;
    if (!token) return next();
    const auth = req.headers.authorization;
    const header = req.headers['gatehouse-admin-token'];
    let given: string | null = null;
    if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) given = auth.replace(/^Bearer\s+/i, '').trim();
    else if (typeof header === 'string') given = header.trim();
    if (given !== null && safeEqual(given, token)) return next();
    res.status(401).json({ message: 'Unauthorized' });
  });

  const send = (res: Response, status: number, body?: unknown) => {
    if (status === 204 || body === undefined) res.status(status).end();
    else res.status(status).json(body);
  };

  async function dataPlanes() {
    const all = await store.hgetall(SNAPSHOT_KEYS.dataPlanes);
    const latest = parsePointer(await store.get(SNAPSHOT_KEYS.latest));
    const now = nowSeconds();
    const data: Record<string, unknown>[] = [];
    const stale: string[] = [];
    for (const [field, raw] of Object.entries(all)) {
      let hb: DataPlaneHeartbeat;
      try {
        hb = JSON.parse(raw);
      } catch {
        stale.push(field);
        continue;
      }
      if (typeof hb?.last_seen !== 'number' || now - hb.last_seen > DATA_PLANE_TTL_S) {
        stale.push(field);
        continue;
      }
      let sync_status = 'unknown';
      if (latest && hb.config_hash) sync_status = hb.config_hash === latest.hash ? 'normal' : 'out_of_sync';
      data.push({
        id: hb.id ?? field,
        hostname: hb.hostname ?? null,
        ip: hb.ip ?? null,
        version: hb.version ?? null,
        config_hash: hb.config_hash ?? null,
        config_version: hb.config_version ?? null,
        last_seen: hb.last_seen,
        sync_status,
        workers: hb.workers ?? null,
      });
    }
    if (stale.length) await store.hdel(SNAPSHOT_KEYS.dataPlanes, ...stale).catch(() => {});
    data.sort((a, b) => String(a.id).localeCompare(String(b.id)));
    return { data, next: null };
  }

  async function info() {
    const pluginRows = await db.prisma.plugin.findMany({ distinct: ['name'], select: { name: true } });
    return {
      tagline: 'Welcome to gatehouse',
      version: GATEHOUSE_VERSION,
      hostname: hostname(),
      node_id: nodeId,
      role: 'control_plane',
      configuration: {
        admin_listen: config.adminListen.map((l) => `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}${l.ssl ? ' ssl' : ''}`),
        admin_token: config.adminToken ? 'set' : 'unset',
        proxy_listen: config.proxyListen.map((l) => `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}${l.ssl ? ' ssl' : ''}`),
        database: db.kind === 'postgres' ? 'postgres' : 'pglite (embedded)',
        database_location: db.location,
        store: store.kind === 'redis' ? 'redis' : 'memory (in-process)',
        redis_prefix: store.kind === 'redis' ? config.redisPrefix : null,
        data_dir: config.dataDir,
        auto_migrate: config.autoMigrate,
        ssl_cert: config.sslCert ? 'configured' : 'self-signed (generated in the data dir)',
        log_level: config.logLevel,
      },
      plugins: {
        available_on_server: Object.fromEntries(
          [...plugins.values()].map((p) => [p.name, { version: p.version, priority: p.priority }]),
        ),
        enabled_in_cluster: pluginRows.map((r) => r.name).sort(),
      },
    };
  }

  async function status() {
    let database: Record<string, unknown>;
    try {
      const row = await db.prisma.configVersion.findUnique({ where: { id: 1 } });
      database = { reachable: true, kind: db.kind, config_version: Number(row?.version ?? 0) };
    } catch (err) {
      database = { reachable: false, kind: db.kind, config_version: null, error: mapError(err).body.message };
    }
    let storeStatus: Record<string, unknown>;
    try {
      const reachable = await store.ping();
      const latest = reachable ? parsePointer(await store.get(SNAPSHOT_KEYS.latest)) : null;
      storeStatus = { kind: store.kind, reachable, latest_snapshot: latest };
    } catch {
      storeStatus = { kind: store.kind, reachable: false, latest_snapshot: null };
    }
    const mem = process.memoryUsage();
    return {
      database,
      store: storeStatus,
      publisher: publisher
        ? { last_published: publisher.last, snapshots_published: publisher.published, last_error: publisher.lastError }
        : null,
      server: {
        uptime_s: Math.floor((Date.now() - stats.startedAt) / 1000),
        total_requests: stats.requests,
        connections_active: stats.active,
      },
      memory: { rss_bytes: mem.rss, heap_used_bytes: mem.heapUsed },
    };
  }

  async function body(req: Request) {
    return parseBody(req);
  }

  async function dispatch(req: Request, res: Response) {
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    // The request target taken as a path (never as a URL of its own: `//x` is not host x).
    let url: URL;
    try {
      url = new URL(`http://admin.invalid${req.originalUrl.startsWith('/') ? '' : '/'}${req.originalUrl}`);
    } catch {
      throw new KongError(400, { message: 'Bad request' });
    }
    const query = url.searchParams;
    const rawSegments = url.pathname.split('/');
    // Leading slash, and one trailing slash tolerated; empty segments elsewhere are 404.
    rawSegments.shift();
    if (rawSegments.length > 0 && rawSegments[rawSegments.length - 1] === '') rawSegments.pop();
    if (rawSegments.some((s) => s === '')) throw notFound();
    let seg: string[];
    try {
      seg = rawSegments.map((s) => decodeURIComponent(s));
    } catch {
      throw notFound();
    }
    // Postgres cannot compare text with a NUL character: no entity can match one.
    if (seg.some((s) => s.includes('\u0000'))) throw notFound();
    for (const [k, v] of query) {
      if (k.includes('\u0000') || v.includes('\u0000')) throw new KongError(400, { message: `invalid query parameter '${k.replace(/\u0000/g, '')}': NUL character` });
    }

    if (method === 'OPTIONS') {
      res.setHeader('Allow', seg.length % 2 === 1 ? METHODS_COLLECTION : METHODS_ITEM);
      res.setHeader('Access-Control-Allow-Methods', seg.length % 2 === 1 ? METHODS_COLLECTION : METHODS_ITEM);
      return send(res, 204);
    }
    const only = (m: string) => {
      if (method !== m) throw methodNotAllowed();
    };

    // Fixed endpoints.
    if (seg.length === 0) {
      only('GET');
      return send(res, 200, await info());
    }
    if (seg.length === 1 && seg[0] === 'status') {
      only('GET');
      return send(res, 200, await status());
    }
    if (seg.length === 2 && seg[0] === 'plugins' && seg[1] === 'enabled') {
      only('GET');
      return send(res, 200, { enabled_plugins: [...plugins.keys()].sort() });
    }
    if (seg[0] === 'schemas' && seg.length === 3 && seg[1] === 'plugins') {
      only('GET');
      const plugin = plugins.get(seg[2]);
      if (!plugin) throw new KongError(404, { message: `No plugin named '${seg[2].slice(0, 100)}'` });
      return send(res, 200, pluginSchemaDocument(plugin));
    }
    if (seg[0] === 'schemas' && seg.length === 2) {
      only('GET');
      const def = engine.byName.get(seg[1]);
      if (!def) throw new KongError(404, { message: `No entity named '${seg[1].slice(0, 100)}'` });
      return send(res, 200, entitySchemaDocument(def));
    }
    if (seg.length === 2 && seg[0] === 'clustering' && seg[1] === 'data-planes') {
      only('GET');
      return send(res, 200, await dataPlanes());
    }

    const def = engine.byPath.get(seg[0]);
    if (!def) throw notFound();

    if (seg.length === 1) {
      if (method === 'GET') return send(res, 200, await engine.list(def, query, `/${def.path}`));
      if (method === 'POST') {
        const b = await body(req);
        const r = await engine.create(def, b.value, b.form);
        return send(res, r.status, r.body);
      }
      throw methodNotAllowed();
    }

    if (seg.length === 2) return item(def, seg[1], method, req, res);

    if (seg.length === 3) {
      const fk = def.foreignKeys.find((f) => f.field === seg[2]);
      if (fk) {
        if (method === 'GET') {
          const { row, target } = await engine.getForeign(def, seg[1], fk);
          return send(res, 200, target.toEntity(row));
        }
        if (method === 'PATCH' || method === 'PUT') {
          const b = await body(req);
          const r = await engine.writeForeign(def, seg[1], fk, method === 'PATCH' ? 'update' : 'upsert', b.value, b.form);
          return send(res, 200, r.body);
        }
        if (method === 'DELETE') {
          await engine.getForeign(def, seg[1], fk);
          throw methodNotAllowed();
        }
        throw methodNotAllowed();
      }
      const child = engine.byPath.get(seg[2]);
      const childFk = child?.foreignKeys.find((f) => f.nested && f.entity === def.name);
      if (!child || !childFk) throw notFound();
      if (method !== 'GET' && method !== 'POST') throw methodNotAllowed();
      const scope = await engine.resolveParent(def, childFk, seg[1]);
      if (method === 'GET') return send(res, 200, await engine.list(child, query, `/${def.path}/${scope.parent.id}/${child.path}`, scope));
      const b = await body(req);
      const r = await engine.create(child, b.value, b.form, scope);
      return send(res, r.status, r.body);
    }

    if (seg.length === 4) {
      const child = engine.byPath.get(seg[2]);
      const childFk = child?.foreignKeys.find((f) => f.nested && f.entity === def.name);
      if (!child || !childFk) throw notFound();
      if (!['GET', 'PUT', 'PATCH', 'DELETE'].includes(method)) throw methodNotAllowed();
      const scope = await engine.resolveParent(def, childFk, seg[1]);
      return item(child, seg[3], method, req, res, scope);
    }
    throw notFound();
  }

  async function item(def: EntityDefinition, key: string, method: string, req: Request, res: Response, scope?: ParentScope) {
    switch (method) {
      case 'GET':
        return send(res, 200, await engine.get(def, key, scope));
      case 'PATCH': {
        const b = await body(req);
        const r = await engine.update(def, key, b.value, b.form, scope);
        return send(res, r.status, r.body);
      }
      case 'PUT': {
        const b = await body(req);
        const r = await engine.upsert(def, key, b.value, b.form, scope);
        return send(res, r.status, r.body);
      }
      case 'DELETE':
        await engine.delete(def, key, scope);
        return send(res, 204);
      default:
        throw methodNotAllowed();
    }
  }

  app.use(async (req, res) => {
    await dispatch(req, res);
  });

  // Everything ends here: Kong-shaped bodies, never a stack trace.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const mapped = mapError(err);
    if (mapped.unexpected) {
      logger.error('unexpected error in admin request', {
        request_id: res.locals.requestId,
        error: (err as Error)?.message,
        stack: (err as Error)?.stack,
      });
    } else if (mapped.status === 503) {
      logger.warn('database unavailable', { request_id: res.locals.requestId, error: mapped.body.message });
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    // Drain what is left of a rejected body so the connection stays usable.
    if (!req.complete) req.resume();
    res.status(mapped.status).json(mapped.body);
  });

  return app;
}

export function engineOf(app: express.Express): EntityEngine {
  return (app.locals as AdminAppLocals).engine;
}
