// Kong's admin API shapes for services, routes, consumers and plugins, every verb, against the
// real app on a real Postgres (kong.md §a.0–a.5).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { openTestApp, type TestApp } from './helpers.ts';

let t: TestApp;
let api: ReturnType<typeof request>;
before(async () => {
  t = await openTestApp();
  api = request(t.app);
});
after(async () => {
  await t.close();
});

const SERVICE_FIELDS = [
  'ca_certificates', 'client_certificate', 'connect_timeout', 'created_at', 'enabled', 'host', 'id', 'name', 'path', 'port',
  'protocol', 'read_timeout', 'retries', 'tags', 'tls_verify', 'tls_verify_depth', 'updated_at', 'write_timeout',
];
const ROUTE_FIELDS = [
  'created_at', 'destinations', 'headers', 'hosts', 'https_redirect_status_code', 'id', 'methods', 'name', 'path_handling', 'paths',
  'preserve_host', 'protocols', 'regex_priority', 'request_buffering', 'response_buffering', 'service', 'snis', 'sources', 'strip_path',
  'tags', 'updated_at',
];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const now = () => Math.floor(Date.now() / 1000);

async function version(): Promise<number> {
  return Number((await t.db.prisma.configVersion.findUnique({ where: { id: 1 } }))!.version);
}

