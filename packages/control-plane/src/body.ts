// Request bodies as Kong accepts them: JSON, x-www-form-urlencoded and multipart/form-data,
// the latter two with Kong's notations (`config.scopes=a`, repeated keys or `key[]` for arrays,
// `key[2]=x` by position, `headers[x-v]=1` for a map key, `service.id=<uuid>`). Form values
// arrive as strings; the engine converts them to the types the entity's schema expects
// (formCoerce). Every object is built without a prototype, so that a key named `__proto__`
// or `toString` is an ordinary key, which the schema then reports as unknown.
import type { Request } from 'express';
import { KongError, emptyRecord, withoutPrototypes } from '@gatehouse/core';

export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_DEPTH = 32;

export interface ParsedBody {
  value: Record<string, unknown>;
  /** True for form bodies: strings are converted following the schema. */
  form: boolean;
}

async function readRaw(req: Request): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new KongError(413, { message: 'Request size limit exceeded' });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const bad = (message: string) => new KongError(400, { message });

type Segment = string | number | null;

/**
 * `a.b[]`, `a[1].b`, `a[x.y]` → ['a', 'b', null], ['a', 1, 'b'], ['a', 'x.y']: `[]` appends,
 * `[n]` places at n (1-based as Lua), `[name]` is a map key; null when the key is malformed.
 */
function formKeySegments(key: string): Segment[] | null {
  const segments: Segment[] = [];
  const first = /^[^.[\]]*/.exec(key)![0];
  if (first !== '') segments.push(first);
  const next = /\.([^.[\]]*)|\[([^\]]*)\]/y;
  for (let at = first.length; at < key.length; at = next.lastIndex) {
    next.lastIndex = at;
    const m = next.exec(key);
    if (!m) return null;
    if (m[1] !== undefined) {
      if (m[1] !== '') segments.push(m[1]);
    } else if (m[2] === '') segments.push(null);
    else segments.push(/^\d+$/.test(m[2]) ? Number(m[2]) : m[2]);
  }
  return segments;
}

function setPath(target: Record<string, unknown>, key: string, value: string) {
  const invalid = () => bad(`invalid form key '${key.slice(0, 100)}'`);
  const segments = formKeySegments(key);
  if (!segments || segments.length === 0 || typeof segments[0] !== 'string' || segments.length > MAX_DEPTH) throw invalid();
  let node: any = target;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    const nextIsIndex = !last && typeof segments[i + 1] !== 'string';
    if (typeof seg === 'string') {
      if (Array.isArray(node)) throw invalid();
      if (last) {
        const prev = node[seg];
        if (prev === undefined) node[seg] = value;
        else if (Array.isArray(prev)) prev.push(value);
        else if (typeof prev === 'string') node[seg] = [prev, value];
        else throw invalid();
      } else {
        if (node[seg] === undefined || typeof node[seg] === 'string') {
          node[seg] = node[seg] === undefined ? (nextIsIndex ? [] : emptyRecord()) : nextIsIndex ? [node[seg]] : emptyRecord();
        }
        node = node[seg];
      }
    } else {
      if (!Array.isArray(node)) throw invalid();
      const index = seg === null ? node.length : seg - 1;
      if (index < 0 || index > 1000) throw invalid();
      if (last) node[index] = value;
      else {
        node[index] ??= nextIsIndex ? [] : emptyRecord();
        node = node[index];
      }
    }
  }
}

/** Holes left by `key[3]=x` without 1 and 2 become nulls, as a JSON body would have them. */
function fillHoles(value: unknown): unknown {
  if (Array.isArray(value)) return Array.from(value, (v) => (v === undefined ? null : fillHoles(v)));
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    for (const k of Object.keys(record)) record[k] = fillHoles(record[k]);
  }
  return value;
}

export function formToObject(entries: Iterable<[string, string]>): Record<string, unknown> {
  const out = emptyRecord();
  for (const [key, value] of entries) setPath(out, key, value);
  return fillHoles(out) as Record<string, unknown>;
}

/** Reads and decodes the body of a POST/PUT/PATCH, or throws Kong's 400/413/415. */
export async function parseBody(req: Request): Promise<ParsedBody> {
  const raw = await readRaw(req);
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const mime = type.split(';')[0].trim();
  if (!mime) {
    if (raw.length === 0) return { value: emptyRecord(), form: false };
    throw new KongError(415, { message: 'Unsupported Media Type' });
  }
  if (mime === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mime)) {
    if (raw.length === 0) return { value: emptyRecord(), form: false };
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      throw bad('Cannot parse JSON body');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('Cannot parse JSON body');
    return { value: withoutPrototypes(value) as Record<string, unknown>, form: false };
  }
  if (mime === 'application/x-www-form-urlencoded') {
    const params = new URLSearchParams(raw.toString('utf8'));
    return { value: formToObject(params), form: true };
  }
  if (mime === 'multipart/form-data') {
    let data: FormData;
    try {
      data = await new Response(new Uint8Array(raw), { headers: { 'content-type': req.headers['content-type']! } }).formData();
    } catch {
      throw bad('Cannot parse multipart/form-data body');
    }
    const entries: [string, string][] = [];
    data.forEach((v, k) => entries.push([k, typeof v === 'string' ? v : '']));
    return { value: formToObject(entries), form: true };
  }
  throw new KongError(415, { message: 'Unsupported Media Type' });
}
