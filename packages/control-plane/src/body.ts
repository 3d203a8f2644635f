// Request bodies as Kong accepts them: JSON, x-www-form-urlencoded and multipart/form-data,
// the latter two with Kong's notations (`config.scopes=a`, repeated keys or `key[]` for arrays,
// `key[2]=x` by position, `service.id=<uuid>`). Form values arrive as strings; the engine
// converts them to the types the entity's schema expects (formCoerce).
import type { Request } from 'express';
import { KongError } from '@gatehouse/core';

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

function setPath(target: Record<string, unknown>, key: string, value: string) {
  // `a.b[]`, `a[1].b`, `a.b` → segments; `[]` appends, `[n]` places at n (1-based as Lua).
  const segments: (string | number | null)[] = [];
  for (const part of key.split('.')) {
    const m = /^([^[\]]*)((?:\[\d*\])*)$/.exec(part);
    if (!m) throw bad(`invalid form key '${key.slice(0, 100)}'`);
    if (m[1] !== '') segments.push(m[1]);
    for (const idx of m[2].match(/\[\d*\]/g) ?? []) segments.push(idx === '[]' ? null : Number(idx.slice(1, -1)));
  }
  if (segments.length === 0 || typeof segments[0] !== 'string' || segments.length > MAX_DEPTH) {
    throw bad(`invalid form key '${key.slice(0, 100)}'`);
  }
  let node: any = target;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    const nextIsIndex = !last && typeof segments[i + 1] !== 'string';
    if (typeof seg === 'string') {
      if (seg === '__proto__' || seg === 'constructor' || seg === 'prototype') throw bad(`invalid form key '${key.slice(0, 100)}'`);
      if (Array.isArray(node)) throw bad(`invalid form key '${key.slice(0, 100)}'`);
      if (last) {
        const prev = node[seg];
        if (prev === undefined) node[seg] = value;
        else if (Array.isArray(prev)) prev.push(value);
        else if (typeof prev === 'string') node[seg] = [prev, value];
        else throw bad(`invalid form key '${key.slice(0, 100)}'`);
      } else {
        if (node[seg] === undefined || typeof node[seg] === 'string') {
          node[seg] = node[seg] === undefined ? (nextIsIndex ? [] : {}) : nextIsIndex ? [node[seg]] : {};
        }
        node = node[seg];
      }
    } else {
      if (!Array.isArray(node)) throw bad(`invalid form key '${key.slice(0, 100)}'`);
      const index = seg === null ? node.length : seg - 1;
      if (index < 0 || index > 1000) throw bad(`invalid form key '${key.slice(0, 100)}'`);
      if (last) node[index] = value;
      else {
        node[index] ??= nextIsIndex ? [] : {};
        node = node[index];
      }
    }
  }
}

export function formToObject(entries: Iterable<[string, string]>): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [key, value] of entries) setPath(out, key, value);
  // Holes left by `key[3]=x` without 1 and 2 become nulls; plain objects from here on.
  return JSON.parse(JSON.stringify(out, (_k, v) => (v === undefined ? null : v)));
}

/** Reads and decodes the body of a POST/PUT/PATCH, or throws Kong's 400/413/415. */
export async function parseBody(req: Request): Promise<ParsedBody> {
  const raw = await readRaw(req);
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const mime = type.split(';')[0].trim();
  if (!mime) {
    if (raw.length === 0) return { value: {}, form: false };
    throw new KongError(415, { message: 'Unsupported Media Type' });
  }
  if (mime === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mime)) {
    if (raw.length === 0) return { value: {}, form: false };
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      throw bad('Cannot parse JSON body');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('Cannot parse JSON body');
    return { value: value as Record<string, unknown>, form: false };
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