describe('services', () => {
  test('POST with url shorthand returns 201 and every field, nulls when unset', async () => {
    const v0 = await version();
    const res = await api.post('/services').send({ name: 'example-service', url: 'http://mockbin.org/request' }).expect(201);
    assert.deepEqual(Object.keys(res.body).sort(), SERVICE_FIELDS);
    assert.match(res.body.id, UUID);
    assert.equal(res.body.protocol, 'http');
    assert.equal(res.body.host, 'mockbin.org');
    assert.equal(res.body.port, 80);
    assert.equal(res.body.path, '/request');
    assert.equal(res.body.retries, 5);
    assert.equal(res.body.connect_timeout, 60000);
    assert.equal(res.body.tags, null);
    assert.equal(res.body.ca_certificates, null);
    assert.equal(res.body.client_certificate, null);
    assert.equal(res.body.enabled, true);
    assert.ok(Math.abs(res.body.created_at - now()) <= 2, 'created_at in seconds');
    assert.equal(res.body.created_at, res.body.updated_at);
    assert.match(res.headers['content-type'], /application\/json/);
    assert.equal(await version(), v0 + 1, 'config version bumped');
  });

  test('url shorthand rules (kong.md a.1)', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['http://service.test/', { protocol: 'http', host: 'service.test', port: 80, path: '/' }],
      ['https://service.test/', { protocol: 'https', host: 'service.test', port: 443, path: '/' }],
      ['http://example.test:443', { protocol: 'http', host: 'example.test', port: 443, path: null }],
      ['example.test:443', { protocol: 'https', host: 'example.test', port: 443, path: null }],
      ['grpc://grpc.test:9000', { protocol: 'grpc', host: 'grpc.test', port: 9000, path: null }],
    ];
    for (const [url, want] of cases) {
      const res = await api.post('/services').send({ url }).expect(201);
      for (const [k, v] of Object.entries(want)) assert.deepEqual(res.body[k], v, `${url} → ${k}`);
      await api.delete(`/services/${res.body.id}`).expect(204);
    }
    const cases400: [unknown, Record<string, unknown>][] = [
      ['', { url: 'length must be at least 1' }],
      [42, { url: 'expected a string' }],
      [' ', { host: 'required field missing' }],
      ['http://', { host: 'required field missing' }],
    ];
    for (const [url, fields] of cases400) {
      const res = await api.post('/services').send({ url }).expect(400);
      assert.equal(res.body.code, 2);
      assert.deepEqual(res.body.fields, fields, `url ${JSON.stringify(url)}`);
    }
  });

  test('GET by id and by name; UUID-looking name is an id; percent-encoded UTF-8 names', async () => {
    const created = (await api.post('/services').send({ name: 'svc-ü', host: 'a.test' }).expect(201)).body;
    const byId = await api.get(`/services/${created.id}`).expect(200);
    const byName = await api.get(`/services/${encodeURIComponent('svc-ü')}`).expect(200);
    assert.deepEqual(byId.body, created);
    assert.deepEqual(byName.body, created);
    await api.get('/services/00000000-0000-4000-8000-000000000000').expect(404, { message: 'Not found' });
    await api.get('/services/nope').expect(404, { message: 'Not found' });
    await api.delete(`/services/${created.id}`).expect(204);
  });

  test('PATCH merges; PATCH with url overwrites protocol, host, port and path', async () => {
    const s = (await api.post('/services').send({ name: 'patchme', url: 'https://a.test:8443/x', retries: 3, tags: ['t1'] }).expect(201)).body;
    const p1 = await api.patch('/services/patchme').send({ retries: 7 }).expect(200);
    assert.equal(p1.body.retries, 7);
    assert.equal(p1.body.host, 'a.test');
    assert.deepEqual(p1.body.tags, ['t1']);
    assert.equal(p1.body.id, s.id);
    assert.equal(p1.body.created_at, s.created_at);
    const p2 = await api.patch(`/services/${s.id}`).send({ url: 'http://b.test' }).expect(200);
    assert.equal(p2.body.protocol, 'http');
    assert.equal(p2.body.host, 'b.test');
    assert.equal(p2.body.port, 80);
    assert.equal(p2.body.path, null);
    assert.equal(p2.body.retries, 7);
    await api.patch('/services/does-not-exist').send({ retries: 1 }).expect(404, { message: 'Not found' });
    const bad = await api.patch('/services/patchme').send({ port: 70000 }).expect(400);
    assert.deepEqual(bad.body, {
      code: 2,
      name: 'schema violation',
      message: 'schema violation (port: value should be between 0 and 65535)',
      fields: { port: 'value should be between 0 and 65535' },
    });
    await api.delete('/services/patchme').expect(204);
  });

  test('PUT upserts with full replacement, by name and by id', async () => {
    const created = await api.put('/services/put-svc').send({ host: 'one.test', retries: 1 }).expect(200);
    assert.equal(created.body.name, 'put-svc');
    assert.equal(created.body.retries, 1);
    const replaced = await api.put('/services/put-svc').send({ host: 'two.test' }).expect(200);
    assert.equal(replaced.body.id, created.body.id, 'same entity');
    assert.equal(replaced.body.host, 'two.test');
    assert.equal(replaced.body.retries, 5, 'omitted fields go back to defaults');
    const id = '11111111-2222-4333-8444-555555555555';
    const byId = await api.put(`/services/${id}`).send({ host: 'three.test', name: 'by-id' }).expect(200);
    assert.equal(byId.body.id, id);
    const again = await api.put(`/services/${id}`).send({ host: 'four.test' }).expect(200);
    assert.equal(again.body.name, null, 'name reset to null');
    await api.delete(`/services/${id}`).expect(204);
    await api.delete('/services/put-svc').expect(204);
  });

  test('DELETE is 204 even when missing', async () => {
    await api.delete('/services/never-existed').expect(204);
    await api.delete('/services/00000000-0000-4000-8000-000000000001').expect(204);
  });

  test('schema violations: required, unknown, enum, type, several at once', async () => {
    const r1 = await api.post('/services').send({}).expect(400);
    assert.deepEqual(r1.body, {
      code: 2,
      name: 'schema violation',
      message: 'schema violation (host: required field missing)',
      fields: { host: 'required field missing' },
    });
    const r2 = await api.post('/services').send({ host: 'x.test', foo: 1, protocol: 'ftp', retries: 'x' }).expect(400);
    assert.deepEqual(r2.body.fields, {
      foo: 'unknown field',
      protocol: 'expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp',
      retries: 'expected an integer',
    });
    assert.equal(r2.body.message, '3 schema violations (foo: unknown field; protocol: expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp; retries: expected an integer)');
    const r3 = await api.post('/services').send({ host: 'x.test', protocol: 'tcp', path: '/x' }).expect(400);
    assert.deepEqual(r3.body, {
      code: 2,
      name: 'schema violation',
      message: "2 schema violations (failed conditional validation given value of field 'protocol'; path: value must be null)",
      fields: { '@entity': ["failed conditional validation given value of field 'protocol'"], path: 'value must be null' },
    });
    const r4 = await api.post('/services').send({ host: 'x.test', name: 'bad name!' }).expect(400);
    assert.deepEqual(r4.body.fields, {
      name: "invalid value 'bad name!': the only accepted ascii characters are alphanumerics or ., -, _, and ~",
    });
    await api.post('/services').send({ host: 'x.test', name: 'naïve✓' }).expect(201);
    await api.delete(`/services/${encodeURIComponent('naïve✓')}`).expect(204);
    const r6 = await api.post('/services').send({ host: 'x.test', path: '/a b' }).expect(400);
    assert.deepEqual(r6.body.fields, { path: "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)" });
    const r7 = await api.post('/services').send({ host: 'x.test', path: '/a%zz' }).expect(400);
    assert.deepEqual(r7.body.fields, { path: "invalid url-encoded value: '%zz'" });
    const r8 = await api.post('/services').send({ host: 'x.test', tags: 'a' }).expect(400);
    assert.deepEqual(r8.body.fields, { tags: 'expected a set' });
    const r9 = await api.post('/services').send({ host: 'x.test', tags: ['ok', 'a,b'] }).expect(400);
    assert.deepEqual(r9.body.fields, { tags: [null, "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"] });
    const r5 = await api.post('/services').send({ host: 'x.test', path: 'nope' }).expect(400);
    assert.deepEqual(r5.body.fields, { path: 'should start with: /' });
  });

  test('409 on a duplicate name with the Lua-table message', async () => {
    await api.post('/services').send({ name: 'dup', host: 'a.test' }).expect(201);
    const res = await api.post('/services').send({ name: 'dup', host: 'b.test' }).expect(409);
    assert.deepEqual(res.body, {
      code: 5,
      name: 'unique constraint violation',
      message: `UNIQUE violation detected on '{name="dup"}'`,
      fields: { name: 'dup' },
    });
    await api.delete('/services/dup').expect(204);
  });

  test('POST with a given id; the same id twice is a primary key violation', async () => {
    const id = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
    await api.post('/services').send({ id, host: 'x.test' }).expect(201);
    const res = await api.post('/services').send({ id, host: 'x.test' }).expect(400);
    assert.equal(res.body.code, 3);
    assert.equal(res.body.name, 'primary key violation');
    await api.delete(`/services/${id}`).expect(204);
  });

  test('form bodies with Kong notations; multipart too', async () => {
    const res = await api
      .post('/services')
      .type('form')
      .send('name=form-svc&host=f.test&port=8080&retries=2&tags[]=a&tags[]=b&enabled=false')
      .expect(201);
    assert.equal(res.body.port, 8080);
    assert.equal(res.body.retries, 2);
    assert.deepEqual(res.body.tags, ['a', 'b']);
    assert.equal(res.body.enabled, false);
    const repeated = await api.patch('/services/form-svc').type('form').send('tags=x&tags=y').expect(200);
    assert.deepEqual(repeated.body.tags, ['x', 'y']);
    const single = await api.patch('/services/form-svc').type('form').send('tags=only').expect(200);
    assert.deepEqual(single.body.tags, ['only']);
    const multi = await api.post('/services').field('name', 'multi-svc').field('url', 'http://m.test:81/p').expect(201);
    assert.equal(multi.body.port, 81);
    assert.equal(multi.body.path, '/p');
    await api.delete('/services/form-svc').expect(204);
    await api.delete('/services/multi-svc').expect(204);
  });
});

