// Entity fields as the admin commands take them: `-p field=value` (repeatable, Express
// Gateway's syntax; the field in the admin API's form notation: `paths[]=/x`,
// `config.scopes[]=read`) or newline-delimited JSON objects on stdin (`--stdin`, one entity a
// line). Values are not interpreted here: the admin API converts and validates them.
import type { RequestBody } from './client.ts';

/** `name=value` → [name, value]; the value may itself contain `=`. */
export function parseAssignment(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new Error(`expected field=value, got '${text}'`);
  return [text.slice(0, at), text.slice(at + 1)];
}

/** The top-level field a form key sets: `config.scopes[]` → `config`. */
function topField(key: string): string {
  return /^[^.[]*/.exec(key)![0];
}

/** True when the body sets the field (for JSON, to something other than null). */
export function hasField(body: RequestBody, field: string): boolean {
  if ('json' in body) return body.json[field] !== undefined && body.json[field] !== null;
  return body.form.some(([key]) => topField(key) === field);
}

export interface JsonLine {
  /** 1-based, for messages. */
  line: number;
  object: Record<string, unknown>;
}

/** Reads `stream` to its end: one JSON object per non-blank line. */
export async function readJsonLines(stream: AsyncIterable<Buffer | string>): Promise<JsonLine[]> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  const objects: JsonLine[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new Error(`--stdin line ${i + 1}: not JSON (${(err as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`--stdin line ${i + 1}: expected a JSON object`);
    objects.push({ line: i + 1, object: value as Record<string, unknown> });
  });
  return objects;
}
