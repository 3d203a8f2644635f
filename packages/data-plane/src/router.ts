// The proxy router, compiled once per snapshot. Semantics follow Kong 3's
// `traditional_compatible` router (kong/router/compat.lua): a route matches when each of its
// set fields matches (methods, hosts with `*.` / `.*` wildcards and optional ports, prefix or
// `~` regex paths anchored at the start, headers with `~*` regex values, SNIs on https);
// among matching routes the one with the highest priority wins, where priority orders by
// (number of fields set, only plain hosts, header count, regex path, regex_priority, longest
// prefix path). A route with several paths is split into one matcher per path, as recent Kong
// releases do, so an unrelated longer path never lends its length to a shorter one.
//
// Matching cost does not grow with the number of routes: matchers are indexed by host (exact
// map, wildcard suffix/prefix maps, host-less bucket) and then by prefix path in a hash map,
// probed once per distinct prefix length in the bucket, so a request only looks at matchers
// whose host and path prefix it actually has (a character trie was tried first: correct, but
// its pointer chasing made matching 10x slower at 10,000 routes through cache misses). Regex paths
// are kept apart in each host bucket, ordered by priority, and tried only while they could
// still beat the best match found so far.
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteEntity } from '@gatehouse/core/entities.ts';
import { headerRegex, isRegexHeaderValue, isRegexPath, pathRegex } from '@gatehouse/core/route-regex.ts';
import { normalizePath } from '@gatehouse/core/uri.ts';

export interface MatchRequest {
  method: string;
  /** Host header without port, lower case. */
  host: string;
  /** Port from the Host header, or the scheme's default. */
  port: number;
  /** Path without query. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The headers as received (name, value, ...): a route's header rule is checked against each
   * value of a repeated header, as Kong does, where `headers` has them joined. */
  rawHeaders?: string[];
  https: boolean;
  sni: string | null;
}

export interface RouteMatch<P> {
  route: RouteEntity;
  payload: P;
  /** The part of the path the matcher consumed: the prefix path, the regex match, or null (no path). */
  matched: string | null;
  /** Named captures of a regex path, when any. */
  captures: Record<string, string> | null;
}

interface HeaderRule {
  name: string;
  values: string[];
  regexes: RegExp[];
}

interface CompiledRoute<P> {
  route: RouteEntity;
  payload: P;
  methods: Set<string> | null;
  headers: HeaderRule[] | null;
  snis: Set<string> | null;
}

interface Matcher<P> {
  /** Position in the global priority order: lower wins. */
  rank: number;
  cr: CompiledRoute<P>;
  /** Port required by the host entry this matcher was indexed under (null: any). */
  hostPort: number | null;
  prefix: string | null;
  regex: RegExp | null;
}

class PathIndex<P> {
  /** Prefix path → its matchers (sorted by rank). */
  readonly byPrefix = new Map<string, Matcher<P>[]>();
  /** Distinct prefix lengths, longest first: a request looks up one slice per length. */
  lengths: number[] = [];
  regex: Matcher<P>[] = [];
  pathless: Matcher<P>[] = [];

  add(m: Matcher<P>) {
    if (m.regex) this.regex.push(m);
    else if (m.prefix === null) this.pathless.push(m);
    else {
      let list = this.byPrefix.get(m.prefix);
      if (!list) this.byPrefix.set(m.prefix, (list = []));
      list.push(m);
    }
  }

  finish() {
    const byRank = (a: Matcher<P>, b: Matcher<P>) => a.rank - b.rank;
    this.regex.sort(byRank);
    this.pathless.sort(byRank);
    const lengths = new Set<number>();
    for (const [prefix, list] of this.byPrefix) {
      list.sort(byRank);
      lengths.add(prefix.length);
    }
    this.lengths = [...lengths].sort((a, b) => b - a);
  }
}

/** Best matcher so far, threaded through the candidate lists. */
interface Best<P> {
  m: Matcher<P> | null;
  regexMatch: RegExpExecArray | null;
}

function splitHostPort(h: string): { host: string; port: number | null } {
  const m = /^(.*?)(?::(\d+))?$/.exec(h.trim().toLowerCase())!;
  if (m[1].startsWith('[')) return { host: m[1], port: m[2] ? Number(m[2]) : null };
  return { host: m[1], port: m[2] ? Number(m[2]) : null };
}

export interface RouterStats {
  routes: number;
  matchers: number;
  regexMatchers: number;
}

export class Router<P> {
  private readonly exact = new Map<string, PathIndex<P>>();
  /** `*.example.com` → key `.example.com` (host ends with it). */
  private readonly suffix = new Map<string, PathIndex<P>>();
  /** `example.*` → key `example.` (host starts with it). */
  private readonly prefix = new Map<string, PathIndex<P>>();
  private readonly anyHost = new PathIndex<P>();
  readonly stats: RouterStats;

