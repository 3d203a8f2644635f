// Header rules both ways. To the upstream: identity headers only from plugins, hop-by-hop
// headers never, X-Forwarded-* and Forwarded believed from trusted peers only, a plugin's value
// checked and encoded. To the client: the upstream's head without its hop-by-hop headers, with
// Via and X-Request-Id.
import { validateHeaderName, validateHeaderValue, type IncomingHttpHeaders } from 'node:http';

export const VIA = '1.1 gatehouse';

/** Sent upstream only when a plugin set them: whatever the client sent is removed first. */
export const IDENTITY_HEADERS = [
  'x-consumer-id',
  'x-consumer-custom-id',
  'x-consumer-username',
  'x-credential-identifier',
  'x-authenticated-scope',
  'x-authenticated-userid',
  'x-anonymous-consumer',
] as const;

/** Hop-by-hop headers: they concern one connection and are never forwarded. */
const HOP_BY_HOP_SET = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'expect', 'trailer']);

const NON_ASCII = /[^\u0000-\u007f]/;

/** What scanNames finds: a second Host header, or (but for that) a name with an underscore. */
export const TWO_HOSTS = 2;
export const UNDERSCORE = 1;

/**
 * Names with an underscore (X_Consumer_Id: some servers read it as X-Consumer-Id) and a
 * second Host (a proxy in front may route on the other one) are looked for in one pass.
 */
export function scanNames(raw: string[]): number {
  let hosts = 0;
  let underscore = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 4) {
      if (name.toLowerCase() === 'host') hosts++;
    } else if (name.indexOf('_') !== -1) underscore = true;
  }
  return hosts > 1 ? TWO_HOSTS : underscore ? UNDERSCORE : 0;
}