describe('routes', () => {
  let svc: any;
  before(async () => {
    svc = (await api.post('/services').send({ name: 'route-svc', url: 'http://upstream.test' }).expect(201)).body;
  });

  test('POST /services/{name}/routes fills the service; every field with defaults', async () => {
    const res = await api.post('/services/route-svc/routes').send({ name: 'r1', paths: ['/stepon'] }).expect(201);
    assert.deepEqual(Object.keys(res.body).sort(), ROUTE_FIELDS);
    assert.deepEqual(res.body.protocols, ['http', 'https']);
    assert.deepEqual(res.body.paths, ['/stepon']);
    assert.equal(res.body.methods, null);
    assert.equal(res.body.hosts, null);
    assert.equal(res.body.headers, null);
    assert.equal(res.body.https_redirect_status_code, 426);
    assert.equal(res.body.regex_priority, 0);
    assert.equal(res.body.strip_path, true);
    assert.equal(res.body.preserve_host, false);
    assert.equal(res.body.request_buffering, true);
    assert.equal(res.body.path_handling, 'v0');
    assert.deepEqual(res.body.service, { id: svc.id });
  });

  test('POST /routes with service by id, by name, form service.id=', async () => {
    const a = await api.post('/routes').send({ hosts: ['a.test'], service: { id: svc.id } }).expect(201);
    assert.deepEqual(a.body.service, { id: svc.id });
    const b = await api.post('/routes').send({ methods: ['GET'], service: { name: 'route-svc' } }).expect(201);
    assert.deepEqual(b.body.service, { id: svc.id });
    const c = await api.post('/routes').type('form').send(`paths=/form&service.id=${svc.id}&strip_path=false&headers.x-v=1`).expect(201);
    assert.deepEqual(c.body.paths, ['/form']);
    assert.equal(c.body.strip_path, false);
    assert.deepEqual(c.body.headers, { 'x-v': ['1'] });
    for (const r of [a, b, c]) await api.delete(`/routes/${r.body.id}`).expect(204);
  });

  test('entity check: {} needs one of methods, hosts, headers, paths, snis', async () => {
    const res = await api.post('/routes').send({}).expect(400);
    assert.deepEqual(res.body, {
      code: 2,
      name: 'schema violation',
      message: "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')",
      fields: { '@entity': ["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"] },
    });
    const http = await api.post('/routes').send({ protocols: ['http'] }).expect(400);
    assert.deepEqual(http.body.fields['@entity'], ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]);
  });

  test('field checks: paths, methods, array elements aligned by index, headers host, redirect code', async () => {
    const r = await api.post('/routes').send({ paths: ['/ok', 'bad', '/a//b'], methods: ['GET', 'get'] }).expect(400);
    assert.deepEqual(r.body.fields, {
      paths: [null, 'should start with: / (fixed path) or ~/ (regex path)', 'must not have empty segments'],
      methods: [null, 'invalid value: get'],
    });
    // Requests are matched normalised, so a path must be written so (Kong's message).
    const n = await api.post('/routes').send({ paths: ['/%7Euser', '/a/./b/../c', '/caf%c3%a9', '/x%2fy', '/fine/%C3%A9'] }).expect(400);
    assert.deepEqual(n.body.fields, {
      paths: [
        "non-normalized path, consider use '/~user' instead",
        "non-normalized path, consider use '/a/c' instead",
        "non-normalized path, consider use '/caf%C3%A9' instead",
        "non-normalized path, consider use '/x%2Fy' instead",
      ],
    });
    const fine = await api.post('/routes').send({ paths: ['/fine/%C3%A9/x%2Fy'] }).expect(201);
    await api.delete(`/routes/${fine.body.id}`).expect(204);
    const h = await api.post('/routes').send({ headers: { Host: ['x'] } }).expect(400);
    assert.deepEqual(h.body.fields, { headers: "cannot contain 'host' header, which must be specified in the 'hosts' attribute" });
    const w = await api.post('/routes').send({ hosts: ['*.a.*', 'a.*.b', '*.ok.test', 'ok.*'] }).expect(400);
    assert.deepEqual(w.body.fields, {
      hosts: ['invalid wildcard: must have at most one wildcard', 'invalid wildcard: must be placed at leftmost or rightmost label'],
    });
    const rx = await api.post('/routes').send({ paths: ['~/(['] }).expect(400);
    assert.match(rx.body.fields.paths[0], /^invalid regex: '\/\(\['/);
    const src = await api.post('/routes').send({ protocols: ['tcp'], sources: [{ ip: 'nope' }, {}] }).expect(400);
    assert.deepEqual(src.body.fields, {
      sources: [{ ip: "invalid ip or cidr range: 'nope'" }, "at least one of these fields must be non-empty: 'ip', 'port'"],
    });
    const tcp = await api.post('/routes').send({ protocols: ['tcp'], sources: [{ ip: '10.0.0.0/8' }], destinations: [{ port: 9000 }] }).expect(201);
    await api.delete(`/routes/${tcp.body.id}`).expect(204);
    const c = await api.post('/routes').send({ paths: ['/x'], https_redirect_status_code: 200 }).expect(400);
    assert.deepEqual(c.body.fields, { https_redirect_status_code: 'expected one of: 426, 301, 302, 307, 308' });
    const p = await api.post('/routes').send({ paths: ['/x'], protocols: ['http', 'tcp'] }).expect(400);
    assert.ok(p.body.fields.protocols);
    const s = await api.post('/routes').send({ paths: ['/x'], protocols: ['http'], snis: ['a.test'] }).expect(400);
    assert.ok(s.body.fields.snis);
  });

  test('foreign keys: unresolved name is code 13, missing id is code 4, no primary key', async () => {
    const r13 = await api.post('/routes').send({ paths: ['/x'], service: { name: 'non-existing' } }).expect(400);
    assert.deepEqual(r13.body, {
      code: 13,
      name: 'foreign keys unresolved',
      message:
        "foreign key unresolved (service.name: the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity)",
      fields: { service: { name: "the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity" } },
    });
    const missing = '99999999-9999-4999-8999-999999999999';
    const r4 = await api.post('/routes').send({ paths: ['/x'], service: { id: missing } }).expect(400);
    assert.equal(r4.body.code, 4);
    assert.equal(r4.body.message, `the foreign key '{id="${missing}"}' does not reference an existing 'services' entity.`);
    const pk = await api.post('/routes').send({ paths: ['/x'], service: {} }).expect(400);
    assert.equal(pk.body.message, 'schema violation (service.id: missing primary key)');
  });

  test('nested item forms check the parent; /routes/{r}/service', async () => {
    const other = (await api.post('/services').send({ name: 'other-svc', host: 'o.test' }).expect(201)).body;
    const route = (await api.post('/services/route-svc/routes').send({ name: 'nested-r', hosts: ['n.test'] }).expect(201)).body;
    await api.get(`/services/route-svc/routes/nested-r`).expect(200);
    await api.get(`/services/other-svc/routes/nested-r`).expect(404, { message: 'Not found' });
    await api.patch(`/services/other-svc/routes/${route.id}`).send({ hosts: ['z.test'] }).expect(404);
    await api.delete(`/services/other-svc/routes/nested-r`).expect(404);
    await api.delete(`/services/route-svc/routes/missing-route`).expect(404);
    const patched = await api.patch(`/services/route-svc/routes/nested-r`).send({ hosts: ['m.test'] }).expect(200);
    assert.deepEqual(patched.body.hosts, ['m.test']);
    const service = await api.get('/routes/nested-r/service').expect(200);
    assert.deepEqual(service.body, (await api.get('/services/route-svc')).body);
    const viaRoute = await api.patch('/routes/nested-r/service').send({ retries: 9 }).expect(200);
    assert.equal(viaRoute.body.retries, 9);
    assert.equal(viaRoute.body.id, svc.id);
    await api.delete('/routes/nested-r/service').expect(405, { message: 'Method not allowed' });
    const list = await api.get('/services/other-svc/routes').expect(200);
    assert.deepEqual(list.body, { data: [], next: null });
    await api.delete(`/services/route-svc/routes/nested-r`).expect(204);
    await api.delete(`/services/${other.id}`).expect(204);
  });

  test('deleting a service that still has routes is 400 code 4', async () => {
    const res = await api.delete('/services/route-svc').expect(400);
    assert.deepEqual(res.body, {
      code: 4,
      name: 'foreign key violation',
      message: "an existing 'routes' entity references this 'services' entity",
      fields: { '@referenced_by': 'routes' },
    });
    await api.get('/services/route-svc').expect(200);
  });

  test('PUT /routes/{name} replaces and keeps the id', async () => {
    const a = await api.put('/routes/put-route').send({ paths: ['/a'], regex_priority: 4 }).expect(200);
    const b = await api.put('/routes/put-route').send({ paths: ['/b'] }).expect(200);
    assert.equal(a.body.id, b.body.id);
    assert.equal(b.body.regex_priority, 0);
    assert.equal(b.body.service, null);
    await api.delete('/routes/put-route').expect(204);
  });
});

