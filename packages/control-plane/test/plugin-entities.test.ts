// The plugin-entity path of the engine, with small entities declared here the way a plugin
// declares its own (EntityDefinition): mounting, nested and foreign paths, endpoint keys with
// whereEndpointKey, toRow/toEntity/toWriteResponse, check, uniqueFields, isConfig, afterCommit.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { z } from 'zod';
import { randomAlnum, sha256Hex, type EntityDefinition, type Row } from '@gatehouse/core';
import { openTestApp, type TestApp } from './helpers.ts';

const calls: { entity: string; op: string; before: Row | null; after: Row | null }[] = [];
const PLAIN = Symbol('plain');
const entityCalls: [string, string, string | null, string | null][] = [];

function widgetLike(name: string, path: string, isConfig: boolean): EntityDefinition {
  return {
    name,
    path,
    // Storage borrowed from the oauth2 credentials table (consumer foreign key, unique client_id).
    model: 'oauth2Credential',
    endpointKey: 'key',
    // Keys are stored with a prefix: lookups by key must go through this hook.
    whereEndpointKey: (value) => ({ clientId: `w-${value}` }),
    schema: z.strictObject({
      name: z.string().min(1),
      key: z.string().min(1).nullable().default(null),
      secret: z.string().min(1).nullable().default(null),
      tags: z.array(z.string()).nullable().default(null),
    }) as unknown as z.ZodType<Row>,
    foreignKeys: [{ field: 'consumer', entity: 'consumers', column: 'consumerId', required: true, nested: true }],
    uniqueFields: ['name'],
    hasUpdatedAt: false,
    isConfig,
    check(input) {
      return input.name === 'forbidden' ? { '@entity': ['this name is reserved'] } : null;
    },
    toRow(input, existing) {
      const plain = input.secret ?? (existing ? null : randomAlnum(16));
      input[PLAIN as any] = plain;
      return {
        consumerId: input.consumerId,
        name: input.name,
        clientId: `w-${input.key ?? randomAlnum(8)}`,
        clientSecret: plain ? sha256Hex(plain) : existing!.clientSecret,
        tags: input.tags ?? [],
      };
    },
    toEntity: (r) => ({
      id: r.id,
      created_at: r.createdAt,
      consumer: { id: r.consumerId },
      name: r.name,
      key: String(r.clientId).slice(2),
      secret: null,
      tags: r.tags.length ? r.tags : null,
    }),
    toWriteResponse(row, input) {
      return { ...this.toEntity(row), secret: input[PLAIN as any] ?? null };
    },
    async afterCommit(op, b, a) {
      calls.push({ entity: name, op, before: b, after: a });
    },
  };
}

let t: TestApp;
let api: ReturnType<typeof request>;
let alice: Row;
let bob: Row;
before(async () => {
  t = await openTestApp({
    entities: [widgetLike('widgets', 'widgets', true), widgetLike('gadgets', 'gadgets', false)],
    parts: [
      {
        async afterEntityCommit(entity, op, b, a) {
          entityCalls.push([entity, op, b?.id ?? null, a?.id ?? null]);
        },
      },
    ],
  });
  api = request(t.app);
  alice = (await api.post('/consumers').send({ username: 'alice' }).expect(201)).body;
  bob = (await api.post('/consumers').send({ username: 'bob' }).expect(201)).body;
});
after(async () => {
  await t.close();
});

const version = async () => Number((await t.db.prisma.configVersion.findUnique({ where: { id: 1 } }))!.version);

test('mounted at /<path> and /consumers/{c}/<path>; the foreign key is required', async () => {
  const missing = await api.post('/widgets').send({ name: 'w0' }).expect(400);
  assert.equal(missing.body.message, 'schema violation (consumer: required field missing)');
  const unknown = await api.post('/widgets').send({ name: 'w0', consumer: { id: alice.id }, colour: 'red' }).expect(400);
  assert.deepEqual(unknown.body.fields, { colour: 'unknown field' });

  const v0 = await version();
  const created = await api.post('/consumers/alice/widgets').send({ name: 'w1', key: 'k1', secret: 's3cret' }).expect(201);
  assert.deepEqual(created.body.consumer, { id: alice.id });
  assert.equal(created.body.key, 'k1');
  assert.equal(created.body.secret, 's3cret', 'toWriteResponse shows the plaintext once');
  assert.equal(await version(), v0 + 1, 'a config entity bumps the version');
  const row = await t.db.prisma.oauth2Credential.findUnique({ where: { id: created.body.id } });
  assert.equal(row!.clientSecret, sha256Hex('s3cret'), 'toRow stored the hash');
  assert.equal(row!.clientId, 'w-k1');

  const byKey = await api.get('/widgets/k1').expect(200);
  assert.equal(byKey.body.secret, null, 'reads use toEntity');
  assert.equal(byKey.body.id, created.body.id);
  await api.get(`/widgets/${created.body.id}`).expect(200);
  await api.get('/consumers/alice/widgets/k1').expect(200);
  const top = await api.post('/widgets').send({ name: 'w2', consumer: { username: 'bob' } }).expect(201);
  assert.deepEqual(top.body.consumer, { id: bob.id });
  assert.match(top.body.secret, /^[A-Za-z0-9]{16}$/);
});

