// Kong's core entities (kong/db/schema/entities/{services,consumers,plugins}.lua; routes in
// route-entity.ts) as EntityDefinitions for the generic engine: same fields, defaults, checks and messages.
import { z } from 'zod';
import { KongError, schemaViolation, type EntityDefinition, type PluginDefinition, type Row } from '@gatehouse/core';
import { objectKeys } from './zod-util.ts';
import { nullIfEmpty, emptyIfNull, ALL_PROTOCOLS, PLUGIN_PROTOCOLS, utf8Name, set, tags, host, between, path, uuid, timestamps } from './core-typedefs.ts';

export { ALL_PROTOCOLS, TAG_RE, tagError } from './core-typedefs.ts';
export { routesEntity } from './route-entity.ts';

// ----------------------------------------------------------------- services

const serviceSchema = z
  .strictObject({
    name: utf8Name.nullable().default(null),
    protocol: z.enum(ALL_PROTOCOLS).default('http'),
    host,
    port: between(0, 65535).default(80),
    path: path.nullable().default(null),
    retries: between(0, 32767).default(5),
    connect_timeout: between(1, 2147483646).default(60000),
    write_timeout: between(1, 2147483646).default(60000),
    read_timeout: between(1, 2147483646).default(60000),
    tags,
    client_certificate: z.strictObject({ id: uuid }).nullable().default(null),
    tls_verify: z.boolean().nullable().default(null),
    tls_verify_depth: between(0, 64).nullable().default(null),
    ca_certificates: z.array(uuid, { error: 'expected an array' }).nullable().default(null),
    enabled: z.boolean().default(true),
  })
  .superRefine((s, ctx) => {
    // Kong's `conditional` entity checks: the field error plus one entity error per failed check.
    const conditional = (field: string) => {
      ctx.addIssue({ code: 'custom', path: [field], message: 'value must be null' });
      ctx.addIssue({ code: 'custom', path: [], message: "failed conditional validation given value of field 'protocol'" });
    };
    if (s.path !== null && ['tcp', 'tls', 'udp', 'grpc', 'grpcs'].includes(s.protocol)) conditional('path');
    if (!['https', 'tls'].includes(s.protocol)) {
      for (const f of ['client_certificate', 'tls_verify', 'tls_verify_depth', 'ca_certificates'] as const) {
        if (s[f] !== null) conditional(f);
      }
    }
  });

/**
 * Kong's `url` shorthand (a string field): protocol, host, port and path from one URL; never
 * stored. A URL without a host leaves `host` null, so the schema reports it missing, as Kong.
 */