describe('consumers', () => {
  test('POST, GET, ?custom_id=, PUT {} keeps id and username and resets custom_id', async () => {
    const c = await api.post('/consumers').send({ username: 'bob', custom_id: 'c-1', tags: ['x'] }).expect(201);
    assert.deepEqual(Object.keys(c.body).sort(), ['created_at', 'custom_id', 'id', 'tags', 'updated_at', 'username']);
    const byCustom = await api.get('/consumers?custom_id=c-1').expect(200);
    assert.deepEqual(byCustom.body, { data: [c.body], next: null });
    assert.deepEqual((await api.get('/consumers?custom_id=zzz').expect(200)).body, { data: [], next: null });
    await api.get('/consumers?custom_id=').expect(400, { message: 'custom_id must be an unempty string' });
    const put = await api.put('/consumers/bob').send({}).expect(200);
    assert.equal(put.body.id, c.body.id);
    assert.equal(put.body.username, 'bob');
    assert.equal(put.body.custom_id, null);
    assert.equal(put.body.tags, null);
    const patched = await api.patch(`/consumers/${c.body.id}`).send({ custom_id: 'c-2' }).expect(200);
    assert.equal(patched.body.username, 'bob');
    assert.equal(patched.body.custom_id, 'c-2');
    const list = await api.get('/consumers').expect(200);
    assert.deepEqual(list.body.data.find((x: any) => x.id === c.body.id), patched.body);
    const tmp = await api.post('/consumers').type('form').send('username=temp&tags[]=z').expect(201);
    await api.delete('/consumers/temp').expect(204);
    await api.get(`/consumers/${tmp.body.id}`).expect(404, { message: 'Not found' });
  });

  test('at least one of username or custom_id; duplicates are 409', async () => {
    const r = await api.post('/consumers').send({}).expect(400);
    assert.deepEqual(r.body.fields, { '@entity': ["at least one of these fields must be non-empty: 'custom_id', 'username'"] });
    assert.equal(r.body.message, "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')");
    const d = await api.post('/consumers').send({ username: 'bob' }).expect(409);
    assert.equal(d.body.message, `UNIQUE violation detected on '{username="bob"}'`);
    await api.post('/consumers').send({ custom_id: 'cid-9' }).expect(201);
    const dc = await api.post('/consumers').send({ custom_id: 'cid-9' }).expect(409);
    assert.deepEqual(dc.body.fields, { custom_id: 'cid-9' });
  });
});

