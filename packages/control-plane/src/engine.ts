// The generic entity engine: every admin entity, core (services, routes, consumers, plugins) and
// plugin-owned (oauth2 credentials, tokens), is an EntityDefinition served with Kong's verbs,
// `{id or endpoint key}` lookup, nested and foreign paths, pagination, tags and error bodies.
// Writes of config entities bump config_version in the same transaction.
import {
  KongError,
  emptyRecord,
  newId,
  nowSeconds,
  schemaViolation,
  toRecord,
  zodToFieldErrors,
  type Database,
  type EntityDefinition,
  type FieldErrors,
  type Row,
  type WriteContext,
} from '@gatehouse/core';
import { TAG_RE, tagError } from './core-entities.ts';
import { luaTable } from './lua.ts';
import { formCoerce, objectKeys } from './zod-util.ts';

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const camel = (field: string) => field.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

export type ForeignKey = EntityDefinition['foreignKeys'][number];

/** A resolved parent in a nested path (/services/{s}/routes): the child's foreign key and the parent row. */
export interface ParentScope {
  fk: ForeignKey;
  parentDef: EntityDefinition;
  parent: Row;
}

export interface WriteResult {
  status: number;
  body: Row;
}

type Tx = any;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function deepMerge(base: unknown, patch: unknown, depth = 0): unknown {
  if (!isPlainObject(base) || !isPlainObject(patch) || depth > 32) return patch;
  const out = toRecord(base);
  for (const [k, v] of Object.entries(patch)) out[k] = deepMerge(Object.hasOwn(base, k) ? base[k] : undefined, v, depth + 1);
  return out;
}

/**
 * Input the schemas cannot take as it is: a NUL character (Postgres stores none in text or
 * JSON), and a `__proto__` key, which zod leaves out of the objects it builds, so that in a map
 * (route `headers`) it would vanish without an error. Elsewhere zod reports it the same way.
 */
function findUnrepresentable(value: unknown, path: string[], errors: FieldErrors, depth = 0): void {
  if (depth > 64) return;
  if (typeof value === 'string') {
    if (value.includes('\u0000') && path.length) setError(errors, path, 'invalid value: contains a NUL character');
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => findUnrepresentable(v, [...path, String(i)], errors, depth + 1));
    return;
  }
  if (isPlainObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes('\u0000')) setError(errors, path.length ? path : ['@entity'], 'invalid field name: contains a NUL character');
      else if (k === '__proto__') setError(errors, [...path, k], 'unknown field');
      else findUnrepresentable(v, [...path, k], errors, depth + 1);
    }
  }
}

function setError(errors: FieldErrors, path: string[], message: string) {
  if (path[0] === '@entity') {
    errors['@entity'] = [...((errors['@entity'] as string[]) ?? []), message];
    return;
  }
  let node: any = errors;
  for (const key of path.slice(0, -1)) {
    if (!Object.hasOwn(node, key) || typeof node[key] !== 'object' || node[key] === null) node[key] = emptyRecord();
    node = node[key];
  }
  const last = path[path.length - 1];
  if (!Object.hasOwn(node, last) || node[last] === undefined || node[last] === null) node[last] = message;
}

const foreignKeyViolation = (fkValue: Row, field: string, parentName: string) =>
  new KongError(400, {
    code: 4,
    name: 'foreign key violation',
    message: `the foreign key '${luaTable(fkValue)}' does not reference an existing '${parentName}' entity.`,
    fields: { [field]: fkValue },
  });

export const referencedBy = (child: string, parent: string) =>
  new KongError(400, {
    code: 4,
    name: 'foreign key violation',
    message: `an existing '${child}' entity references this '${parent}' entity`,
    fields: { '@referenced_by': child },
  });

export function uniqueViolation(fields: Row): KongError {
  return new KongError(409, {
    code: 5,
    name: 'unique constraint violation',
    message: `UNIQUE violation detected on '${luaTable(fields)}'`,
    fields,
  });
}

const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;