test('a child of another parent is 404 on every nested verb', async () => {
  await api.get('/consumers/bob/widgets/k1').expect(404, { message: 'Not found' });
  await api.patch('/consumers/bob/widgets/k1').send({ name: 'x' }).expect(404);
  await api.put('/consumers/bob/widgets/k1').send({ name: 'x' }).expect(404);
  await api.delete('/consumers/bob/widgets/k1').expect(404);
  await api.get('/consumers/nobody/widgets').expect(404);
  const list = await api.get('/consumers/bob/widgets').expect(200);
  assert.equal(list.body.data.length, 1);
  assert.equal(list.body.data[0].name, 'w2');
  await api.get('/widgets/k1').expect(200);
});

test('/<path>/{x}/<foreign field> returns the parent', async () => {
  const res = await api.get('/widgets/k1/consumer').expect(200);
  assert.equal(res.body.username, 'alice');
  await api.get('/widgets/nope/consumer').expect(404);
});

test('PATCH merges, PUT creates by endpoint key and replaces, check and uniqueFields', async () => {
  const patched = await api.patch('/widgets/k1').send({ tags: ['t'] }).expect(200);
  assert.equal(patched.body.name, 'w1');
  assert.deepEqual(patched.body.tags, ['t']);
  assert.equal(patched.body.secret, null, 'no new secret on a PATCH that does not set one');
  const row = await t.db.prisma.oauth2Credential.findUnique({ where: { id: patched.body.id } });
  assert.equal(row!.clientSecret, sha256Hex('s3cret'));

  const put = await api.put('/consumers/alice/widgets/k9').send({ name: 'w9' }).expect(200);
  assert.equal(put.body.key, 'k9');
  assert.deepEqual(put.body.consumer, { id: alice.id });
  const replaced = await api.put('/widgets/k9').send({ name: 'w9b', consumer: { id: bob.id } }).expect(200);
  assert.equal(replaced.body.id, put.body.id);
  assert.deepEqual(replaced.body.consumer, { id: bob.id });

  const reserved = await api.post('/widgets').send({ name: 'forbidden', consumer: { id: alice.id } }).expect(400);
  assert.deepEqual(reserved.body, {
    code: 2,
    name: 'schema violation',
    message: 'schema violation (this name is reserved)',
    fields: { '@entity': ['this name is reserved'] },
  });
  const dup = await api.post('/widgets').send({ name: 'w1', consumer: { id: alice.id } }).expect(409);
  assert.equal(dup.body.message, `UNIQUE violation detected on '{name="w1"}'`);
});

test('a non-config entity does not bump the version; afterCommit sees before and after', async () => {
  const v0 = await version();
  calls.length = 0;
  const g = await api.post('/consumers/alice/gadgets').send({ name: 'g1', key: 'g1' }).expect(201);
  await api.patch('/gadgets/g1').send({ name: 'g1b' }).expect(200);
  await api.delete('/gadgets/g1').expect(204);
  await api.delete('/gadgets/g1').expect(204);
  assert.equal(await version(), v0, 'tokens-like entities are not config');
  assert.deepEqual(
    calls.map((c) => [c.entity, c.op, c.before?.name ?? null, c.after?.name ?? null]),
    [
      ['gadgets', 'create', null, 'g1'],
      ['gadgets', 'update', 'g1', 'g1b'],
      ['gadgets', 'delete', 'g1b', null],
    ],
  );
  assert.equal(calls[0].after!.id, g.body.id);
});

test('deleting the consumer deletes its entities (cascade); parts see every committed write', async () => {
  entityCalls.length = 0;
  await api.delete('/consumers/alice').expect(204);
  await api.post('/consumers').send({}).expect(400);
  await api.delete('/consumers/alice').expect(204);
  assert.deepEqual(entityCalls, [['consumers', 'delete', alice.id, null]], 'one call, for the committed delete only');
  await api.get('/widgets/k1').expect(404);
  await api.get('/widgets/w-2').expect(404);
  const left = await api.get('/widgets').expect(200);
  assert.ok(left.body.data.every((w: Row) => w.consumer.id === bob.id));
});