describe('pagination and tags', () => {
  before(async () => {
    for (let i = 0; i < 7; i++) {
      const tags = i % 2 === 0 ? ['page', 'even'] : ['page', 'odd'];
      await api.post('/consumers').send({ username: `page-${i}`, tags }).expect(201);
    }
  });

  test('size/offset walk every entity once, next carries size, last page has no offset', async () => {
    const seen: string[] = [];
    let res = await api.get('/consumers?size=3&tags=page').expect(200);
    assert.equal(res.body.data.length, 3);
    assert.ok(res.body.offset);
    assert.equal(res.body.next, `/consumers?offset=${encodeURIComponent(res.body.offset)}&size=3&tags=page`);
    seen.push(...res.body.data.map((c: any) => c.username));
    while (res.body.next) {
      res = await api.get(res.body.next).expect(200);
      seen.push(...res.body.data.map((c: any) => c.username));
    }
    assert.equal(res.body.next, null);
    assert.equal('offset' in res.body, false);
    assert.deepEqual(seen.sort(), ['page-0', 'page-1', 'page-2', 'page-3', 'page-4', 'page-5', 'page-6']);
  });

  test('nested collections page too; their next has no size', async () => {
    const svc = (await api.post('/services').send({ name: 'paged-svc', host: 'p.test' }).expect(201)).body;
    for (let i = 0; i < 3; i++) await api.post('/services/paged-svc/routes').send({ paths: [`/p${i}`] }).expect(201);
    const first = await api.get('/services/paged-svc/routes?size=2').expect(200);
    assert.equal(first.body.data.length, 2);
    assert.equal(first.body.next, `/services/${svc.id}/routes?offset=${encodeURIComponent(first.body.offset)}`);
    const second = await api.get(`${first.body.next}&size=2`).expect(200);
    assert.equal(second.body.data.length, 1);
    assert.equal(second.body.next, null);
    for (const r of [...first.body.data, ...second.body.data]) await api.delete(`/routes/${r.id}`).expect(204);
    await api.delete('/services/paged-svc').expect(204);
  });

  test('tags a,b is AND, a/b is OR', async () => {
    const and = await api.get('/consumers?tags=page,even').expect(200);
    assert.equal(and.body.data.length, 4);
    const or = await api.get('/consumers?tags=even/odd').expect(200);
    assert.equal(or.body.data.length, 7);
    const none = await api.get('/consumers?tags=even,odd').expect(200);
    assert.deepEqual(none.body, { data: [], next: null });
    const empty = await api.get('/consumers?tags=').expect(400);
    assert.deepEqual(empty.body, { code: 11, name: 'invalid options', message: 'invalid option (tags: cannot be null)', options: { tags: 'cannot be null' } });
  });

  test('bad size and bad offset', async () => {
    await api.get('/consumers?size=abc').expect(400, { code: 9, name: 'invalid size', message: 'size must be a number' });
    const big = await api.get('/consumers?size=1001').expect(400);
    assert.equal(big.body.code, 9);
    await api.get('/consumers?offset=x').expect(400, { code: 7, name: 'invalid offset', message: "'x' is not a valid offset: bad base64 encoding" });
  });

  test('empty collection is exactly {"data":[],"next":null}', async () => {
    const res = await api.get('/plugins?tags=nothing-here').expect(200);
    assert.equal(res.text, '{"data":[],"next":null}');
  });
});