function parseSize(query: URLSearchParams): number {
  const raw = query.get('size');
  if (raw === null) return PAGE_DEFAULT;
  if (!/^\s*-?\d+(\.\d+)?\s*$/.test(raw)) {
    throw new KongError(400, { code: 9, name: 'invalid size', message: 'size must be a number' });
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > PAGE_MAX) {
    throw new KongError(400, { code: 9, name: 'invalid size', message: `size must be an integer between 1 and ${PAGE_MAX}` });
  }
  return n;
}

export function encodeOffset(id: string): string {
  return Buffer.from(JSON.stringify([id])).toString('base64');
}

function decodeOffset(raw: string): string {
  const fail = () =>
    new KongError(400, { code: 7, name: 'invalid offset', message: `'${raw.slice(0, 200)}' is not a valid offset: bad base64 encoding` });
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(raw) || raw.length % 4 !== 0 || raw.length > 400) throw fail();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
  } catch {
    throw fail();
  }
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || !UUID_RE.test(parsed[0])) throw fail();
  return parsed[0];
}



function tagsFilter(query: URLSearchParams): { where: Row | null; raw: string | null } {
  const raw = query.get('tags');
  if (raw === null) return { where: null, raw: null };
  const invalid = (msg: string) =>
    new KongError(400, { code: 11, name: 'invalid options', message: `invalid option (tags: ${msg})`, options: { tags: msg } });
  if (raw === '') throw invalid('cannot be null');
  const and = raw.includes(',');
  const or = raw.includes('/');
  if (and && or) throw invalid('invalid filter syntax');
  const list = raw.split(and ? ',' : '/');
  if (list.some((t) => !TAG_RE.test(t))) throw invalid('invalid filter syntax');
  return { where: or ? { tags: { hasSome: list } } : { tags: { hasEvery: list } }, raw };
}

export interface EngineOptions {
  db: Database;
  /** Called after a committed write of a config entity (the snapshot publisher). */
  onConfigChange?: () => void;
  onAfterCommitError?: (err: unknown, def: EntityDefinition) => void;
  /** Plugins' ControlPlanePart.afterEntityCommit, called after every committed write of any entity. */
  afterEntityCommit?: ((entity: string, op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null) => Promise<void>)[];
}

export class EntityEngine {
  readonly byName = new Map<string, EntityDefinition>();
  readonly byPath = new Map<string, EntityDefinition>();

  constructor(private readonly options: EngineOptions) {}

  register(def: EntityDefinition): void {
    if (this.byName.has(def.name)) throw new Error(`entity '${def.name}' is registered twice`);
    if (this.byPath.has(def.path)) throw new Error(`admin path '/${def.path}' is used by two entities`);
    this.byName.set(def.name, def);
    this.byPath.set(def.path, def);
  }

  get definitions(): EntityDefinition[] {
    return [...this.byName.values()];
  }

  /** Child entities nested under `parentName` (e.g. routes and plugins under services). */
  nestedChildren(parentName: string): { def: EntityDefinition; fk: ForeignKey }[] {
    const out: { def: EntityDefinition; fk: ForeignKey }[] = [];
    for (const def of this.byName.values()) {
      for (const fk of def.foreignKeys) if (fk.nested && fk.entity === parentName) out.push({ def, fk });
    }
    return out;
  }

  private delegate(client: Tx, def: EntityDefinition) {
    const d = client[def.model];
    if (!d) throw new Error(`entity '${def.name}': Prisma model '${def.model}' does not exist`);
    return d;
  }

  private endpointWhere(def: EntityDefinition, value: string): Row | null {
    if (!def.endpointKey) return null;
    return def.whereEndpointKey ? def.whereEndpointKey(value) : { [camel(def.endpointKey)]: value };
  }

  /** `{id or endpoint key}`: a UUID-looking segment is always an id. */
  async findBySegment(def: EntityDefinition, segment: string, client: Tx = this.options.db.prisma): Promise<Row | null> {
    if (UUID_RE.test(segment)) return this.delegate(client, def).findUnique({ where: { id: segment.toLowerCase() } });
    const where = this.endpointWhere(def, segment);
    if (!where) return null;
    return this.delegate(client, def).findFirst({ where });
  }

