// Kong's core entities (kong/db/schema/entities/{services,routes,consumers,plugins}.lua) as
// EntityDefinitions for the generic engine: same fields, defaults, checks and messages.
import { z } from 'zod';
import { KongError, schemaViolation, type EntityDefinition, type PluginDefinition, type Row } from '@gatehouse/core';
import { objectKeys } from './zod-util.ts';
import { normalizePath } from '@gatehouse/core/uri.ts';
import { checkBacktracking, headerRegex, isRegexHeaderValue, pathRegex } from '@gatehouse/core/route-regex.ts';

const nullIfEmpty = <T>(list: T[] | null | undefined): T[] | null => (list && list.length ? list : null);
const emptyIfNull = <T>(list: T[] | null | undefined): T[] => list ?? [];

export const ALL_PROTOCOLS = ['grpc', 'grpcs', 'http', 'https', 'tcp', 'tls', 'tls_passthrough', 'udp'] as const;
const PLUGIN_PROTOCOLS = ['grpc', 'grpcs', 'http', 'https'];

// ----------------------------------------------------------------- typedefs

// Kong's utf8_name: ASCII alphanumerics and `. - _ ~`, plus any non-ASCII character.
const NAME_RE = /^[A-Za-z0-9._~\u0080-\u{10ffff}-]+$/u;
const utf8Name = z
  .string()
  .min(1)
  .max(255)
  .superRefine((v, ctx) => {
    if (!NAME_RE.test(v)) {
      ctx.addIssue({ code: 'custom', message: `invalid value '${v.slice(0, 100)}': the only accepted ascii characters are alphanumerics or ., -, _, and ~` });
    }
  });

export const TAG_RE = /^[\x20-\x2b\x2d\x2e\x30-\x7e\u0080-\u{10ffff}]+$/u;
export const tagError = (tag: string) =>
  `invalid tag '${tag.slice(0, 100)}': expected printable ascii (except \`,\` and \`/\`) or valid utf-8 sequences`;
/** Kong's `set` type: a wrong type reads "expected a set". */
const set = <T extends z.ZodType>(element: T) => z.array(element, { error: 'expected a set' });
const tags = set(
  z
    .string()
    .min(1)
    .max(255)
    .superRefine((t, ctx) => {
      if (!TAG_RE.test(t)) ctx.addIssue({ code: 'custom', message: tagError(t) });
    }),
)
  .max(1000)
  .nullable()
  .default(null);

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})?)*\.?$/;
const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;
const IPV6_RE = /^\[?[0-9A-Fa-f:.]+\]?$/;
const isHost = (v: string) => v.length <= 253 && (IPV4_RE.test(v) || (v.includes(':') && IPV6_RE.test(v)) || HOST_RE.test(v));
const host = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    if (!isHost(v)) ctx.addIssue({ code: 'custom', message: `invalid value: ${v.slice(0, 100)}` });
  });

const int = () => z.number({ error: 'expected an integer' }).int();
const between = (min: number, max: number) =>
  int().min(min, `value should be between ${min} and ${max}`).max(max, `value should be between ${min} and ${max}`);

/** Kong's validate_path: RFC 3986 path characters, properly percent-encoded. */
function pathError(v: string): string | null {
  if (!/^\/[A-Za-z0-9._~\/%:@!$&'()*+,;=-]*$/.test(v)) {
    return `invalid path: '${v.slice(0, 200)}' (characters outside of the reserved list of RFC 3986 found)`;
  }
  const raw = v.replace(/%[0-9A-Fa-f]{2}/g, '___');
  const bad = /%.?.?/.exec(raw);
  if (bad) return `invalid url-encoded value: '${bad[0]}'`;
  return null;
}

const path = z
  .string()
  .min(1)
  .max(4096)
  .superRefine((v, ctx) => {
    if (!v.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'should start with: /' });
    else if (v.includes('//')) ctx.addIssue({ code: 'custom', message: 'must not have empty segments' });
    else {
      const err = pathError(v);
      if (err) ctx.addIssue({ code: 'custom', message: err });
    }
  });

const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'expected a valid UUID');

const timestamps = (row: Row) => ({ created_at: row.createdAt as number, updated_at: row.updatedAt as number });

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

// ----------------------------------------------------------------- routes

const HTTP = ['http', 'https'];
const STREAM = ['tcp', 'tls', 'udp'];
const GRPC = ['grpc', 'grpcs'];
const PROTOCOL_GROUPS = [HTTP, STREAM, ['tls_passthrough'], GRPC];

/**
 * Kong's message for a regex that does not compile, and Gatehouse's for one that would match in
 * more than linear time (it would let one request stall a data plane). Kong names the regex
 * without its `~` / `~*` marker.
 */
async function regexError(written: string, compile: () => RegExp): Promise<string | null> {
  let regex: RegExp;
  try {
    regex = compile();
  } catch (e) {
    return `invalid regex: '${written.slice(0, 200)}' (${(e as Error).message.replace(/^Invalid regular expression: /, '')})`;
  }
  const verdict = await checkBacktracking(regex);
  return verdict.safe ? null : `invalid regex: '${written.slice(0, 200)}' (${verdict.reason})`;
}