describe('plugins', () => {
  let svc: any;
  let route: any;
  let consumer: any;
  before(async () => {
    svc = (await api.post('/services').send({ name: 'plugin-svc', host: 'p.test' }).expect(201)).body;
    route = (await api.post('/routes').send({ name: 'plugin-route', paths: ['/p'], service: { id: svc.id } }).expect(201)).body;
    consumer = (await api.post('/consumers').send({ username: 'plugin-consumer' }).expect(201)).body;
  });

  test('POST /services/{s}/plugins: defaults filled, provision_key generated, every field present', async () => {
    const res = await api
      .post('/services/plugin-svc/plugins')
      .send({ name: 'oauth2', config: { scopes: ['email'], enable_authorization_code: true } })
      .expect(201);
    assert.deepEqual(Object.keys(res.body).sort(), [
      'config', 'consumer', 'created_at', 'enabled', 'id', 'instance_name', 'name', 'protocols', 'route', 'service', 'tags', 'updated_at',
    ]);
    assert.deepEqual(res.body.service, { id: svc.id });
    assert.equal(res.body.route, null);
    assert.equal(res.body.consumer, null);
    assert.deepEqual(res.body.protocols, ['grpc', 'grpcs', 'http', 'https']);
    assert.equal(res.body.config.token_expiration, 7200);
    assert.equal(res.body.config.pkce, 'lax');
    assert.match(res.body.config.provision_key, /^[A-Za-z0-9]{32}$/);
    // PATCH merges config and keeps the provision key.
    const patched = await api.patch(`/plugins/${res.body.id}`).type('form').send('config.scopes=a&config.scopes=b&config.mandatory_scope=true').expect(200);
    assert.deepEqual(patched.body.config.scopes, ['a', 'b']);
    assert.equal(patched.body.config.mandatory_scope, true);
    assert.equal(patched.body.config.enable_authorization_code, true);
    assert.equal(patched.body.config.provision_key, res.body.config.provision_key);
    // Scoped item forms check the parent.
    await api.get(`/services/plugin-svc/plugins/${res.body.id}`).expect(200);
    await api.get(`/routes/plugin-route/plugins/${res.body.id}`).expect(404);
    const listed = await api.get('/services/plugin-svc/plugins').expect(200);
    assert.equal(listed.body.data.length, 1);
    const viaService = await api.get(`/plugins/${res.body.id}/service`).expect(200);
    assert.equal(viaService.body.id, svc.id);
    await api.get(`/plugins/${res.body.id}/route`).expect(404);
  });

  test('uniqueness per name/route/service/consumer is a 409 with Kong fields', async () => {
    const res = await api.post('/plugins').send({ name: 'oauth2', service: { id: svc.id }, config: { enable_client_credentials: true } }).expect(409);
    assert.deepEqual(res.body, {
      code: 5,
      name: 'unique constraint violation',
      message: `UNIQUE violation detected on '{consumer=null,name="oauth2",route=null,service={id="${svc.id}"}}'`,
      fields: { consumer: null, name: 'oauth2', route: null, service: { id: svc.id } },
    });
    // Same plugin on the route is another key.
    await api.post(`/routes/${route.id}/plugins`).send({ name: 'oauth2', config: { enable_client_credentials: true } }).expect(201);
  });

  test('config errors nest under config; flows rule is fields.config; unknown plugin; consumer scope', async () => {
    const r1 = await api.post('/plugins').send({ name: 'oauth2', config: { scopes: 'x', foo: 1, enable_password_grant: true } }).expect(400);
    assert.deepEqual(r1.body.fields, { config: { scopes: 'expected an array', foo: 'unknown field' } });
    const r2 = await api.post('/plugins').send({ name: 'oauth2' }).expect(400);
    assert.equal(
      r2.body.fields.config,
      'at least one of these fields must be true: enable_authorization_code, enable_implicit_grant, enable_client_credentials, enable_password_grant',
    );
    const r3 = await api.post('/plugins').send({ name: 'oauth2', config: { mandatory_scope: true, enable_password_grant: true } }).expect(400);
    assert.deepEqual(r3.body.fields, { config: { scopes: 'required field missing' } });
    const r4 = await api.post('/plugins').send({ name: 'nope' }).expect(400);
    assert.deepEqual(r4.body.fields, { name: "plugin 'nope' not enabled; add it to the 'plugins' configuration property" });
    const r5 = await api.post('/plugins').send({}).expect(400);
    assert.deepEqual(r5.body.fields, { name: 'required field missing' });
    const r6 = await api.post(`/consumers/${consumer.id}/plugins`).send({ name: 'oauth2', config: { enable_password_grant: true } }).expect(400);
    assert.deepEqual(r6.body.fields, { consumer: 'value must be null' });
    const r7 = await api.post('/plugins').send({ name: 'oauth2', protocols: ['tcp'], config: { enable_password_grant: true } }).expect(400);
    assert.deepEqual(r7.body.fields, { protocols: [ 'expected one of: grpc, grpcs, http, https' ] });
    const r8 = await api.post('/plugins').send({ name: 'oauth2', config: { persistent_refresh_token: true, enable_password_grant: true } }).expect(400);
    assert.equal(r8.body.message, 'schema violation (config.persistent_refresh_token: unknown field)');
  });

  test('instance_name is the endpoint key; PUT by instance name', async () => {
    const p = await api.put('/plugins/global-oauth').send({ name: 'oauth2', config: { enable_implicit_grant: true } }).expect(200);
    assert.equal(p.body.instance_name, 'global-oauth');
    await api.get('/plugins/global-oauth').expect(200);
    const again = await api.put('/plugins/global-oauth').send({ name: 'oauth2', config: { enable_implicit_grant: true } }).expect(200);
    assert.equal(again.body.id, p.body.id);
    assert.notEqual(again.body.config.provision_key, undefined);
    await api.delete('/plugins/global-oauth').expect(204);
    await api.get('/plugins/global-oauth').expect(404);
  });

  test('/plugins/enabled and /schemas/plugins/{name}', async () => {
    const en = await api.get('/plugins/enabled').expect(200);
    assert.deepEqual(en.body, { enabled_plugins: ['oauth2'] });
    const schema = await api.get('/schemas/plugins/oauth2').expect(200);
    const config = schema.body.fields.find((f: any) => f.config).config;
    assert.equal(config.type, 'record');
    const te = config.fields.find((f: any) => f.token_expiration).token_expiration;
    assert.equal(te.default, 7200);
    const pkce = config.fields.find((f: any) => f.pkce).pkce;
    assert.deepEqual(pkce.one_of, ['none', 'lax', 'strict']);
    await api.get('/schemas/plugins/nope').expect(404);
    const services = await api.get('/schemas/services').expect(200);
    const port = services.body.fields.find((f: any) => f.port).port;
    assert.equal(port.default, 80);
    assert.deepEqual(port.between, [0, 65535]);
    assert.equal(services.body.endpoint_key, 'name');
    const routes = await api.get('/schemas/routes').expect(200);
    assert.deepEqual(routes.body.fields.find((f: any) => f.service).service, { type: 'foreign', reference: 'services', required: false, on_delete: 'restrict' });
    await api.get('/schemas/nope').expect(404);
  });

  test('deleting a service cascades its plugins; deleting a consumer deletes its credentials', async () => {
    const s = (await api.post('/services').send({ name: 'cascade-svc', host: 'c.test' }).expect(201)).body;
    const p = (await api.post('/services/cascade-svc/plugins').send({ name: 'oauth2', config: { enable_password_grant: true } }).expect(201)).body;
    await api.delete(`/services/${s.id}`).expect(204);
    await api.get(`/plugins/${p.id}`).expect(404);
    const c = (await api.post('/consumers').send({ username: 'cred-owner' }).expect(201)).body;
    await t.db.prisma.oauth2Credential.create({
      data: { id: crypto.randomUUID(), consumerId: c.id, name: 'app', clientId: 'cid-cascade', clientSecret: 'x', createdAt: now() },
    });
    await api.delete('/consumers/cred-owner').expect(204);
    assert.equal(await t.db.prisma.oauth2Credential.count({ where: { clientId: 'cid-cascade' } }), 0);
  });
});