  /** Resolves /<parent>/{p}; 404 when missing. */
  async resolveParent(parentDef: EntityDefinition, fk: ForeignKey, segment: string): Promise<ParentScope> {
    const parent = await this.findBySegment(parentDef, segment);
    if (!parent) throw new KongError(404, { message: 'Not found' });
    return { fk, parentDef, parent };
  }

  private belongs(row: Row, scope: ParentScope | undefined): boolean {
    return !scope || row[scope.fk.column] === scope.parent.id;
  }

  // ------------------------------------------------------------------ reads

  async list(def: EntityDefinition, query: URLSearchParams, basePath: string, scope?: ParentScope): Promise<Row> {
    const size = parseSize(query);
    const offsetRaw = query.get('offset');
    const after = offsetRaw !== null && offsetRaw !== '' ? decodeOffset(offsetRaw) : null;
    const tags = tagsFilter(query);
    const custom = def.listFilter?.(query) ?? null;
    const and: Row[] = [];
    if (scope) and.push({ [scope.fk.column]: scope.parent.id });
    if (tags.where) and.push(tags.where);
    if (custom) and.push(custom);
    if (after) and.push({ id: { gt: after } });
    const rows: Row[] = await this.delegate(this.options.db.prisma, def).findMany({
      where: and.length ? { AND: and } : undefined,
      orderBy: { id: 'asc' },
      take: size + 1,
    });
    const page = rows.slice(0, size);
    const data = page.map((r) => def.toEntity(r));
    if (rows.length <= size) return { data, next: null };
    const offset = encodeOffset(page[page.length - 1].id);
    let next = `${basePath}?offset=${encodeURIComponent(offset)}`;
    if (!scope && query.get('size') !== null) next += `&size=${size}`;
    if (tags.raw !== null) next += `&tags=${encodeURIComponent(tags.raw)}`;
    return { data, offset, next };
  }

  async get(def: EntityDefinition, segment: string, scope?: ParentScope): Promise<Row> {
    const row = await this.findBySegment(def, segment);
    if (!row || !this.belongs(row, scope)) throw new KongError(404, { message: 'Not found' });
    return def.toEntity(row);
  }

  /** GET /<path>/{x}/<foreign field>: the referenced entity. */
  async getForeign(def: EntityDefinition, segment: string, fk: ForeignKey): Promise<{ row: Row; target: EntityDefinition }> {
    const row = await this.findBySegment(def, segment);
    const target = this.byName.get(fk.entity);
    if (!row || !target || !row[fk.column]) throw new KongError(404, { message: 'Not found' });
    const ref = await this.delegate(this.options.db.prisma, target).findUnique({ where: { id: row[fk.column] } });
    if (!ref) throw new KongError(404, { message: 'Not found' });
    return { row: ref, target };
  }

  // ------------------------------------------------------------------ writes

  /** POST /<path> and POST /<parent>/{p}/<path>. */
  create(def: EntityDefinition, body: Row, form: boolean, scope?: ParentScope): Promise<WriteResult> {
    return this.write(def, { mode: 'create', body, form, scope });
  }

  /** PATCH /<path>/{x}. */
  update(def: EntityDefinition, segment: string, body: Row, form: boolean, scope?: ParentScope): Promise<WriteResult> {
    return this.write(def, { mode: 'update', segment, body, form, scope });
  }

  /** PUT /<path>/{x}: upsert with full replacement; `{x}` is written into id or the endpoint key. */
  upsert(def: EntityDefinition, segment: string, body: Row, form: boolean, scope?: ParentScope): Promise<WriteResult> {
    return this.write(def, { mode: 'upsert', segment, body, form, scope });
  }

  /** PATCH/PUT /<path>/{x}/<foreign field>: writes the referenced entity. */
  async writeForeign(def: EntityDefinition, segment: string, fk: ForeignKey, mode: 'update' | 'upsert', body: Row, form: boolean) {
    const { row, target } = await this.getForeign(def, segment, fk);
    return this.write(target, { mode, segment: row.id, body, form });
  }

