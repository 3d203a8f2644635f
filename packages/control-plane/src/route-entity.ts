// Kong's route entity (kong/db/schema/entities/routes.lua) as an EntityDefinition for the
// generic engine: same fields, defaults, checks and messages, and regexes checked for
// super-linear backtracking.
import { z } from 'zod';
import type { EntityDefinition } from '@gatehouse/core';
import { normalizePath } from '@gatehouse/core/uri.ts';
import { checkBacktracking, headerRegex, isRegexHeaderValue, pathRegex } from '@gatehouse/core/route-regex.ts';
import { nullIfEmpty, emptyIfNull, ALL_PROTOCOLS, utf8Name, set, tags, IPV4_RE, IPV6_RE, isHost, host, int, between, pathError, path, timestamps } from './core-typedefs.ts';

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
