// What the admin commands print: a plain aligned table by default (a few key columns; `info`
// shows every field, one per line), the API's JSON with --json (one document per line, so it
// pipes into jq and back into --stdin), only ids with -q.
import type { Entity } from './client.ts';

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
}

/** One value as a table cell: `-` for none, lists comma-separated, `{id}` references as the id. */
export function cell(value: unknown): string {
  let text: string;
  if (value === null || value === undefined || (Array.isArray(value) && value.length === 0)) text = '-';
  else if (Array.isArray(value)) text = value.map(cell).join(',');
  else if (typeof value === 'object') {
    const keys = Object.keys(value);
    text = keys.length === 1 && keys[0] === 'id' ? String((value as Entity).id) : JSON.stringify(value);
  } else text = String(value);
  // Control characters (an escape sequence in a tag, say) never reach the terminal.
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Rows of cells aligned in columns two spaces apart. */
function align(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

export function table(entities: Entity[], columns: readonly string[]): string {
  return align([[...columns], ...entities.map((e) => columns.map((c) => cell(e[c])))]);
}

/** Every field of one entity, one per line. */
export function details(entity: Entity): string {
  return align(Object.entries(entity).map(([k, v]) => [k, cell(v)]));
}

export function ids(entities: Entity[]): string {
  return entities.map((e) => `${e.id}\n`).join('');
}

export function json(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** Entities written by create or update, or read by list. */
export function printEntities(entities: Entity[], columns: readonly string[], options: OutputOptions): void {
  if (options.json) process.stdout.write(entities.map(json).join(''));
  else if (options.quiet) process.stdout.write(ids(entities));
  else process.stdout.write(table(entities, columns));
}