  private async write(
    def: EntityDefinition,
    req: { mode: 'create' | 'update' | 'upsert'; segment?: string; body: Row; form: boolean; scope?: ParentScope },
  ): Promise<WriteResult> {
    const { db } = this.options;
    const segment = req.segment;
    const segmentIsId = segment !== undefined && UUID_RE.test(segment);
    if (req.mode === 'upsert' && segment !== undefined && !segmentIsId && !def.endpointKey) {
      throw new KongError(404, { message: 'Not found' });
    }

    // Look the entity up first (outside the transaction too: PATCH needs it to validate).
    let existing: Row | null = null;
    if (segment !== undefined) {
      existing = await this.findBySegment(def, segment);
      if (existing && !this.belongs(existing, req.scope)) throw new KongError(404, { message: 'Not found' });
      if (!existing && req.mode === 'update') throw new KongError(404, { message: 'Not found' });
    }
    const op: WriteContext['op'] = req.mode === 'create' || !existing ? 'create' : req.mode === 'update' ? 'update' : 'replace';

    let body: Row = toRecord(req.body);
    const givenId = body.id;
    delete body.id;
    delete body.created_at;
    delete body.updated_at;
    const errors: FieldErrors = emptyRecord();
    if (req.mode === 'create' && givenId !== undefined && givenId !== null) {
      if (typeof givenId !== 'string' || !UUID_RE.test(givenId)) errors.id = 'expected a valid UUID';
    }
    if (def.prepare) body = toRecord(def.prepare(body, op === 'create' ? null : existing));

    // Foreign keys travel apart from the fields the schema validates.
    const fkInput = emptyRecord();
    for (const fk of def.foreignKeys) {
      if (Object.hasOwn(body, fk.field)) {
        fkInput[fk.field] = body[fk.field] === '' ? null : body[fk.field];
        delete body[fk.field];
      }
    }
    if (req.scope) fkInput[req.scope.fk.field] = { id: req.scope.parent.id };

    let input: Row;
    if (op === 'update') {
      const current = def.toEntity(existing!);
      const keys = objectKeys(def.schemaFor ? def.schemaFor({ ...current, ...body }, existing) : def.schema);
      const base: Row = emptyRecord();
      for (const [k, v] of Object.entries(current)) {
        if (keys ? keys.includes(k) : !['id', 'created_at', 'updated_at', ...def.foreignKeys.map((f) => f.field)].includes(k)) {
          base[k] = v;
        }
      }
      input = toRecord(base);
      for (const [k, v] of Object.entries(body)) {
        input[k] = def.mergeRecords?.includes(k) ? deepMerge(base[k], v) : v;
      }
    } else {
      input = body;
    }
    if (req.mode === 'upsert' && segment !== undefined && !segmentIsId && def.endpointKey) input[def.endpointKey] = segment;

    findUnrepresentable(input, [], errors);
    for (const [field, v] of Object.entries(fkInput)) findUnrepresentable(v, [field], errors);

    const schema = def.schemaFor ? def.schemaFor(input, existing) : def.schema;
    if (req.form) input = formCoerce(schema, input) as Row;
    // Async: route regexes are checked for super-linear backtracking out of this event loop.
    const parsed = await schema.safeParseAsync(input);
    if (!parsed.success) Object.assign(errors, zodToFieldErrors(parsed.error, input));
    // Kong's `tags` typedef holds for every entity (the ?tags= filter depends on it).
    if (Array.isArray(input.tags) && errors.tags === undefined) {
      const bad = input.tags.map((tag: unknown) => (typeof tag === 'string' && !TAG_RE.test(tag) ? tagError(tag) : null));
      if (bad.some(Boolean)) errors.tags = bad;
    }
    const value: Row = parsed.success ? { ...parsed.data } : {};

    // Shape of each foreign key: {id} or {<endpoint key>} or null.
    const fkWanted: Record<string, { by: 'id' | string; value: string } | null> = {};
    for (const fk of def.foreignKeys) {
      let v: unknown = fkInput[fk.field];
      if (v === undefined) {
        if (op === 'update') {
          const col = existing![fk.column];
          fkWanted[fk.field] = col ? { by: 'id', value: col } : null;
          continue;
        }
        v = null;
      }
      if (v === null) {
        if (fk.required) errors[fk.field] = 'required field missing';
        fkWanted[fk.field] = null;
        continue;
      }
      if (!isPlainObject(v)) {
        errors[fk.field] = 'expected a record';
        continue;
      }
      const target = this.byName.get(fk.entity);
      const keyName = target?.endpointKey;
      const sub: FieldErrors = emptyRecord();
      for (const k of Object.keys(v)) if (k !== 'id' && k !== keyName) sub[k] = 'unknown field';
      if (v.id !== undefined && v.id !== null) {
        if (typeof v.id !== 'string' || !UUID_RE.test(v.id)) sub.id = 'expected a valid UUID';
        else fkWanted[fk.field] = { by: 'id', value: v.id.toLowerCase() };
      } else if (keyName && v[keyName] !== undefined && v[keyName] !== null) {
        if (typeof v[keyName] !== 'string' || v[keyName] === '') sub[keyName] = 'expected a string';
        else fkWanted[fk.field] = { by: keyName, value: v[keyName] as string };
      } else sub.id = 'missing primary key';
      if (Object.keys(sub).length) errors[fk.field] = sub;
    }
    if (Object.keys(errors).length) throw schemaViolation(errors);

    const context: WriteContext = { op, body };
    let before: Row | null = null;
    const result = await db.prisma.$transaction(async (tx: Tx) => {
      // Re-read inside the transaction: the row may have changed since.
      let current: Row | null = null;
      if (segment !== undefined) {
        current = existing ? await this.delegate(tx, def).findUnique({ where: { id: existing.id } }) : null;
        if (!current && existing && req.mode === 'update') throw new KongError(404, { message: 'Not found' });
      }
      before = current;
      for (const fk of def.foreignKeys) {
        const wanted = fkWanted[fk.field];
        if (!wanted) {
          value[fk.field] = null;
          value[fk.column] = null;
          continue;
        }
        const target = this.byName.get(fk.entity);
        if (!target) throw new Error(`entity '${def.name}': foreign entity '${fk.entity}' is not registered`);
        let ref: Row | null;
        if (wanted.by === 'id') {
          ref = await this.delegate(tx, target).findUnique({ where: { id: wanted.value } });
          if (!ref) throw foreignKeyViolation({ id: wanted.value }, fk.field, fk.entity);
        } else {
          ref = await this.delegate(tx, target).findFirst({ where: this.endpointWhere(target, wanted.value) });
          if (!ref) {
            const msg = `the foreign key cannot be resolved with '${luaTable({ [wanted.by]: wanted.value })}' for an existing '${fk.entity}' entity`;
            throw new KongError(400, {
              code: 13,
              name: 'foreign keys unresolved',
              message: `foreign key unresolved (${fk.field}.${wanted.by}: ${msg})`,
              fields: { [fk.field]: { [wanted.by]: msg } },
            });
          }
        }
        value[fk.field] = { id: ref.id };
        value[fk.column] = ref.id;
      }
      const checkErrors = def.check?.(value, current, context);
      if (checkErrors && Object.keys(checkErrors).length) throw schemaViolation(checkErrors);

      const row: Row = { ...(await def.toRow(value, current, context)) };
      const now = nowSeconds();
      const chosenId: string | undefined =
        current?.id ?? (segmentIsId ? segment!.toLowerCase() : undefined) ?? (typeof givenId === 'string' && req.mode === 'create' ? givenId.toLowerCase() : undefined) ?? row.id;
      row.id = chosenId ?? newId();
      row.createdAt = current?.createdAt ?? row.createdAt ?? now;
      if (def.hasUpdatedAt) row.updatedAt = now;
      else delete row.updatedAt;

      // A random UUID generated just now cannot clash: only given ids are looked up.
      if (!current && chosenId !== undefined && (await this.delegate(tx, def).findUnique({ where: { id: row.id }, select: { id: true } }))) {
        throw new KongError(400, {
          code: 3,
          name: 'primary key violation',
          message: `primary key violation on key '${luaTable({ id: row.id })}'`,
          fields: { id: row.id },
        });
      }
      const checks: { where: Row; fields: Row }[] = [];
      for (const f of def.uniqueFields ?? []) {
        const col = camel(f);
        if (row[col] !== undefined && row[col] !== null) {
          checks.push({ where: { [col]: row[col], NOT: { id: row.id } }, fields: { [f]: value[f] ?? row[col] } });
        }
      }
      for (const c of def.uniqueChecks?.(row, value) ?? []) checks.push({ where: { AND: [c.where, { NOT: { id: row.id } }] }, fields: c.fields });
      for (const c of checks) {
        const clash = await this.delegate(tx, def).findFirst({ where: c.where, select: { id: true } });
        if (clash) throw uniqueViolation(c.fields);
      }

      const saved = current
        ? await this.delegate(tx, def).update({ where: { id: current.id }, data: row })
        : await this.delegate(tx, def).create({ data: row });
      if (def.isConfig) await bumpVersion(tx);
      return saved as Row;
    }, TX_OPTIONS);

    await this.committed(def, op === 'create' ? 'create' : 'update', before, result);
    const out = def.toWriteResponse ? def.toWriteResponse(result, value) : def.toEntity(result);
    return { status: req.mode === 'create' ? 201 : 200, body: out };
  }