/** Host header without the port. */
export function hostOf(host: string | undefined): string {
  if (!host) return '';
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/**
 * Before the plugins run: the client's identity headers go (they come from plugins only), with
 * their underscore spellings when the head has any (`underscore`), and so do the headers the
 * client's Connection header names.
 */
export function dropClientClaims(h: IncomingHttpHeaders, underscore: boolean): void {
  if (hasIdentityHeader(h)) for (const name of IDENTITY_HEADERS) delete h[name];
  if (underscore) dropUnderscoreSpellings(h);
  // Headers the client's Connection header names are hop-by-hop too (RFC 9110 7.6.1). Dropped
  // before the plugins run, so a client cannot name one a plugin sets for the upstream.
  const connection = h.connection;
  if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close') dropConnectionOptions(h, connection);
}

/**
 * The upstream's headers: the client's minus hop-by-hop ones. Edited in place when only
 * `Connection` is in the way (overwritten with what the pooled socket sends anyway), else
 * copied: `delete` would turn the object into a slow dictionary for http-proxy. `buffered`: a
 * plugin read the body, which goes with a Content-Length of its own.
 */
export function upstreamHeaders(h: IncomingHttpHeaders, trusted: boolean, buffered: boolean): IncomingHttpHeaders {
  if (
    h['keep-alive'] !== undefined ||
    h['proxy-connection'] !== undefined ||
    h.te !== undefined ||
    h.upgrade !== undefined ||
    h.expect !== undefined ||
    h.trailer !== undefined ||
    (!trusted && (h['x-forwarded-prefix'] !== undefined || h.forwarded !== undefined)) ||
    (buffered && h['transfer-encoding'] !== undefined)
  ) {
    const out: IncomingHttpHeaders = {};
    for (const k in h) {
      if (HOP_BY_HOP_SET.has(k)) continue;
      // RFC 7239's Forwarded says what X-Forwarded-* say: believed from trusted peers only.
      if ((k === 'x-forwarded-prefix' || k === 'forwarded') && !trusted) continue;
      if (k === 'transfer-encoding' && buffered) continue;
      out[k] = h[k];
    }
    return out;
  }
  if (h.connection !== undefined) h.connection = 'keep-alive';
  return h;
}

/** What the upstream is told about the request and its client (an Exchange). */
interface ProxiedRequest {
  readonly trustedPeer: boolean;
  readonly peer: string;
  readonly scheme: string;
  readonly host: string;
  readonly path: string;
  readonly clientIp: string;
  readonly requestId: string;
}

/**
 * X-Forwarded-*, X-Real-IP, Via and X-Request-Id into `out`, the upstream's headers made from
 * the client's `h`. `port`: the listener's; `stripped`: the path prefix strip_path took off.
 */
export function addProxyHeaders(out: IncomingHttpHeaders, h: IncomingHttpHeaders, ex: ProxiedRequest, port: string, stripped: string | null): void {
  // X-Forwarded-*: believed from trusted peers only (Kong's trusted_ips).
  const trusted = ex.trustedPeer;
  const peer = ex.peer;
  const xff = h['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${xff}, ${peer}` : peer;
  if (!trusted || out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = ex.scheme;
  if (!trusted || out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = ex.host;
  if (!trusted || out['x-forwarded-port'] === undefined) out['x-forwarded-port'] = port;
  if (!trusted || out['x-forwarded-path'] === undefined) out['x-forwarded-path'] = ex.path;
  if ((!trusted || out['x-forwarded-prefix'] === undefined) && stripped !== null && stripped !== '/' && stripped !== '') {
    out['x-forwarded-prefix'] = stripped;
  }
  out['x-real-ip'] = ex.clientIp;
  out.via = h.via ? `${h.via}, ${VIA}` : VIA;
  out['x-request-id'] = ex.requestId;
}

/** A plugin's value for an upstream header, as Node must write it; throws for one Node would refuse. */
export function pluginHeaderValue(name: string, value: string | null): string | null {
  // Checked here, where the plugin at fault is known (its handler fails: a 500 and a log line
  // naming it); Node would refuse the header only later, in the middle of forwarding.
  validateHeaderName(name);
  // A value is text: anything beyond ASCII (José, 张伟) goes as its UTF-8 bytes, as Kong sends
  // it. Node writes header strings as Latin-1, one byte per character.
  if (value !== null && NON_ASCII.test(value)) value = Buffer.from(value, 'utf8').toString('latin1');
  if (value !== null) validateHeaderValue(name, value);
  return value;
}

/**
 * The client's head from the upstream's raw headers (no response plugin needs the header
 * object, so Node never builds it), as a flat `[name, value, ...]` list. Hop-by-hop `Connection`
 * and `Keep-Alive` stay behind (the client connection has its own); `Keep-Alive` goes to
 * `pool.upstreamKeepAlive`. `http10`: the client's response cannot be chunked.
 */
export function clientHeadFromRaw(raw: string[], http10: boolean, requestId: string, pool: { upstreamKeepAlive: string | undefined }): string[] {
  const out: string[] = [];
  let via: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const n = name.length;
    // Only names of these lengths can need attention; compared without lower-casing copies.
    if (n === 10) {
      if (equalsIgnoreCase(name, 'connection')) continue;
      if (equalsIgnoreCase(name, 'keep-alive')) {
        pool.upstreamKeepAlive = raw[i + 1];
        continue;
      }
    } else if (n === 3) {
      if (equalsIgnoreCase(name, 'via')) {
        via = via === undefined ? raw[i + 1] : `${via}, ${raw[i + 1]}`;
        continue;
      }
    } else if (n === 12) {
      if (equalsIgnoreCase(name, 'x-request-id')) continue;
    } else if (n === 17 && http10 && equalsIgnoreCase(name, 'transfer-encoding')) continue;
    out.push(name, raw[i + 1]);
  }
  out.push('Via', via === undefined ? VIA : `${via}, ${VIA}`, 'X-Request-Id', requestId);
  return out;
}

/**
 * The same rules on the upstream's header object, edited in place for the response plugins;
 * returns its `Keep-Alive` header.
 */
export function prepareClientHeaders(headers: IncomingHttpHeaders, http10: boolean, requestId: string): string | undefined {
  const keepAlive = headers['keep-alive'] as string | undefined;
  delete headers.connection;
  delete headers['keep-alive'];
  if (http10) delete headers['transfer-encoding'];
  headers.via = headers.via ? `${headers.via}, ${VIA}` : VIA;
  headers['x-request-id'] = requestId;
  return keepAlive;
}

/** A header object (after the response plugins) as the flat list writeHead() takes. */
export function flatHead(headers: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, String(value));
  }
  return out;
}

/**
 * `name` (an HTTP token, as the parser passed it) equals `lower`, a lower-case name, ignoring
 * ASCII case. Setting bit 0x20 lower-cases letters and leaves every other token character as it is.
 */
export function equalsIgnoreCase(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

export function hasHeader(headers: Record<string, string> | undefined, name: string): boolean {
  if (!headers) return false;
  for (const k in headers) if (k.toLowerCase() === name) return true;
  return false;
}

/** Headers the gateway sets for the upstream, spelt with underscores for dashes. */
const UNDERSCORE_SPELT = new Set<string>([
  ...IDENTITY_HEADERS,
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-path',
  'x-forwarded-prefix',
  'x-real-ip',
]);

/**
 * Removes `X_Consumer_Username` and the like: servers that map headers to CGI-style variables
 * (HTTP_X_CONSUMER_USERNAME) read them as the header the gateway vouches for.
 */
function dropUnderscoreSpellings(h: IncomingHttpHeaders): void {
  for (const name of Object.keys(h)) {
    if (name.indexOf('_') !== -1 && UNDERSCORE_SPELT.has(name.replaceAll('_', '-'))) delete h[name];
  }
}

/** Whether the client sent any identity header (named loads: this runs on every request). */
function hasIdentityHeader(h: IncomingHttpHeaders): boolean {
  return (
    h['x-consumer-id'] !== undefined ||
    h['x-consumer-custom-id'] !== undefined ||
    h['x-consumer-username'] !== undefined ||
    h['x-credential-identifier'] !== undefined ||
    h['x-authenticated-scope'] !== undefined ||
    h['x-authenticated-userid'] !== undefined ||
    h['x-anonymous-consumer'] !== undefined
  );
}

/**
 * Removes the headers `connection` names, but for its usual options, Host, and the headers that
 * frame the body (Node has read the body by them; without them it would be forwarded empty).
 */
function dropConnectionOptions(h: IncomingHttpHeaders, connection: string): void {
  for (const part of connection.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '' || name === 'keep-alive' || name === 'close' || name === 'upgrade' || name === 'host') continue;
    if (name === 'content-length' || name === 'transfer-encoding') continue;
    delete h[name];
  }
}