describe('protocol-level errors', () => {
  test('404, 405, 415, bad JSON', async () => {
    await api.get('/nothing').expect(404, { message: 'Not found' });
    await api.get('/services/x/y/z/w/v').expect(404, { message: 'Not found' });
    await api.delete('/routes').expect(405, { message: 'Method not allowed' });
    await api.post('/services/abc').send({}).expect(405, { message: 'Method not allowed' });
    await api.put('/consumers').send({}).expect(405);
    await api.post('/').send({}).expect(405);
    const unsupported = await api.post('/services').set('Content-Type', 'text/plain').send('host=x').expect(415);
    assert.deepEqual(unsupported.body, { message: 'Unsupported Media Type' });
    await api.patch('/services/x').set('Content-Type', 'text/plain').send('').expect(415);
    await api.post('/consumers').send(Buffer.alloc(0)).expect(400);
    const huge = await api.post('/services').set('Content-Type', 'application/json').send(JSON.stringify({ host: 'x'.repeat(1_100_000) })).expect(413);
    assert.deepEqual(huge.body, { message: 'Request size limit exceeded' });
    const noType = await api.post('/services').set('Content-Type', '').send(Buffer.from('{"host":"x"}')).expect(415);
    assert.ok(noType.body.message);
    await api.post('/services').set('Content-Type', 'application/json').send('{"host": "x"').expect(400, { message: 'Cannot parse JSON body' });
  });

  test('HEAD is GET without a body; OPTIONS lists the methods', async () => {
    const head = await api.head('/services').expect(200);
    assert.equal(head.text, undefined);
    const collection = await api.options('/services').expect(204);
    assert.equal(collection.headers.allow, 'GET, HEAD, POST, OPTIONS');
    const item = await api.options('/services/x').expect(204);
    assert.equal(item.headers.allow, 'GET, HEAD, PUT, PATCH, DELETE, OPTIONS');
  });

  test('X-Request-Id is honoured or generated', async () => {
    const given = await api.get('/services').set('X-Request-Id', 'abc-123').expect(200);
    assert.equal(given.headers['x-request-id'], 'abc-123');
    const generated = await api.get('/services').expect(200);
    assert.match(generated.headers['x-request-id'], UUID);
  });
});