  /** DELETE /<path>/{x}: 204 even when missing, except under a parent (404). */
  async delete(def: EntityDefinition, segment: string, scope?: ParentScope): Promise<void> {
    const existing = await this.findBySegment(def, segment);
    if (!existing) {
      if (scope) throw new KongError(404, { message: 'Not found' });
      return;
    }
    if (!this.belongs(existing, scope)) throw new KongError(404, { message: 'Not found' });
    const deleted = await this.options.db.prisma.$transaction(async (tx: Tx) => {
      await this.checkRestrictedReferences(tx, def, existing.id);
      const rows = await this.delegate(tx, def).deleteMany({ where: { id: existing.id } });
      if (rows.count > 0 && def.isConfig) await bumpVersion(tx);
      return rows.count > 0;
    }, TX_OPTIONS);
    if (deleted) await this.committed(def, 'delete', existing, null);
  }

  /**
   * Kong refuses to delete a parent still referenced by children whose foreign key is not
   * `on_delete = cascade` (routes → services). Cascading children are deleted by the database.
   */
  private async checkRestrictedReferences(tx: Tx, def: EntityDefinition, id: string) {
    for (const child of this.byName.values()) {
      for (const fk of child.foreignKeys) {
        if (fk.entity !== def.name || fk.onDelete !== 'restrict') continue;
        const ref = await this.delegate(tx, child).findFirst({ where: { [fk.column]: id }, select: { id: true } });
        if (ref) throw referencedBy(child.name, def.name);
      }
    }
  }

  private async committed(def: EntityDefinition, op: 'create' | 'update' | 'delete', before: Row | null, after: Row | null) {
    if (def.isConfig) this.options.onConfigChange?.();
    if (def.afterCommit) {
      try {
        await def.afterCommit(op, before, after);
      } catch (err) {
        this.options.onAfterCommitError?.(err, def);
      }
    }
    for (const hook of this.options.afterEntityCommit ?? []) {
      try {
        await hook(def.name, op, before, after);
      } catch (err) {
        this.options.onAfterCommitError?.(err, def);
      }
    }
  }
}

/**
 * Waiting for a connection (Postgres pool) or for the single embedded connection (PGlite, where
 * interactive transactions queue) can take a while under bursts; Prisma's default is 2 s.
 */
const TX_OPTIONS = { maxWait: 15_000, timeout: 30_000 };

export async function bumpVersion(tx: Tx): Promise<void> {
  await tx.configVersion.upsert({
    where: { id: 1 },
    update: { version: { increment: 1 }, updatedAt: nowSeconds() },
    create: { id: 1, version: 1, updatedAt: nowSeconds() },
  });
}
