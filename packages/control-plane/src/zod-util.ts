// Walks zod schemas (zod 4 internals: `_zod.def`) for what the engine needs: the user-settable
// keys of an entity schema (PATCH merges), and converting form strings to the expected types.
import type { z } from 'zod';
import { emptyRecord } from '@gatehouse/core';

type Def = { type: string; [k: string]: any };
const defOf = (schema: unknown): Def | null => ((schema as any)?._zod?.def as Def) ?? null;

/** Strips optional/nullable/default/pipe/readonly wrappers. */
export function unwrap(schema: unknown, depth = 0): unknown {
  const def = defOf(schema);
  if (!def || depth > 20) return schema;
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return unwrap(def.innerType, depth + 1);
    case 'pipe':
      return unwrap(def.in, depth + 1);
    default:
      return schema;
  }
}

/** Keys of an object schema (after unwrapping), or null when the schema is not an object. */
export function objectKeys(schema: z.ZodType): string[] | null {
  const inner = defOf(unwrap(schema));
  if (inner?.type !== 'object') return null;
  return Object.keys(inner.shape ?? {});
}

function coerceScalar(type: string | undefined, value: string): unknown {
  if (type === 'number' || type === 'int' || type === 'bigint') {
    return /^\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*$/.test(value) ? Number(value) : value;
  }
  if (type === 'boolean') {
    if (value === 'true') return true;
    if (value === 'false') return false;
    return value;
  }
  return value;
}

/**
 * Converts a decoded form body to the types `schema` expects: numeric and boolean strings,
 * a single value where an array is expected, and an empty value as null (Kong's way of unsetting
 * a field from a form). Anything it cannot convert is left for the schema to reject.
 */
export function formCoerce(schema: unknown, value: unknown, depth = 0): unknown {
  if (depth > 32) return value;
  const inner = unwrap(schema);
  const def = defOf(inner);
  if (!def) return value;
  if (value === '' && def.type !== 'string') return null;
  switch (def.type) {
    case 'object': {
      if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
      const shape = def.shape ?? {};
      const out = emptyRecord();
      for (const [k, v] of Object.entries(value)) out[k] = Object.hasOwn(shape, k) ? formCoerce(shape[k], v, depth + 1) : v;
      return out;
    }
    case 'record': {
      if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
      const out = emptyRecord();
      for (const [k, v] of Object.entries(value)) out[k] = formCoerce(def.valueType, v, depth + 1);
      return out;
    }
    case 'array': {
      const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : value;
      return Array.isArray(list) ? list.map((v) => formCoerce(def.element, v, depth + 1)) : list;
    }
    case 'union': {
      for (const option of def.options ?? []) {
        const t = defOf(unwrap(option))?.type;
        if (typeof value === 'string' && t && t !== 'string') {
          const c = coerceScalar(t, value);
          if (c !== value) return c;
        }
      }
      return value;
    }
    default:
      if (typeof value === 'string') return coerceScalar(def.type, value);
      if (Array.isArray(value) && value.length === 1 && typeof value[0] === 'string') return coerceScalar(def.type, value[0]);
      return value;
  }
}
