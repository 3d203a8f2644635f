// Body keys named after Object.prototype members are unknown fields like any other: a 400
// schema violation naming them, on every entity, from JSON, form and multipart bodies, and
// nothing stored.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { dumpDatabase, openTestApp, type TestApp } from './helpers.ts';

let t: TestApp;
let api: ReturnType<typeof request>;
let serviceId: string;

before(async () => {
  t = await openTestApp({ pluginParts: true });
  api = request(t.app);
  serviceId = (await api.post('/services').send({ name: 'pk-svc', url: 'http://pk.test' }).expect(201)).body.id;
  await api.post('/services/pk-svc/routes').send({ name: 'pk-route', paths: ['/pk'] }).expect(201);
  await api.post('/consumers').send({ username: 'pk-user' }).expect(201);
  await api.post('/services/pk-svc/plugins').send({ name: 'oauth2', instance_name: 'pk-plugin', config: { enable_client_credentials: true } }).expect(201);
  await api.post('/consumers/pk-user/oauth2').send({ name: 'pk-app', client_id: 'pk-client' }).expect(201);
});
after(async () => {
  await t.close();
});

const KEYS = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty'];

/** A JSON body with `key` first: an object literal cannot carry an own `__proto__` key. */
function jsonWith(path: string[], valid: Record<string, unknown> = {}): string {
  let inner = '1';
  for (const segment of [...path].reverse()) inner = `{${JSON.stringify(segment)}:${inner}}`;
  const rest = JSON.stringify(valid).slice(1, -1);
  return `${inner.slice(0, -1)}${rest ? `,${rest}` : ''}}`;
}

