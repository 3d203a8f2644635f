// Request parameters as Kong's oauth2 reads them: the query string merged with the body (POST,
// PUT, PATCH; JSON, form-urlencoded or multipart), body values winning. A repeated key becomes
// an array, so type checks ("scope must be a string") see what the client sent. Parameters are
// held in prototype-less objects: a key named `__proto__`, `constructor` or `toString` is an
// ordinary parameter, never a link to Object.prototype.
import type { RequestContext } from '@gatehouse/core/plugin-sdk.ts';

export type Params = Record<string, unknown>;

function emptyParams(): Params {
  return Object.create(null) as Params;
}

/**
 * The parameter name a `key=value` part is read as: percent- and `+`-decoded, a trailing `[]`
 * folded (`access_token[]` is `access_token`); null when it does not decode (such a part is
 * never read). Reading and removing (removeQueryParam) share it, so whatever key a value was
 * read from is the key that gets removed.
 */
function paramName(part: string): string | null {
  const eq = part.indexOf('=');
  const rawKey = eq === -1 ? part : part.slice(0, eq);
  let key: string;
  try {
    key = decodeURIComponent(rawKey.replace(/\+/g, ' '));
  } catch {
    return null;
  }
  return key.endsWith('[]') ? key.slice(0, -2) : key;
}

export function parseUrlEncoded(raw: string): Params {
  const out = emptyParams();
  if (!raw) return out;
  for (const part of raw.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const rawValue = eq === -1 ? '' : part.slice(eq + 1);
    const key = paramName(part);
    if (key === null) continue;
    let value: string;
    try {
      value = decodeURIComponent(rawValue.replace(/\+/g, ' '));
    } catch {
      continue;
    }
    const prev = out[key];
    if (prev === undefined) out[key] = eq === -1 ? true : value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [prev, value];
  }
  return out;
}

/** Form fields of a multipart/form-data body (files are read as their text content). */
export function parseMultipart(body: Buffer, contentType: string): Params {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!m) return emptyParams();
  const boundary = `--${(m[1] ?? m[2]).trim()}`;
  const text = body.toString('latin1');
  const out = emptyParams();
  for (const chunk of text.split(boundary).slice(1)) {
    if (chunk.startsWith('--')) break;
    const headerEnd = chunk.indexOf('\r\n\r\n');
    if (headerEnd === -1) continue;
    const headers = chunk.slice(0, headerEnd);
    const name = /content-disposition:[^\r\n]*\bname="([^"]*)"/i.exec(headers)?.[1];
    if (name === undefined) continue;
    let value = chunk.slice(headerEnd + 4);
    if (value.endsWith('\r\n')) value = value.slice(0, -2);
    const decoded = Buffer.from(value, 'latin1').toString('utf8');
    const prev = out[name];
    if (prev === undefined) out[name] = decoded;
    else if (Array.isArray(prev)) prev.push(decoded);
    else out[name] = [prev, decoded];
  }
  return out;
}

export function bodyKind(ctx: RequestContext): 'json' | 'form' | 'multipart' | null {
  const ct = String(ctx.req.headers['content-type'] ?? '').toLowerCase();
  if (ct.includes('application/json') || /\+json\b/.test(ct)) return 'json';
  if (ct.includes('application/x-www-form-urlencoded')) return 'form';
  if (ct.includes('multipart/form-data')) return 'multipart';
  return null;
}

export async function readBodyParams(ctx: RequestContext): Promise<Params> {
  if (ctx.method !== 'POST' && ctx.method !== 'PUT' && ctx.method !== 'PATCH') return emptyParams();
  const kind = bodyKind(ctx);
  if (!kind) return emptyParams();
  const body = await ctx.readBody();
  if (body.length === 0) return emptyParams();
  if (kind === 'json') {
    try {
      // JSON.parse makes `__proto__` an own key; the copy keeps it one.
      const parsed = JSON.parse(body.toString('utf8'));
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? Object.assign(emptyParams(), parsed) : emptyParams();
    } catch {
      return emptyParams();
    }
  }
  if (kind === 'form') return parseUrlEncoded(body.toString('utf8'));
  return parseMultipart(body, String(ctx.req.headers['content-type']));
}

export async function readParams(ctx: RequestContext): Promise<Params> {
  const query = parseUrlEncoded(ctx.rawQuery);
  const body = await readBodyParams(ctx);
  return Object.assign(query, body);
}

/**
 * A query string (or form body) without every part read as `name` (any encoding of it, and
 * `name[]`); other parameters keep their exact encoding.
 */
export function removeQueryParam(rawQuery: string, name: string): string {
  return rawQuery
    .split('&')
    .filter((part) => part !== '' && paramName(part) !== name)
    .join('&');
}

/** Kong's encode_args: keys sorted, [A-Za-z0-9-._~] kept, everything else %xx in lower case. */
export function encodeArgs(params: Record<string, string>): string {
  const enc = (s: string) =>
    Array.from(Buffer.from(s, 'utf8'))
      .map((b) => {
        const c = String.fromCharCode(b);
        return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
      })
      .join('');
  return Object.keys(params)
    .sort()
    .map((k) => `${enc(k)}=${enc(params[k])}`)
    .join('&');
}

/** A parameter's value when it is one string (not repeated, not JSON of another type). */
export function stringParam(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
