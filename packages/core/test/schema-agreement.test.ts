// The Prisma schema (prisma/schema/*.prisma) and the hand-written SQL migration must agree:
// every model's table and every scalar field's column exist with matching nullability and type
// family, no table has columns the schema does not know, and every model round-trips through the
// Prisma client with all its fields set.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Database } from '../src/index.ts';
import { openTestDatabase } from '../src/testing.ts';

const SCHEMA_DIR = join(import.meta.dirname, '../../../prisma/schema');
const SCALARS = new Set(['String', 'Int', 'BigInt', 'Boolean', 'Json', 'DateTime', 'Float', 'Decimal', 'Bytes']);

interface Field {
  name: string;
  column: string;
  type: string;
  optional: boolean;
  list: boolean;
  attrs: string;
  uuid: boolean;
}
interface Relation {
  fields: string[];
  model: string;
}
interface Model {
  name: string;
  table: string;
  fields: Field[];
  relations: Relation[];
}

function parseSchema(): Model[] {
  const text = readdirSync(SCHEMA_DIR)
    .filter((f) => f.endsWith('.prisma'))
    .map((f) => readFileSync(join(SCHEMA_DIR, f), 'utf8'))
    .join('\n');
  const models: Model[] = [];
  for (const m of text.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)) {
    const model: Model = { name: m[1], table: m[1], fields: [], relations: [] };
    for (const raw of m[2].split('\n')) {
      const line = raw.replace(/\/\/.*$/, '').trim();
      if (!line) continue;
      const map = /^@@map\("([^"]+)"\)/.exec(line);
      if (map) {
        model.table = map[1];
        continue;
      }
      if (line.startsWith('@@')) continue;
      const f = /^(\w+)\s+(\w+)(\[\])?(\?)?\s*(.*)$/.exec(line);
      if (!f) throw new Error(`cannot parse field line in ${model.name}: ${line}`);
      const [, name, type, list, optional, attrs] = f;
      if (!SCALARS.has(type)) {
        const rel = /@relation\([^)]*fields:\s*\[([^\]]+)\]/.exec(attrs);
        if (rel) model.relations.push({ fields: rel[1].split(',').map((s) => s.trim()), model: type });
        continue;
      }
      model.fields.push({
        name,
        type,
        list: !!list,
        optional: !!optional,
        attrs,
        column: /@map\("([^"]+)"\)/.exec(attrs)?.[1] ?? name,
        uuid: /@db\.Uuid/.test(attrs),
      });
    }
    models.push(model);
  }
  return models;
}

const models = parseSchema();
let db: Database;
let close: () => Promise<void>;
before(async () => {
  ({ db, close } = await openTestDatabase());
});
after(async () => {
  await close();
});

function family(f: Field): { data_type: string[]; udt_name?: string } {
  if (f.list) return { data_type: ['ARRAY'], udt_name: f.uuid ? '_uuid' : { String: '_text', Int: '_int4', BigInt: '_int8', Boolean: '_bool' }[f.type] };
  if (f.uuid) return { data_type: ['uuid'] };
  switch (f.type) {
    case 'String':
      return { data_type: ['text', 'character varying'] };
    case 'Int':
      return { data_type: ['integer'] };
    case 'BigInt':
      return { data_type: ['bigint'] };
    case 'Boolean':
      return { data_type: ['boolean'] };
    case 'Json':
      return { data_type: ['jsonb', 'json'] };
    case 'DateTime':
      return { data_type: ['timestamp without time zone', 'timestamp with time zone', 'timestamp(3) without time zone'] };
    case 'Float':
      return { data_type: ['double precision'] };
    default:
      return { data_type: [f.type.toLowerCase()] };
  }
}

test('the schema parses into the expected models', () => {
  assert.deepEqual(models.map((m) => m.name).sort(), [
    'ConfigVersion', 'Consumer', 'Oauth2AuthorizationCode', 'Oauth2Credential', 'Oauth2Token', 'Plugin', 'Route', 'Service',
  ]);
  for (const m of models) assert.ok(m.fields.some((f) => f.name === 'id'), `${m.name} has an id`);
});

