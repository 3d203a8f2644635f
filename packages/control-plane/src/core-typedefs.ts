// The field types Kong's core entities share (kong/db/schema/typedefs.lua): names, tags, hosts,
// paths, ports, timeouts, ids; and the row helpers the entity definitions use.
import { z } from 'zod';
import type { Row } from '@gatehouse/core';

export const nullIfEmpty = <T>(list: T[] | null | undefined): T[] | null => (list && list.length ? list : null);
export const emptyIfNull = <T>(list: T[] | null | undefined): T[] => list ?? [];

export const ALL_PROTOCOLS = ['grpc', 'grpcs', 'http', 'https', 'tcp', 'tls', 'tls_passthrough', 'udp'] as const;
export const PLUGIN_PROTOCOLS = ['grpc', 'grpcs', 'http', 'https'];

// ----------------------------------------------------------------- typedefs

// Kong's utf8_name: ASCII alphanumerics and `. - _ ~`, plus any non-ASCII character.
export const NAME_RE = /^[A-Za-z0-9._~\u0080-\u{10ffff}-]+$/u;
export const utf8Name = z
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
export const set = <T extends z.ZodType>(element: T) => z.array(element, { error: 'expected a set' });
export const tags = set(
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

export const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})?)*\.?$/;
export const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;
export const IPV6_RE = /^\[?[0-9A-Fa-f:.]+\]?$/;
export const isHost = (v: string) => v.length <= 253 && (IPV4_RE.test(v) || (v.includes(':') && IPV6_RE.test(v)) || HOST_RE.test(v));
export const host = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    if (!isHost(v)) ctx.addIssue({ code: 'custom', message: `invalid value: ${v.slice(0, 100)}` });
  });

export const int = () => z.number({ error: 'expected an integer' }).int();
export const between = (min: number, max: number) =>
  int().min(min, `value should be between ${min} and ${max}`).max(max, `value should be between ${min} and ${max}`);

/** Kong's validate_path: RFC 3986 path characters, properly percent-encoded. */
export function pathError(v: string): string | null {
  if (!/^\/[A-Za-z0-9._~\/%:@!$&'()*+,;=-]*$/.test(v)) {
    return `invalid path: '${v.slice(0, 200)}' (characters outside of the reserved list of RFC 3986 found)`;
  }
  const raw = v.replace(/%[0-9A-Fa-f]{2}/g, '___');
  const bad = /%.?.?/.exec(raw);
  if (bad) return `invalid url-encoded value: '${bad[0]}'`;
  return null;
}

export const path = z
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

export const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'expected a valid UUID');

export const timestamps = (row: Row) => ({ created_at: row.createdAt as number, updated_at: row.updatedAt as number });
