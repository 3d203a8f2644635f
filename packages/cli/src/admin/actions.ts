// create, list, info, update and remove for any entity of admin/entities.ts, over the admin
// API. Loaded by the commands' actions only, with everything it uses.
import { AdminApiError, adminClient, type AdminClient, type Entity, type RequestBody } from './client.ts';
import type { EntityCommand, Requirement } from './entities.ts';
import { hasField, readJsonLines } from './fields.ts';
import { details, ids, json, printEntities, table, type OutputOptions } from './output.ts';
import { ask, canPrompt } from './prompts.ts';

export interface ActionOptions extends OutputOptions {
  adminUrl?: string;
  property?: [string, string][];
  stdin?: boolean;
  all?: boolean;
  type?: string;
  /** Parents, by their keys (`service`, `consumer`, …). */
  [parent: string]: unknown;
}

/** A body to send, and where it came from (for messages). */
interface Input {
  body: RequestBody;
  /** `--stdin line 3`, or undefined for -p. */
  line?: string;
}

const segment = (value: unknown) => `/${encodeURIComponent(String(value))}`;

/** /services, or /services/<x>/routes when a parent option is given. */
function collectionPath(spec: EntityCommand, options: ActionOptions): string {
  const path = typeof spec.path === 'string' ? spec.path : spec.path.byType[options.type!];
  const parent = spec.parents.find((p) => options[p.key] !== undefined);
  return parent ? `/${parent.path}${segment(options[parent.key])}/${path}` : `/${path}`;
}

async function inputs(options: ActionOptions): Promise<Input[]> {
  if (!options.stdin) return [{ body: { form: [...(options.property ?? [])] } }];
  const lines = await readJsonLines(process.stdin);
  if (lines.length === 0) throw new Error('--stdin: no JSON object on stdin');
  return lines.map((l) => ({ body: { json: l.object }, line: `--stdin line ${l.line}` }));
}

function missingMessage(spec: EntityCommand, input: Input, missing: Requirement[]): string {
  const fields = missing.map((r) => (r.anyOf.length > 1 ? `one of ${r.anyOf.join(', ')}` : r.anyOf[0])).join(' and ');
  if (input.line) return `${input.line}: missing ${fields}`;
  const give = missing.map((r) => `-p ${r.ask}${r.list ? '[]' : ''}=<value>`).join(' ');
  return `${spec.command} create: missing ${fields}; give ${give} (there is no terminal to ask on)`;
}

/** Fills in missing required fields from prompts on a terminal, else fails naming them. */
async function complete(spec: EntityCommand, input: Input): Promise<void> {
  const missing = spec.required.filter((r) => !r.anyOf.some((f) => hasField(input.body, f)));
  if (missing.length === 0) return;
  // Entities from --stdin (JSON) are never completed by prompts: stdin is not the terminal.
  if (!('form' in input.body) || !canPrompt()) throw new Error(missingMessage(spec, input, missing));
  input.body.form.push(...(await ask(missing)));
}

/** Sends each input in turn; on an error, what was written is still printed and the input named. */
async function writeAll(client: AdminClient, method: string, path: string, all: Input[], print: (written: Entity[]) => void): Promise<void> {
  const written: Entity[] = [];
  try {
    for (const input of all) {
      try {
        written.push((await client.request(method, path, input.body)) as Entity);
      } catch (err) {
        if (input.line) (err as Error).message = `${input.line}: ${(err as Error).message}`;
        throw err;
      }
    }
  } finally {
    if (written.length) print(written);
  }
}

export async function create(spec: EntityCommand, options: ActionOptions): Promise<void> {
  const all = await inputs(options);
  // Every input is checked before the first is sent.
  for (const input of all) await complete(spec, input);
  const client = adminClient(options.adminUrl);
  await writeAll(client, 'POST', collectionPath(spec, options), all, (written) =>
    printEntities(written, spec.createColumns ?? spec.columns, options),
  );
}

export async function list(spec: EntityCommand, options: ActionOptions): Promise<void> {
  const page = await adminClient(options.adminUrl).list(collectionPath(spec, options), Boolean(options.all));
  if (options.json) process.stdout.write(json(page));
  else if (options.quiet) process.stdout.write(ids(page.data));
  else {
    process.stdout.write(table(page.data, spec.columns));
    if (page.next) process.stderr.write(`gatehouse: more ${spec.command} on the next pages; -a lists them all\n`);
  }
}

/** The API's errors about one entity say which: `service 'x': Not found`. */
async function about<T>(spec: EntityCommand, key: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AdminApiError) err.message = `${spec.singular} '${key}': ${err.message}`;
    throw err;
  }
}

export async function info(spec: EntityCommand, key: string, options: ActionOptions): Promise<void> {
  const client = adminClient(options.adminUrl);
  const entity = (await about(spec, key, () => client.request('GET', collectionPath(spec, options) + segment(key)))) as Entity;
  if (options.json) process.stdout.write(json(entity));
  else if (options.quiet) process.stdout.write(ids([entity]));
  else process.stdout.write(details(entity));
}

export async function update(spec: EntityCommand, key: string, options: ActionOptions): Promise<void> {
  const all = await inputs(options);
  if (all.length > 1) throw new Error(`--stdin: update takes one JSON object, got ${all.length}`);
  if ('form' in all[0].body && all[0].body.form.length === 0) throw new Error('nothing to update: give -p field=value or --stdin');
  const client = adminClient(options.adminUrl);
  await about(spec, key, () =>
    writeAll(client, 'PATCH', collectionPath(spec, options) + segment(key), all, (written) => printEntities(written, spec.columns, options)),
  );
}

export async function remove(spec: EntityCommand, keys: string[], options: ActionOptions): Promise<void> {
  const client = adminClient(options.adminUrl);
  for (const key of keys) {
    const path = collectionPath(spec, options) + segment(key);
    // The API answers 204 for a key that matches nothing: looking first tells a typo apart.
    await about(spec, key, async () => {
      await client.request('GET', path);
      await client.request('DELETE', path);
    });
    if (!options.json && !options.quiet) process.stdout.write(`removed ${spec.singular} ${key}\n`);
  }
}