test('every model has its table, every field its column with the same nullability and type, nothing extra', async () => {
  const columns = await db.sql.query<{ table_name: string; column_name: string; is_nullable: string; data_type: string; udt_name: string }>(
    `SELECT table_name, column_name, is_nullable, data_type, udt_name FROM information_schema.columns WHERE table_schema = 'public'`,
  );
  const problems: string[] = [];
  for (const m of models) {
    const cols = columns.filter((c) => c.table_name === m.table);
    if (cols.length === 0) {
      problems.push(`table ${m.table} (model ${m.name}) is missing`);
      continue;
    }
    for (const f of m.fields) {
      const c = cols.find((x) => x.column_name === f.column);
      if (!c) {
        problems.push(`${m.table}.${f.column} (${m.name}.${f.name}) is missing`);
        continue;
      }
      const nullable = f.optional && !f.list;
      if ((c.is_nullable === 'YES') !== nullable) problems.push(`${m.table}.${f.column}: nullable ${c.is_nullable}, schema says ${nullable ? 'optional' : 'required'}`);
      const want = family(f);
      if (!want.data_type.includes(c.data_type)) problems.push(`${m.table}.${f.column}: type ${c.data_type}, schema ${f.type}${f.list ? '[]' : ''}${f.uuid ? ' @db.Uuid' : ''}`);
      if (want.udt_name && c.udt_name !== want.udt_name) problems.push(`${m.table}.${f.column}: element type ${c.udt_name}, expected ${want.udt_name}`);
    }
    for (const c of cols) {
      if (!m.fields.some((f) => f.column === c.column_name)) problems.push(`${m.table}.${c.column_name} is not in model ${m.name}`);
    }
  }
  const known = new Set(models.map((m) => m.table));
  for (const table of new Set(columns.map((c) => c.table_name))) {
    if (!known.has(table) && table !== '_prisma_migrations') problems.push(`table ${table} has no model`);
  }
  assert.deepEqual(problems, []);
});

test('every model round-trips through the Prisma client with all fields set', async () => {
  // Parents before children.
  const ordered: Model[] = [];
  const pending = [...models];
  while (pending.length) {
    const i = pending.findIndex((m) => m.relations.every((r) => r.model === m.name || ordered.some((o) => o.name === r.model)));
    assert.ok(i >= 0, 'relations form no cycle');
    ordered.push(...pending.splice(i, 1));
  }
  const created = new Map<string, Record<string, unknown>>();
  let n = 0;
  for (const m of ordered) {
    const data: Record<string, unknown> = {};
    for (const f of m.fields) {
      n++;
      const rel = m.relations.find((r) => r.fields.includes(f.name));
      if (rel) {
        data[f.name] = created.get(rel.model)!.id;
        continue;
      }
      if (f.name === 'id') {
        data.id = f.type === 'Int' ? 2 : randomUUID();
        continue;
      }
      const one = (): unknown => {
        if (f.uuid) return randomUUID();
        switch (f.type) {
          case 'String':
            return `${f.name}-${n}-é✓`;
          case 'Int':
            return 1000 + n;
          case 'BigInt':
            return 9007199254740993n + BigInt(n);
          case 'Boolean':
            return !/@default\(true\)/.test(f.attrs);
          case 'Json':
            return { nested: { list: [1, 'two', null, true] }, n };
          case 'Float':
            return n + 0.5;
          case 'DateTime':
            return new Date(1_700_000_000_000 + n * 1000);
          default:
            throw new Error(`no sample for ${f.type}`);
        }
      };
      data[f.name] = f.list ? [one(), one()] : one();
    }
    const delegate = (db.prisma as any)[m.name[0].toLowerCase() + m.name.slice(1)];
    assert.ok(delegate, `Prisma delegate for ${m.name}`);
    await delegate.create({ data });
    const back = await delegate.findUnique({ where: { id: data.id } });
    assert.deepEqual(back, data, `${m.name} reads back what was written`);
    created.set(m.name, data);
  }
  assert.equal(created.size, models.length);
});