  constructor(inputs: { route: RouteEntity; payload: P }[]) {
    interface Pending {
      cr: CompiledRoute<P>;
      path: string | null;
      key: number[];
      createdAt: number;
      id: string;
    }
    const pending: Pending[] = [];
    for (const { route, payload } of inputs) {
      const cr: CompiledRoute<P> = {
        route,
        payload,
        methods: route.methods?.length ? new Set(route.methods.map((m) => m.toUpperCase())) : null,
        headers: compileHeaders(route.headers),
        snis: route.snis?.length ? new Set(route.snis.map((s) => s.toLowerCase())) : null,
      };
      let weight = 0;
      if (cr.methods) weight++;
      if (route.hosts?.length) weight++;
      if (route.paths?.length) weight++;
      const headerCount = cr.headers ? Math.min(cr.headers.length, 255) : 0;
      if (headerCount > 0) weight++;
      if (cr.snis) weight++;
      const plainHostOnly = route.hosts?.length ? route.hosts.every((h) => !h.includes('*')) : false;
      const paths = route.paths?.length ? route.paths : [null];
      for (const path of paths) {
        const regex = path !== null && isRegexPath(path);
        const length = path !== null && !regex ? Math.min(path.length, 0x7ffff) : 0;
        const regexPriority = regex ? route.regex_priority ?? 0 : 0;
        pending.push({
          cr,
          path,
          // Compared lexicographically, descending: Kong's priority bit fields in order.
          key: [weight, plainHostOnly ? 1 : 0, headerCount, regex ? 1 : 0, regexPriority, length],
          createdAt: route.created_at ?? 0,
          id: route.id,
        });
      }
    }
    pending.sort((a, b) => {
      for (let i = 0; i < a.key.length; i++) if (a.key[i] !== b.key[i]) return b.key[i] - a.key[i];
      if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });

    let regexCount = 0;
    const touched = new Set<PathIndex<P>>([this.anyHost]);
    pending.forEach((p, rank) => {
      let prefix: string | null = null;
      let regex: RegExp | null = null;
      if (p.path !== null) {
        if (isRegexPath(p.path)) {
          regex = pathRegex(p.path);
          regexCount++;
        } else prefix = normalizePath(p.path); // requests are matched normalised: so are prefixes
      }
      const hosts = p.cr.route.hosts;
      if (!hosts?.length) {
        this.anyHost.add({ rank, cr: p.cr, hostPort: null, prefix, regex });
        return;
      }
      for (const h of hosts) {
        const { host, port } = splitHostPort(h);
        let map: Map<string, PathIndex<P>>;
        let key: string;
        if (host.startsWith('*')) {
          map = this.suffix;
          key = host.slice(1);
        } else if (host.endsWith('*')) {
          map = this.prefix;
          key = host.slice(0, -1);
        } else {
          map = this.exact;
          key = host;
        }
        let index = map.get(key);
        if (!index) {
          index = new PathIndex<P>();
          map.set(key, index);
        }
        touched.add(index);
        index.add({ rank, cr: p.cr, hostPort: port, prefix, regex });
      }
    });
    for (const index of touched) index.finish();
    this.stats = { routes: inputs.length, matchers: pending.length, regexMatchers: regexCount };
  }

  match(req: MatchRequest): RouteMatch<P> | null {
    const best: Best<P> = { m: null, regexMatch: null };
    const host = req.host;
    const exact = this.exact.get(host);
    if (exact) this.search(exact, req, best);
    if (this.suffix.size) {
      for (let i = host.indexOf('.'); i !== -1; i = host.indexOf('.', i + 1)) {
        const index = this.suffix.get(host.slice(i));
        if (index) this.search(index, req, best);
      }
    }
    if (this.prefix.size) {
      for (let i = host.indexOf('.'); i !== -1; i = host.indexOf('.', i + 1)) {
        const index = this.prefix.get(host.slice(0, i + 1));
        if (index) this.search(index, req, best);
      }
    }
    this.search(this.anyHost, req, best);
    const m = best.m;
    if (!m) return null;
    let matched: string | null = m.prefix;
    let captures: Record<string, string> | null = null;
    if (m.regex) {
      const r = best.regexMatch!;
      matched = r[0];
      if (r.groups) captures = { ...r.groups };
    }
    return { route: m.cr.route, payload: m.cr.payload, matched, captures };
  }

  private search(index: PathIndex<P>, req: MatchRequest, best: Best<P>) {
    // Prefix paths: one hash lookup per distinct prefix length the bucket holds.
    const path = req.path;
    const lengths = index.lengths;
    for (let i = 0; i < lengths.length; i++) {
      const len = lengths[i];
      if (len > path.length) continue;
      const list = index.byPrefix.get(len === path.length ? path : path.slice(0, len));
      if (list !== undefined) this.pick(list, req, best);
    }
    if (index.regex.length) this.pick(index.regex, req, best);
    if (index.pathless.length) this.pick(index.pathless, req, best);
  }