const routePath = z
  .string()
  .min(1)
  .max(4096)
  .superRefine(async (v, ctx) => {
    // Kong's order: match_none (//), match_any (prefix), then the custom validator.
    if (v.includes('//')) ctx.addIssue({ code: 'custom', message: 'must not have empty segments' });
    else if (!v.startsWith('/') && !v.startsWith('~/')) {
      ctx.addIssue({ code: 'custom', message: 'should start with: / (fixed path) or ~/ (regex path)' });
    } else if (v.startsWith('/')) {
      const err = pathError(v);
      if (err?.startsWith('invalid url-encoded')) ctx.addIssue({ code: 'custom', message: err });
      // Requests are matched normalised: a path written otherwise could never match as written.
      else if (normalizePath(v) !== v) ctx.addIssue({ code: 'custom', message: `non-normalized path, consider use '${normalizePath(v)}' instead` });
    } else {
      const error = await regexError(v.slice(1), () => {
        new RegExp(v.slice(1)); // alone too: `a)(b` would compile inside the router's `^(?:…)`
        return pathRegex(v);
      });
      if (error) ctx.addIssue({ code: 'custom', message: error });
    }
  });

const headerValue = z
  .string()
  .max(4096)
  .superRefine(async (v, ctx) => {
    if (!isRegexHeaderValue(v)) return;
    const error = await regexError(v.slice(2), () => headerRegex(v));
    if (error) ctx.addIssue({ code: 'custom', message: error });
  });

const routeHost = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    if ((v.match(/\*/g) ?? []).length > 1) {
      ctx.addIssue({ code: 'custom', message: 'invalid wildcard: must have at most one wildcard' });
      return;
    }
    if (v.includes('*') && !v.startsWith('*.') && !/\.\*(:\d+)?$/.test(v)) {
      ctx.addIssue({ code: 'custom', message: 'invalid wildcard: must be placed at leftmost or rightmost label' });
      return;
    }
    const m = /^(.*?)(?::(\d{1,5}))?$/.exec(v.replace('*', 'abc'))!;
    if (m[2] !== undefined && Number(m[2]) > 65535) ctx.addIssue({ code: 'custom', message: 'invalid port number' });
    else if (!isHost(m[1])) ctx.addIssue({ code: 'custom', message: `invalid hostname: ${v.slice(0, 100)}` });
  });

const IP_OR_CIDR = /^(?:(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\/(?:3[0-2]|[12]?\d))?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:\/(?:12[0-8]|1[01]\d|\d?\d))?)$/;
const sni = z
  .string()
  .min(1)
  .max(253)
  .superRefine((v, ctx) => {
    if (IPV4_RE.test(v) || (v.includes(':') && IPV6_RE.test(v) && !/^[^:]+:\d+$/.test(v))) ctx.addIssue({ code: 'custom', message: 'must not be an IP' });
    else if (/:\d+$/.test(v)) ctx.addIssue({ code: 'custom', message: 'must not have a port' });
    else if (!isHost(v)) ctx.addIssue({ code: 'custom', message: `invalid value: ${v.slice(0, 100)}` });
  });

const endpoint = z
  .strictObject({
    ip: z
      .string()
      .max(64)
      .refine((v) => IP_OR_CIDR.test(v), { error: (iss) => `invalid ip or cidr range: '${String(iss.input)}'` })
      .nullable()
      .optional(),
    port: between(0, 65535).nullable().optional(),
  })
  .refine((e) => (e.ip ?? null) !== null || (e.port ?? null) !== null, { message: "at least one of these fields must be non-empty: 'ip', 'port'" });

const dedupe = <T>(list: T[] | null) => (list ? [...new Set(list)] : list);

