// Kong's admin API error bodies (kong/db/errors.lua), shared by the control plane and by
// plugins validating their own config and entities.
import type { z } from 'zod';
import { emptyRecord } from './records.ts';

/** Mirrors the input's shape: a message per bad field, nested for records, arrays by index. */
export type FieldErrors = { [field: string]: string | string[] | (string | null)[] | FieldErrors };

export class KongError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message ?? 'error'));
    this.name = 'KongError';
  }
}

function flatten(fields: FieldErrors, prefix = ''): [string, string][] {
  const out: [string, string][] = [];
  for (const key of Object.keys(fields).sort()) {
    const value = fields[key];
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'string') out.push([path, value]);
    else if (Array.isArray(value)) {
      value.forEach((v, i) => {
        if (typeof v === 'string') out.push([value.length === 1 && i === 0 ? path : `${path}.${i + 1}`, v]);
      });
    } else if (value) out.push(...flatten(value, path));
  }
  return out;
}

/** 400 schema violation: `schema violation (a: err)` or `N schema violations (a: err; b: err)`. */
export function schemaViolation(fields: FieldErrors): KongError {
  const entity = fields['@entity'];
  const rest = { ...fields };
  delete rest['@entity'];
  const parts: string[] = [];
  if (Array.isArray(entity)) {
    for (const e of entity) if (e) parts.push(e);
  } else if (typeof entity === 'string') parts.push(entity);
  for (const [path, msg] of flatten(rest)) parts.push(`${path}: ${msg}`);
  const message =
    parts.length === 1 ? `schema violation (${parts[0]})` : `${parts.length} schema violations (${parts.join('; ')})`;
  return new KongError(400, { code: 2, name: 'schema violation', message, fields });
}

const typeName: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'a record',
  record: 'a map',
  map: 'a map',
  set: 'a set',
};

/** `node[key]` if it is the node's own (a key such as `toString` is a field name here). */
const own = (node: any, key: PropertyKey): any => (Object.hasOwn(node, key) ? node[key] : undefined);

function setAt(target: FieldErrors, path: PropertyKey[], message: string) {
  let node: any = target;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i];
    const nextIsIndex = typeof path[i + 1] === 'number';
    const child = own(node, key);
    if (typeof child !== 'object' || child === null) node[key] = nextIsIndex ? [] : emptyRecord();
    node = node[key];
  }
  const last = path[path.length - 1];
  if (typeof last === 'number' && Array.isArray(node)) {
    for (let i = 0; i < last; i++) if (node[i] === undefined) node[i] = null;
  }
  if (own(node, last) === undefined) node[last as any] = message;
}

/**
 * Maps zod issues to Kong's field messages ("required field missing", "unknown field",
 * "expected a string", "expected one of: a, b"). A refinement's own message is kept, and
 * a refinement with path [] (or ['@entity']) becomes an entity-level error.
 */
export function zodToFieldErrors(error: z.ZodError, input?: unknown): FieldErrors {
  const fields: FieldErrors = emptyRecord();
  const received = (path: (string | number)[]) => path.reduce<any>((v, k) => (v == null ? undefined : own(v, k)), input);
  for (const issue of error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    let message = issue.message;
    switch (issue.code) {
      case 'invalid_type': {
        const value = received(path);
        if (value === undefined || value === null) message = 'required field missing';
        // A schema's own message (z.number({ error: 'expected an integer' })) is kept.
        else if (/^Invalid input/.test(message)) message = `expected ${typeName[issue.expected] ?? issue.expected}`;
        break;
      }
      case 'unrecognized_keys':
        for (const key of issue.keys) setAt(fields, [...path, key], 'unknown field');
        continue;
      case 'invalid_value':
        if ('values' in issue && Array.isArray(issue.values)) message = `expected one of: ${issue.values.join(', ')}`;
        break;
      case 'too_small':
      case 'too_big': {
        // zod's default texts ("Too small: expected ...") become Kong's; custom messages stay.
        if (!/^Too (small|big)/.test(message)) break;
        const bound = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
        if (issue.origin === 'string' || issue.origin === 'array' || issue.origin === 'set') {
          message = issue.code === 'too_small' ? `length must be at least ${bound}` : `length must be at most ${bound}`;
        } else {
          message = issue.code === 'too_small' ? `value must be at least ${bound}` : `value must be at most ${bound}`;
        }
        break;
      }
      case 'invalid_format':
        if (/^Invalid string/.test(message)) {
          message = `invalid value: ${String(received(path))}`;
        }
        break;
      default:
        break;
    }
    if (path.length === 0 || path[0] === '@entity') {
      const list = (fields['@entity'] as string[] | undefined) ?? [];
      list.push(message);
      fields['@entity'] = list;
    } else setAt(fields, path, message);
  }
  return collapseRecordErrors(fields);
}

/**
 * A record-level rule of a nested record, reported by the schema at `[..., 'config', '@config']`,
 * is Kong's `fields.config = "<message>"`. Kong only runs record-level rules once the record's
 * fields are valid, so when the record also has field errors those win.
 */
function collapseRecordErrors(fields: FieldErrors, depth = 0): FieldErrors {
  if (depth > 32) return fields;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (!value || typeof value !== 'object' || Array.isArray(value)) continue;
    const own = value[`@${key}`];
    if (typeof own === 'string') {
      const others = Object.keys(value).filter((k) => k !== `@${key}`);
      if (others.length === 0) fields[key] = own;
      else delete value[`@${key}`];
    }
    if (typeof fields[key] === 'object') collapseRecordErrors(fields[key] as FieldErrors, depth + 1);
  }
  return fields;
}

export const notFound = () => new KongError(404, { message: 'Not found' });