  /** `list` is sorted by rank: the first full match is the list's best. */
  private pick(list: Matcher<P>[], req: MatchRequest, best: Best<P>) {
    for (let i = 0; i < list.length; i++) {
      const m = list[i];
      if (best.m !== null && m.rank >= best.m.rank) return;
      if (!this.accepts(m, req)) continue;
      if (m.regex) {
        const r = m.regex.exec(req.path);
        if (!r) continue;
        best.regexMatch = r;
      }
      best.m = m;
      return;
    }
  }

  private accepts(m: Matcher<P>, req: MatchRequest): boolean {
    const cr = m.cr;
    if (m.hostPort !== null && m.hostPort !== req.port) return false;
    if (cr.methods !== null && !cr.methods.has(req.method)) return false;
    // Kong (#6425): SNIs are only considered on https.
    if (cr.snis !== null && req.https && (req.sni === null || !cr.snis.has(req.sni))) return false;
    if (cr.headers !== null) {
      for (const rule of cr.headers) if (!headerMatches(rule, req.rawHeaders ? rawValues(req.rawHeaders, rule.name) : req.headers[rule.name])) return false;
    }
    return true;
  }
}

function compileHeaders(headers: Record<string, string[]> | null): HeaderRule[] | null {
  if (!headers) return null;
  const rules: HeaderRule[] = [];
  for (const [name, values] of Object.entries(headers)) {
    const rule: HeaderRule = { name: name.toLowerCase(), values: [], regexes: [] };
    for (const v of values ?? []) {
      if (isRegexHeaderValue(v)) rule.regexes.push(headerRegex(v));
      else rule.values.push(v.toLowerCase());
    }
    rules.push(rule);
  }
  return rules.length ? rules : null;
}

function headerMatches(rule: HeaderRule, value: string | string[] | undefined): boolean {
  if (value === undefined) return false;
  if (Array.isArray(value)) {
    for (const v of value) if (headerMatches(rule, v)) return true;
    return false;
  }
  const lower = value.toLowerCase();
  for (const v of rule.values) if (v === lower) return true;
  for (const r of rule.regexes) if (r.test(value)) return true;
  return false;
}

/** Every value of header `name` (lower case) in Node's rawHeaders list, or undefined. */
function rawValues(raw: string[], name: string): string[] | undefined {
  let values: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === name.length && raw[i].toLowerCase() === name) (values ??= []).push(raw[i + 1]);
  }
  return values;
}

/**
 * Kong's sanitize_uri_postfix: what remains of the path after a stripped prefix must not climb
 * out of the service's path (`/api../admin` under the prefix `/api` leaves `../admin`).
 */
function sanitizeRemainder(rest: string): string {
  if (rest === '.' || rest === '..') return '';
  if (rest.startsWith('./')) return rest.slice(2);
  if (rest.startsWith('../')) return rest.slice(3);
  return rest;
}

/** Kong's path_handling v0 join of the service path and what remains of the request path. */
export function upstreamPathV0(servicePath: string | null, requestPath: string, stripped: string | null): string {
  const base = servicePath || '/';
  if (stripped !== null) {
    const postfix = sanitizeRemainder(requestPath.slice(stripped.length));
    if (base.charCodeAt(base.length - 1) === 47) {
      if (postfix === '') {
        if (base === '/') return '/';
        return requestPath.charCodeAt(requestPath.length - 1) === 47 ? base : base.slice(0, -1);
      }
      if (postfix.charCodeAt(0) === 47) return base.slice(0, -1) + postfix;
      return base + postfix;
    }
    if (postfix === '') return requestPath.length > 1 && requestPath.charCodeAt(requestPath.length - 1) === 47 ? `${base}/` : base;
    if (postfix.charCodeAt(0) === 47) return base + postfix;
    return `${base}/${postfix}`;
  }
  if (base.charCodeAt(base.length - 1) === 47) return base + requestPath.slice(1);
  return requestPath === '/' ? base : base + requestPath;
}

/** Kong's path_handling v1 (deprecated): plain concatenation after stripping. */
export function upstreamPathV1(servicePath: string | null, requestPath: string, stripped: string | null): string {
  const base = servicePath || '/';
  let rest = stripped !== null ? sanitizeRemainder(requestPath.slice(stripped.length)) : requestPath;
  if (base.endsWith('/') && rest.startsWith('/')) rest = rest.slice(1);
  if (rest === '' ) return base;
  if (!base.endsWith('/') && !rest.startsWith('/')) return `${base}/${rest}`;
  return base + rest;
}