export function expandServiceUrl(body: Row): Row {
  if (!Object.hasOwn(body, 'url')) return body;
  const { url, ...rest } = body;
  if (url === null) return rest;
  if (typeof url !== 'string') throw schemaViolation({ url: 'expected a string' });
  if (url === '') throw schemaViolation({ url: 'length must be at least 1' });
  const text = url.trim();
  const hasScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text);
  const full = hasScheme ? text : `http://${text.replace(/^\/\//, '')}`;
  let parsed: URL | null = null;
  try {
    parsed = new URL(full);
  } catch {
    parsed = null;
  }
  const explicitPort = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*):(\d+)/.exec(full)?.[1];
  const port = explicitPort !== undefined ? Number(explicitPort) : undefined;
  let protocol = hasScheme ? text.slice(0, text.indexOf(':')).toLowerCase() : port === 443 ? 'https' : 'http';
  if (!parsed || !parsed.hostname) {
    return { ...rest, protocol, host: null, port: port ?? (protocol === 'https' ? 443 : 80), path: null };
  }
  protocol = hasScheme ? parsed.protocol.slice(0, -1).toLowerCase() : protocol;
  const rawPath = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*(\/[^?#]*)?/.exec(full)?.[1];
  return {
    ...rest,
    protocol,
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: port ?? (protocol === 'https' || protocol === 'grpcs' ? 443 : 80),
    path: rawPath ? rawPath : null,
  };
}

export const servicesEntity: EntityDefinition = {
  name: 'services',
  path: 'services',
  model: 'service',
  endpointKey: 'name',
  schema: serviceSchema,
  foreignKeys: [],
  uniqueFields: ['name'],
  hasUpdatedAt: true,
  isConfig: true,
  prepare: expandServiceUrl,
  toRow: (v) => ({
    name: v.name,
    protocol: v.protocol,
    host: v.host,
    port: v.port,
    path: v.path,
    retries: v.retries,
    connectTimeout: v.connect_timeout,
    writeTimeout: v.write_timeout,
    readTimeout: v.read_timeout,
    tags: emptyIfNull(v.tags),
    clientCertificate: v.client_certificate?.id ?? null,
    tlsVerify: v.tls_verify,
    tlsVerifyDepth: v.tls_verify_depth,
    caCertificates: emptyIfNull(v.ca_certificates),
    enabled: v.enabled,
  }),
  toEntity: (r) => ({
    id: r.id,
    name: r.name,
    protocol: r.protocol,
    host: r.host,
    port: r.port,
    path: r.path,
    retries: r.retries,
    connect_timeout: r.connectTimeout,
    write_timeout: r.writeTimeout,
    read_timeout: r.readTimeout,
    tags: nullIfEmpty(r.tags),
    client_certificate: r.clientCertificate ? { id: r.clientCertificate } : null,
    tls_verify: r.tlsVerify,
    tls_verify_depth: r.tlsVerifyDepth,
    ca_certificates: nullIfEmpty(r.caCertificates),
    enabled: r.enabled,
    ...timestamps(r),
  }),
};

// ----------------------------------------------------------------- consumers

const consumerSchema = z
  .strictObject({
    username: z.string().min(1).max(255).nullable().default(null),
    custom_id: z.string().min(1).max(255).nullable().default(null),
    tags,
  })
  .superRefine((c, ctx) => {
    if (c.username === null && c.custom_id === null) {
      ctx.addIssue({ code: 'custom', path: [], message: "at least one of these fields must be non-empty: 'custom_id', 'username'" });
    }
  });

export const consumersEntity: EntityDefinition = {
  name: 'consumers',
  path: 'consumers',
  model: 'consumer',
  endpointKey: 'username',
  schema: consumerSchema,
  foreignKeys: [],
  uniqueFields: ['username', 'custom_id'],
  hasUpdatedAt: true,
  isConfig: true,
  listFilter(query) {
    const customId = query.get('custom_id');
    if (customId === null) return null;
    if (customId === '') throw new KongError(400, { message: 'custom_id must be an unempty string' });
    return { customId };
  },
  toRow: (v) => ({ username: v.username, customId: v.custom_id, tags: emptyIfNull(v.tags) }),
  toEntity: (r) => ({
    id: r.id,
    username: r.username,
    custom_id: r.customId,
    tags: nullIfEmpty(r.tags),
    ...timestamps(r),
  }),
};

// ----------------------------------------------------------------- plugins

const pluginBase = {
  instance_name: utf8Name.nullable().default(null),
  enabled: z.boolean().default(true),
  tags,
};

/** Postgres' jsonb reorders keys; show a plugin's config in its schema's field order, as Kong does. */
function orderConfig(config: unknown, plugin: PluginDefinition | undefined): unknown {
  if (!plugin || !config || typeof config !== 'object' || Array.isArray(config)) return config;
  const keys = objectKeys(plugin.configSchema as z.ZodType) ?? [];
  const source = config as Row;
  const out: Row = {};
  for (const k of keys) if (Object.hasOwn(source, k)) out[k] = source[k];
  for (const k of Object.keys(source)) if (!Object.hasOwn(out, k)) out[k] = source[k];
  return out;
}

export function pluginsEntity(getPlugin: (name: string) => PluginDefinition | undefined): EntityDefinition {
  const notEnabled = (name: string) => `plugin '${name.slice(0, 100)}' not enabled; add it to the 'plugins' configuration property`;
  const schemaFor = (input: Row) => {
    const plugin = typeof input.name === 'string' ? getPlugin(input.name) : undefined;
    const protocols = plugin?.protocols ?? PLUGIN_PROTOCOLS;
    return z.strictObject({
      name: z.string().superRefine((n, ctx) => {
        if (!getPlugin(n)) ctx.addIssue({ code: 'custom', message: notEnabled(n) });
      }),
      ...pluginBase,
      protocols: set(z.enum(protocols as [string, ...string[]]))
        .min(1)
        .default(protocols)
        .transform((l) => [...new Set(l)]),
      config: plugin
        ? (plugin.configSchema as z.ZodType<Row>).prefault({})
        : z.record(z.string(), z.unknown()).nullable().optional(),
    }) as unknown as z.ZodType<Row>;
  };
  const toEntity = (r: Row): Row => ({
    id: r.id,
    name: r.name,
    instance_name: r.instanceName,
    config: orderConfig(r.config, getPlugin(r.name)),
    protocols: r.protocols,
    enabled: r.enabled,
    tags: nullIfEmpty(r.tags),
    service: r.serviceId ? { id: r.serviceId } : null,
    route: r.routeId ? { id: r.routeId } : null,
    consumer: r.consumerId ? { id: r.consumerId } : null,
    ...timestamps(r),
  });
  return {
    name: 'plugins',
    path: 'plugins',
    model: 'plugin',
    endpointKey: 'instance_name',
    schema: schemaFor({}),
    schemaFor,
    mergeRecords: ['config'],
    foreignKeys: [
      { field: 'route', entity: 'routes', column: 'routeId', required: false, nested: true },
      { field: 'service', entity: 'services', column: 'serviceId', required: false, nested: true },
      { field: 'consumer', entity: 'consumers', column: 'consumerId', required: false, nested: true },
    ],
    uniqueFields: ['instance_name'],
    hasUpdatedAt: true,
    isConfig: true,
    check(input) {
      const plugin = getPlugin(input.name);
      return plugin?.checkEntity?.({ consumer: input.consumer, route: input.route, service: input.service, protocols: input.protocols }) ?? null;
    },
    uniqueChecks(row) {
      return [
        {
          where: { cacheKey: row.cacheKey },
          fields: {
            consumer: row.consumerId ? { id: row.consumerId } : null,
            name: row.name,
            route: row.routeId ? { id: row.routeId } : null,
            service: row.serviceId ? { id: row.serviceId } : null,
          },
        },
      ];
    },
    toRow(v, existing) {
      const plugin = getPlugin(v.name)!;
      const previous = existing && existing.name === v.name ? (existing.config as Row) : null;
      const config = plugin.completeConfig ? plugin.completeConfig(v.config, previous) : v.config;
      return {
        name: v.name,
        instanceName: v.instance_name,
        cacheKey: `plugins:${v.name}:${v.routeId ?? ''}:${v.serviceId ?? ''}:${v.consumerId ?? ''}`,
        config,
        protocols: v.protocols,
        enabled: v.enabled,
        tags: emptyIfNull(v.tags),
        serviceId: v.serviceId,
        routeId: v.routeId,
        consumerId: v.consumerId,
      };
    },
    toEntity,
    toSnapshot(r) {
      const entity = toEntity(r);
      const plugin = getPlugin(r.name);
      return plugin?.snapshotConfig && entity.config ? { ...entity, config: plugin.snapshotConfig(entity.config) } : entity;
    },
  };
}