/** The value at `path` in the error fields, read as own properties only. */
function ownAt(fields: unknown, path: string[]): unknown {
  let node: unknown = fields;
  for (const key of path) {
    if (!node || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = Object.getOwnPropertyDescriptor(node, key)!.value;
  }
  return node;
}

function assertUnknownField(res: request.Response, path: string[], what: string) {
  const body = JSON.parse(res.text);
  assert.equal(res.status, 400, `${what}: ${res.status} ${res.text.slice(0, 300)}`);
  assert.equal(body.code, 2, what);
  assert.equal(body.name, 'schema violation', what);
  assert.equal(body.message, `schema violation (${path.join('.')}: unknown field)`, what);
  assert.equal(ownAt(body.fields, path), 'unknown field', `${what}: ${res.text.slice(0, 300)}`);
}

const JSON_CASES: { method: 'post' | 'patch' | 'put'; url: string; at: string[]; valid?: Record<string, unknown> }[] = [
  { method: 'post', url: '/services', at: [], valid: { name: 'pk-new', host: 'new.test' } },
  { method: 'patch', url: '/services/pk-svc', at: [] },
  { method: 'put', url: '/services/pk-svc', at: [], valid: { host: 'pk.test' } },
  { method: 'post', url: '/services/pk-svc/routes', at: [], valid: { paths: ['/new'] } },
  { method: 'patch', url: '/routes/pk-route', at: [] },
  { method: 'post', url: '/consumers', at: [], valid: { username: 'pk-new' } },
  { method: 'patch', url: '/consumers/pk-user', at: [] },
  { method: 'post', url: '/routes/pk-route/plugins', at: [], valid: { name: 'oauth2', config: { enable_client_credentials: true } } },
  { method: 'patch', url: '/plugins/pk-plugin', at: [] },
  { method: 'patch', url: '/plugins/pk-plugin', at: ['config'] },
  { method: 'post', url: '/routes/pk-route/plugins', at: ['config'], valid: { name: 'oauth2' } },
  { method: 'post', url: '/consumers/pk-user/oauth2', at: [], valid: { name: 'pk-new' } },
  { method: 'patch', url: '/consumers/pk-user/oauth2/pk-client', at: [] },
  { method: 'patch', url: '/routes/pk-route', at: ['service'] },
];

test('JSON bodies: a prototype-named key is an unknown field on every entity, and nothing is written', async () => {
  const before = await dumpDatabase(t.db);
  for (const key of KEYS) {
    for (const c of JSON_CASES) {
      let raw = jsonWith([...c.at, key], c.valid);
      // A foreign key object keeps its valid id beside the unknown key.
      if (c.at[0] === 'service') raw = `{"service":{${JSON.stringify(key)}:1,"id":"${serviceId}"}}`;
      if (c.at[0] === 'config' && c.method === 'post') raw = `{"name":"oauth2","config":{${JSON.stringify(key)}:1,"enable_client_credentials":true}}`;
      const res = await api[c.method](c.url).set('Content-Type', 'application/json').send(raw);
      assertUnknownField(res, [...c.at, key], `${c.method.toUpperCase()} ${c.url} ${raw}`);
    }
  }
  assert.deepEqual(await dumpDatabase(t.db), before);
});

test('a prototype-named key in a map (route headers) is refused too, not silently dropped', async () => {
  for (const key of KEYS) {
    const res = await api
      .post('/services/pk-svc/routes')
      .set('Content-Type', 'application/json')
      .send(`{"paths":["/h"],"headers":{${JSON.stringify(key)}:["x"]}}`);
    if (key === '__proto__') assertUnknownField(res, ['headers', key], `headers ${key}`);
    else {
      // Any other name is an ordinary header name, kept as given.
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(Object.keys(res.body.headers), [key]);
      await api.delete(`/routes/${res.body.id}`).expect(204);
    }
  }
});

test('form and multipart bodies: dotted, bracketed and map notations', async () => {
  const before = await dumpDatabase(t.db);
  const cases: [string, string, string, string[]][] = [
    ['patch', '/services/pk-svc', 'toString=1', ['toString']],
    ['patch', '/services/pk-svc', 'valueOf[]=1', ['valueOf']],
    ['patch', '/services/pk-svc', 'hasOwnProperty[1]=1', ['hasOwnProperty']],
    ['patch', '/services/pk-svc', '__proto__.x=1', ['__proto__']],
    ['patch', '/services/pk-svc', 'constructor.prototype.x=1', ['constructor']],
    ['post', '/consumers', 'username=pk-form&toString=1', ['toString']],
    ['patch', '/plugins/pk-plugin', 'config.__proto__.x=1', ['config', '__proto__']],
    ['patch', '/plugins/pk-plugin', 'config.toString=1', ['config', 'toString']],
    ['patch', '/plugins/pk-plugin', 'config[constructor]=1', ['config', 'constructor']],
    ['patch', '/plugins/pk-plugin', 'config%5B__proto__%5D%5Bx%5D=1', ['config', '__proto__']],
    ['patch', '/consumers/pk-user/oauth2/pk-client', 'valueOf=1', ['valueOf']],
    ['patch', '/routes/pk-route', `service.id=${serviceId}&service.toString=1`, ['service', 'toString']],
  ];
  for (const [method, url, form, at] of cases) {
    const res = await (api as any)[method](url).type('form').send(form);
    assertUnknownField(res, at, `${method.toUpperCase()} ${url} ${form}`);
  }
  const multipart = await api.patch('/plugins/pk-plugin').field('config.__proto__.x', '1');
  assertUnknownField(multipart, ['config', '__proto__'], 'multipart config.__proto__.x');
  assert.deepEqual(await dumpDatabase(t.db), before);
});

test('ordinary keys still work beside the new notation', async () => {
  const res = await api.patch('/plugins/pk-plugin').type('form').send('config[token_expiration]=60&config.scopes[]=read').expect(200);
  assert.equal(res.body.config.token_expiration, 60);
  assert.deepEqual(res.body.config.scopes, ['read']);
  const route = await api.post('/services/pk-svc/routes').type('form').send('paths[]=/m&headers[x-version][]=2').expect(201);
  assert.deepEqual(route.body.headers, { 'x-version': ['2'] });
});
