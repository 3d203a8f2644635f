// Kong renders keys in its 409 messages with Penlight's pretty.write(t, ""): a Lua table
// literal on one line, keys sorted, strings quoted, nulls as `null`.
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

export function luaTable(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (depth > 8) return '{...}';
  if (Array.isArray(value)) return `{${value.map((v) => luaTable(v, depth + 1)).join(',')}}`;
  if (typeof value === 'object') {
    const entries = Object.keys(value as object)
      .sort()
      .map((k) => `${IDENT.test(k) ? k : `[${quote(k)}]`}=${luaTable((value as Record<string, unknown>)[k], depth + 1)}`);
    return `{${entries.join(',')}}`;
  }
  return quote(String(value));
}