const routeSchema = z
  .strictObject({
    name: utf8Name.nullable().default(null),
    protocols: set(z.enum(ALL_PROTOCOLS)).min(1).default(['http', 'https']).transform((l) => dedupe(l)!),
    methods: set(z.string().regex(/^[A-Z]+$/))
      .nullable()
      .default(null)
      .transform(dedupe),
    hosts: z.array(routeHost).nullable().default(null),
    paths: z.array(routePath).nullable().default(null),
    headers: z
      .record(z.string().min(1).max(256), z.array(headerValue).min(1))
      .nullable()
      .default(null)
      .superRefine((h, ctx) => {
        if (h && Object.keys(h).some((k) => k.toLowerCase() === 'host')) {
          ctx.addIssue({ code: 'custom', message: "cannot contain 'host' header, which must be specified in the 'hosts' attribute" });
        }
      }),
    snis: set(sni).nullable().default(null).transform(dedupe),
    sources: set(endpoint).nullable().default(null),
    destinations: set(endpoint).nullable().default(null),
    https_redirect_status_code: int()
      .refine((v) => [426, 301, 302, 307, 308].includes(v), { message: 'expected one of: 426, 301, 302, 307, 308' })
      .default(426),
    regex_priority: int().min(-2147483648).max(2147483647).default(0),
    strip_path: z.boolean().default(true),
    preserve_host: z.boolean().default(false),
    request_buffering: z.boolean().default(true),
    response_buffering: z.boolean().default(true),
    path_handling: z.enum(['v0', 'v1']).default('v0'),
    tags,
  })
  .superRefine((r, ctx) => {
    const protocols = r.protocols;
    const groups = PROTOCOL_GROUPS.filter((g) => protocols.some((p) => g.includes(p)));
    if (groups.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['protocols'], message: `these sets are mutually exclusive: ${groups.map((g) => `('${g.join("', '")}')`).join(', ')}` });
      return;
    }
    const has = (f: 'methods' | 'hosts' | 'headers' | 'paths' | 'snis' | 'sources' | 'destinations') => {
      const v = r[f];
      return v !== null && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
    };
    const onlyFor = (f: 'methods' | 'hosts' | 'headers' | 'paths' | 'snis' | 'sources' | 'destinations', allowed: string[], text: string) => {
      if (has(f) && !protocols.some((p) => allowed.includes(p))) {
        ctx.addIssue({ code: 'custom', path: [f], message: `'${f}' can only be set when 'protocols' is ${text}` });
      }
    };
    onlyFor('snis', ['https', 'grpcs', 'tls', 'tls_passthrough'], "'grpcs', 'https', 'tls' or 'tls_passthrough'");
    onlyFor('sources', STREAM, "'tcp', 'tls' or 'udp'");
    onlyFor('destinations', STREAM, "'tcp', 'tls' or 'udp'");
    onlyFor('methods', HTTP, "'http' or 'https'");
    onlyFor('paths', [...HTTP, ...GRPC], "'grpc', 'grpcs', 'http' or 'https'");
    onlyFor('hosts', [...HTTP, ...GRPC], "'grpc', 'grpcs', 'http' or 'https'");
    onlyFor('headers', [...HTTP, ...GRPC], "'grpc', 'grpcs', 'http' or 'https'");
    if (groups[0] === HTTP) {
      const https = protocols.includes('https');
      const ok = has('methods') || has('hosts') || has('headers') || has('paths') || (https && has('snis'));
      if (!ok) {
        ctx.addIssue({
          code: 'custom',
          path: [],
          message: https
            ? "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
            : "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'",
        });
      }
    } else if (groups[0] === GRPC) {
      if (r.strip_path) ctx.addIssue({ code: 'custom', path: ['strip_path'], message: 'value must be false' });
      const grpcs = protocols.includes('grpcs');
      if (!(has('hosts') || has('headers') || has('paths') || (grpcs && has('snis')))) {
        ctx.addIssue({
          code: 'custom',
          path: [],
          message: grpcs
            ? "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"
            : "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'",
        });
      }
    } else if (groups[0] === STREAM) {
      if (!(has('sources') || has('destinations') || has('snis'))) {
        ctx.addIssue({ code: 'custom', path: [], message: "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'" });
      }
    } else if (!has('snis')) {
      ctx.addIssue({ code: 'custom', path: [], message: "must set snis when 'protocols' is 'tls_passthrough'" });
    }
  });

export const routesEntity: EntityDefinition = {
  name: 'routes',
  path: 'routes',
  model: 'route',
  endpointKey: 'name',
  schema: routeSchema,
  foreignKeys: [{ field: 'service', entity: 'services', column: 'serviceId', required: false, nested: true, onDelete: 'restrict' }],
  uniqueFields: ['name'],
  hasUpdatedAt: true,
  isConfig: true,
  toRow: (v) => ({
    name: v.name,
    protocols: v.protocols,
    methods: emptyIfNull(v.methods),
    hosts: emptyIfNull(v.hosts),
    paths: emptyIfNull(v.paths),
    headers: v.headers && Object.keys(v.headers).length ? v.headers : null,
    snis: emptyIfNull(v.snis),
    sources: v.sources?.length ? v.sources : null,
    destinations: v.destinations?.length ? v.destinations : null,
    httpsRedirectStatusCode: v.https_redirect_status_code,
    regexPriority: v.regex_priority,
    stripPath: v.strip_path,
    preserveHost: v.preserve_host,
    requestBuffering: v.request_buffering,
    responseBuffering: v.response_buffering,
    pathHandling: v.path_handling,
    tags: emptyIfNull(v.tags),
    serviceId: v.serviceId,
  }),
  toEntity: (r) => ({
    id: r.id,
    name: r.name,
    protocols: r.protocols,
    methods: nullIfEmpty(r.methods),
    hosts: nullIfEmpty(r.hosts),
    paths: nullIfEmpty(r.paths),
    headers: r.headers ?? null,
    snis: nullIfEmpty(r.snis),
    sources: r.sources ?? null,
    destinations: r.destinations ?? null,
    https_redirect_status_code: r.httpsRedirectStatusCode,
    regex_priority: r.regexPriority,
    strip_path: r.stripPath,
    preserve_host: r.preserveHost,
    request_buffering: r.requestBuffering,
    response_buffering: r.responseBuffering,
    path_handling: r.pathHandling,
    tags: nullIfEmpty(r.tags),
    service: r.serviceId ? { id: r.serviceId } : null,
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
