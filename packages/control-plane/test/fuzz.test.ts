// Hundreds of malformed requests across every admin endpoint: each must get a 4xx with a JSON
// message (never a 500 or a stack trace), and the stored data must be exactly as before.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { dumpDatabase, openTestApp, type TestApp } from './helpers.ts';

let t: TestApp;
let api: ReturnType<typeof request>;
const ids: Record<string, string> = {};

before(async () => {
  t = await openTestApp({ pluginParts: true });
  api = request(t.app);
  ids.service = (await api.post('/services').send({ name: 'fz-svc', url: 'http://fz.test/p' }).expect(201)).body.id;
  ids.route = (await api.post('/services/fz-svc/routes').send({ name: 'fz-route', paths: ['/fz'] }).expect(201)).body.id;
  ids.consumer = (await api.post('/consumers').send({ username: 'fz-user', custom_id: 'fz-cid' }).expect(201)).body.id;
  ids.plugin = (
    await api.post('/services/fz-svc/plugins').send({ name: 'oauth2', instance_name: 'fz-plugin', config: { enable_authorization_code: true } }).expect(201)
  ).body.id;
  const cred = (await api.post('/consumers/fz-user/oauth2').send({ name: 'fz-app', client_id: 'fz-client' }).expect(201)).body;
  ids.credential = cred.id;
});
after(async () => {
  await t.close();
});

type Case = { method: 'get' | 'post' | 'put' | 'patch' | 'delete'; path: string; body?: unknown; raw?: string; type?: string; note: string };

function deep(levels: number): unknown {
  let v: unknown = 'x';
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}
function deepArray(levels: number): string {
  return '['.repeat(levels) + ']'.repeat(levels);
}

const huge = 'h'.repeat(300_000);
// Names that a plain object inherits: each must be an unknown field like any other.
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty'];
// A computed key makes `__proto__` an own key (a literal `__proto__:` would set the prototype).
const withKey = (key: string, value: unknown, rest: Record<string, unknown> = {}) => ({ [key]: value, ...rest });
const nonexistent = '0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f';

function cases(): Case[] {
  const out: Case[] = [];
  const add = (c: Case) => out.push(c);

  // Bodies that are wrong for every entity, sent to every collection and item endpoint.
  const collections = ['/services', '/routes', '/consumers', '/plugins', '/oauth2', '/oauth2_tokens', '/services/fz-svc/routes',
    '/services/fz-svc/plugins', '/routes/fz-route/plugins', '/consumers/fz-user/plugins', '/consumers/fz-user/oauth2'];
  const items = ['/services/fz-svc', '/routes/fz-route', '/consumers/fz-user', '/plugins/fz-plugin', '/oauth2/fz-client',
    '/services/fz-svc/routes/fz-route', '/services/fz-svc/plugins/fz-plugin', '/consumers/fz-user/oauth2/fz-client'];
  const badBodies: [string, unknown][] = [
    ['unknown field', { zzz_unknown: 1 }],
    ['deeply nested unknown field', { zzz: deep(200) }],
    ['tags not an array', { tags: 'a' }],
    ['tags with a number', { tags: [1] }],
    ['tags with a slash', { tags: ['a/b'] }],
    ['NUL in a string', { tags: ['a\u0000b'] }],
    ['name is an object', { name: { a: 1 }, username: { a: 1 } }],
    ...PROTOTYPE_KEYS.map((key): [string, unknown] => [`key named ${key}`, withKey(key, 1)]),
    ...PROTOTYPE_KEYS.map((key): [string, unknown] => [`object under ${key}`, withKey(key, { x: 1 })]),
  ];
  for (const path of collections) {
    for (const [note, body] of badBodies) add({ method: 'post', path, body, note: `POST ${note}` });
    add({ method: 'post', path, raw: '{"name": "trunc', type: 'application/json', note: 'truncated JSON' });
    add({ method: 'post', path, raw: '<xml/>', type: 'application/xml', note: 'xml' });
    add({ method: 'post', path, raw: 'name=x', type: 'text/plain', note: 'text/plain' });
    add({ method: 'post', path, raw: '[1,2]', type: 'application/json', note: 'JSON array body' });
    add({ method: 'post', path, raw: deepArray(5000), type: 'application/json', note: 'deep JSON array' });
    add({ method: 'get', path: `${path}?size=0`, note: 'size 0' });
    add({ method: 'get', path: `${path}?size=-5`, note: 'negative size' });
    add({ method: 'get', path: `${path}?size=1.5`, note: 'fractional size' });
    add({ method: 'get', path: `${path}?size=99999999999999999999`, note: 'enormous size' });
    add({ method: 'get', path: `${path}?offset=!!!`, note: 'bad offset' });
    add({ method: 'get', path: `${path}?offset=${Buffer.from('["not-a-uuid"]').toString('base64')}`, note: 'offset without uuid' });
    add({ method: 'get', path: `${path}?tags=`, note: 'empty tags' });
    add({ method: 'get', path: `${path}?tags=a,b/c`, note: 'mixed tags' });
    add({ method: 'delete', path, note: 'DELETE collection' });
  }
  for (const path of items) {
    for (const [note, body] of badBodies) {
      add({ method: 'patch', path, body, note: `PATCH ${note}` });
      add({ method: 'put', path, body, note: `PUT ${note}` });
    }
    add({ method: 'patch', path, raw: '{"a":', type: 'application/json', note: 'PATCH truncated JSON' });
    add({ method: 'put', path, raw: 'a=1', type: 'application/octet-stream', note: 'PUT octet-stream' });
    add({ method: 'post', path, body: {}, note: 'POST to an item' });
  }

  // Services.
  const svcBodies: [string, unknown][] = [
    ['missing host', { name: 'fz-x' }],
    ['host number', { host: 1 }],
    ['host huge', { host: huge.slice(0, 5000) }],
    ['host unicode', { host: 'ホスト.テスト' }],
    ['host with space', { host: 'a b' }],
    ['port string', { host: 'a.test', port: 'abc' }],
    ['port negative', { host: 'a.test', port: -1 }],
    ['port too big', { host: 'a.test', port: 65536 }],
    ['port float', { host: 'a.test', port: 80.5 }],
    ['port 1e300', { host: 'a.test', port: 1e300 }],
    ['retries overflow', { host: 'a.test', retries: 2 ** 40 }],
    ['timeout zero', { host: 'a.test', connect_timeout: 0 }],
    ['protocol enum', { host: 'a.test', protocol: 'ftp' }],
    ['protocol number', { host: 'a.test', protocol: 5 }],
    ['enabled string', { host: 'a.test', enabled: 'yes' }],
    ['path no slash', { host: 'a.test', path: 'x' }],
    ['path double slash', { host: 'a.test', path: '/a//b' }],
    ['path with tcp', { host: 'a.test', protocol: 'tcp', path: '/a' }],
    ['tls_verify on http', { host: 'a.test', tls_verify: true }],
    ['tls_verify_depth big', { host: 'a.test', protocol: 'https', tls_verify_depth: 65 }],
    ['ca_certificates not uuids', { host: 'a.test', protocol: 'https', ca_certificates: ['nope'] }],
    ['client_certificate bad', { host: 'a.test', protocol: 'https', client_certificate: 'x' }],
    ['url empty', { url: '' }],
    ['url blank', { url: ' ' }],
    ['url number', { url: 7 }],
    ['url no host', { url: 'http://' }],
    ['url bad protocol', { url: 'ftp://a.test' }],
    ['url huge port', { url: 'http://a.test:99999' }],
    ['name duplicate', { name: 'fz-svc', host: 'a.test' }],
    ['name with a slash', { name: 'a/b', host: 'a.test' }],
    ['path with a space', { host: 'a.test', path: '/a b' }],
    ['path bad escape', { host: 'a.test', path: '/a%g0' }],
    ['name huge', { name: huge, host: 'a.test' }],
    ['name empty', { name: '', host: 'a.test' }],
    ['id not uuid', { id: 'abc', host: 'a.test' }],
    ['id duplicate', { id: ids.service, host: 'a.test' }],
    ['name NUL', { name: 'a\u0000', host: 'a.test' }],
  ];
  for (const [note, body] of svcBodies) add({ method: 'post', path: '/services', body, note: `service ${note}` });
  for (const [note, body] of svcBodies.slice(1, 22)) add({ method: 'patch', path: '/services/fz-svc', body, note: `service PATCH ${note}` });

  // Routes.
  const routeBodies: [string, unknown][] = [
    ['empty', {}],
    ['http only, nothing to match', { protocols: ['http'] }],
    ['protocols empty', { protocols: [], paths: ['/a'] }],
    ['protocols mixed', { protocols: ['http', 'tcp'], paths: ['/a'] }],
    ['protocols string', { protocols: 'http', paths: ['/a'] }],
    ['paths string', { paths: '/a' }],
    ['paths no slash', { paths: ['a'] }],
    ['paths bad regex', { paths: ['~/(['] }],
    ['paths numbers', { paths: [1, 2] }],
    ['methods lowercase', { methods: ['get'] }],
    ['hosts two wildcards', { hosts: ['*.a.*'] }],
    ['hosts middle wildcard', { hosts: ['a.*.b'] }],
    ['hosts bad port', { hosts: ['a.test:999999'] }],
    ['headers host', { headers: { host: ['x'] } }],
    ['headers not arrays', { headers: { 'x-a': 5 } }],
    ['headers deep', { headers: deep(50) }],
    ['snis on http', { protocols: ['http'], snis: ['a.test'], paths: ['/a'] }],
    ['sources on http', { sources: [{ ip: '1.1.1.1' }], paths: ['/a'] }],
    ['redirect code', { paths: ['/a'], https_redirect_status_code: 200 }],
    ['regex_priority overflow', { paths: ['/a'], regex_priority: 1e20 }],
    ['strip_path string', { paths: ['/a'], strip_path: 'no' }],
    ['path_handling', { paths: ['/a'], path_handling: 'v2' }],
    ['grpc with strip_path', { protocols: ['grpc'], paths: ['/a'] }],
    ['service string', { paths: ['/a'], service: 'fz-svc' }],
    ['service bad uuid', { paths: ['/a'], service: { id: 'not-a-uuid' } }],
    ['service missing id', { paths: ['/a'], service: { id: nonexistent } }],
    ['service unknown name', { paths: ['/a'], service: { name: 'no-such-service' } }],
    ['service empty object', { paths: ['/a'], service: {} }],
    ['service extra key', { paths: ['/a'], service: { id: ids.service, zzz: 1 } }],
    ['service NUL name', { paths: ['/a'], service: { name: 'a\u0000' } }],
    ['name duplicate', { name: 'fz-route', paths: ['/a'] }],
    ['name bad', { name: 'a b', paths: ['/a'] }],
  ];
  for (const [note, body] of routeBodies) add({ method: 'post', path: '/routes', body, note: `route ${note}` });
  for (const [note, body] of routeBodies.slice(2, 23)) add({ method: 'patch', path: '/routes/fz-route', body, note: `route PATCH ${note}` });

  // Consumers.
  const consumerBodies: [string, unknown][] = [
    ['empty', {}],
    ['nulls', { username: null, custom_id: null }],
    ['username number', { username: 5 }],
    ['username empty', { username: '' }],
    ['username huge', { username: huge.slice(0, 10_000) }],
    ['username duplicate', { username: 'fz-user' }],
    ['custom_id duplicate', { custom_id: 'fz-cid' }],
    ['custom_id object', { custom_id: { a: 1 } }],
    ['username NUL', { username: '\u0000' }],
    ['unknown', { username: 'u-new', password: 'x' }],
  ];
  for (const [note, body] of consumerBodies) add({ method: 'post', path: '/consumers', body, note: `consumer ${note}` });
  add({ method: 'get', path: '/consumers?custom_id=', note: 'empty custom_id' });
  add({ method: 'get', path: '/consumers?custom_id=%00', note: 'NUL custom_id' });
  add({ method: 'patch', path: '/consumers/fz-user', body: { username: null, custom_id: null }, note: 'consumer PATCH both null' });

  // Plugins.
  const pluginBodies: [string, unknown][] = [
    ['no name', { config: {} }],
    ['unknown plugin', { name: 'rate-limiting' }],
    ['name number', { name: 42 }],
    ['name huge', { name: huge }],
    ['config not object', { name: 'oauth2', config: 'x' }],
    ['config array', { name: 'oauth2', config: [1] }],
    ['no flow', { name: 'oauth2', config: { scopes: ['a'] } }],
    ['mandatory scope without scopes', { name: 'oauth2', config: { mandatory_scope: true, enable_password_grant: true } }],
    ['token_expiration negative', { name: 'oauth2', config: { token_expiration: -1, enable_password_grant: true } }],
    ['refresh_token_ttl too big', { name: 'oauth2', config: { refresh_token_ttl: 1e9, enable_password_grant: true } }],
    ['pkce enum', { name: 'oauth2', config: { pkce: 'always', enable_password_grant: true } }],
    ['persistent_refresh_token', { name: 'oauth2', config: { persistent_refresh_token: true, enable_password_grant: true } }],
    ['config deep', { name: 'oauth2', config: deep(300) }],
    ['config NUL key', { name: 'oauth2', config: { 'a\u0000': 1, enable_password_grant: true } }],
    ['protocols tcp', { name: 'oauth2', protocols: ['tcp'], config: { enable_password_grant: true } }],
    ['consumer scope', { name: 'oauth2', consumer: { id: ids.consumer }, config: { enable_password_grant: true } }],
    ['duplicate on the service', { name: 'oauth2', service: { id: ids.service }, config: { enable_password_grant: true } }],
    ['route missing', { name: 'oauth2', route: { id: nonexistent }, config: { enable_password_grant: true } }],
    ['service by unknown name', { name: 'oauth2', service: { name: 'nope' }, config: { enable_password_grant: true } }],
    ['instance_name duplicate', { name: 'oauth2', instance_name: 'fz-plugin', route: { id: ids.route }, config: { enable_password_grant: true } }],
    ['enabled string', { name: 'oauth2', enabled: 'true', config: { enable_password_grant: true } }],
    ...PROTOTYPE_KEYS.map((key): [string, unknown] => [`config key ${key}`, { name: 'oauth2', config: withKey(key, 1, { enable_password_grant: true }) }]),
    ...PROTOTYPE_KEYS.map((key): [string, unknown] => [`config object under ${key}`, { name: 'oauth2', config: withKey(key, { x: 1 }) }]),
  ];
  for (const [note, body] of pluginBodies) add({ method: 'post', path: '/plugins', body, note: `plugin ${note}` });
  // PATCH merges into the stored config, so only bodies invalid whatever is stored.
  const invalidPatches = new Set(['config not object', 'config array', 'token_expiration negative', 'refresh_token_ttl too big', 'pkce enum',
    'persistent_refresh_token', 'config deep', 'config NUL key', 'protocols tcp', 'name number', 'unknown plugin', 'enabled string',
    ...PROTOTYPE_KEYS.flatMap((key) => [`config key ${key}`, `config object under ${key}`])]);
  for (const [note, body] of pluginBodies.filter(([n]) => invalidPatches.has(n))) {
    add({ method: 'patch', path: '/plugins/fz-plugin', body, note: `plugin PATCH ${note}` });
  }
  add({ method: 'patch', path: '/plugins/fz-plugin', body: { config: { enable_authorization_code: false } }, note: 'PATCH turning the last flow off' });

  // Form bodies with broken notations.
  const forms: [string, string][] = [
    ['index too large', 'tags[99999]=a&host=a.test'],
    ['proto key', '__proto__.polluted=1&host=a.test'],
    ['constructor key', 'constructor.prototype.x=1&host=a.test'],
    ['bad brackets', 'tags[a]=x&host=a.test'],
    ['mixed shapes', 'tags=a&tags.x=b&host=a.test'],
    ['port words', 'host=a.test&port=eighty'],
    ['enabled maybe', 'host=a.test&enabled=maybe'],
    ['deep key', `${Array.from({ length: 100 }, () => 'a').join('.')}=1&host=a.test`],
    ...PROTOTYPE_KEYS.map((key): [string, string] => [`${key} key`, `${key}=1&host=a.test`]),
    ...PROTOTYPE_KEYS.map((key): [string, string] => [`${key}[] key`, `${key}[]=1&host=a.test`]),
    ...PROTOTYPE_KEYS.map((key): [string, string] => [`map key ${key}`, `client_certificate[${key}]=1&host=a.test`]),
  ];
  for (const [note, raw] of forms) add({ method: 'post', path: '/services', raw, type: 'application/x-www-form-urlencoded', note: `form ${note}` });
  add({ method: 'post', path: '/services/fz-svc/plugins', raw: 'name=oauth2&config.scopes[0]=a', type: 'application/x-www-form-urlencoded', note: 'form index 0' });
  for (const key of PROTOTYPE_KEYS) {
    for (const raw of [`config.${key}.x=1`, `config.${key}=1`, `config[${key}][x]=1`]) {
      add({ method: 'patch', path: '/plugins/fz-plugin', raw, type: 'application/x-www-form-urlencoded', note: `form ${raw}` });
      add({ method: 'patch', path: '/consumers/fz-user/oauth2/fz-client', raw: raw.replace('config', 'redirect_uris'), type: 'application/x-www-form-urlencoded', note: `form credential ${raw}` });
    }
  }
  add({ method: 'post', path: '/services', raw: '--x\r\nbroken', type: 'multipart/form-data; boundary=x', note: 'broken multipart' });

  // Paths and methods.
  for (const path of ['/nope', '/services/fz-svc/nope', '/services/%ZZ', '/services/%00', '/services/fz-svc/routes/fz-route/extra',
    `/services/${'s'.repeat(5000)}`, '/routes/fz-route/plugins/nope', '/consumers/nobody/plugins', '/services/nobody/routes/x',
    '/schemas/plugins/nope', '/services/fz-svc/service', '/consumers/fz-user/oauth2/other-client', '/services//routes', '//services',
    '/services?size=%ZZ', '/services/%E2%82', '/./services/../status/x']) {
    add({ method: 'get', path, note: `GET ${path.slice(0, 40)}` });
  }
  for (const [method, path] of [['put', '/services'], ['patch', '/routes'], ['delete', '/plugins/enabled'], ['post', '/status'],
    ['delete', '/'], ['post', '/clustering/data-planes'], ['delete', '/routes/fz-route/service'], ['post', '/services/fz-svc/routes/fz-route']] as const) {
    add({ method, path, body: {}, note: `${method} ${path}` });
  }
  add({ method: 'patch', path: '/services/missing', body: { retries: 1 }, note: 'PATCH missing' });
  add({ method: 'delete', path: '/consumers/nobody/oauth2/x', note: 'nested DELETE of a missing child' });
  add({ method: 'delete', path: `/services/fz-svc`, note: 'DELETE a referenced service' });
  add({ method: 'post', path: '/services/nobody/routes', body: { paths: ['/a'] }, note: 'POST under a missing parent' });
  add({ method: 'put', path: '/services/fz-svc/routes/fz-route', body: { protocols: ['http'] }, note: 'PUT nested invalid' });
  add({ method: 'post', path: '/oauth2_tokens', body: { expires_in: 'soon', credential: { id: ids.credential } }, note: 'token expires_in' });
  add({ method: 'post', path: '/oauth2', body: { name: 'x' }, note: 'credential without consumer' });
  add({ method: 'post', path: '/consumers/fz-user/oauth2', body: { name: 'x', redirect_uris: ['not a uri'] }, note: 'bad redirect uri' });
  add({ method: 'post', path: '/consumers/fz-user/oauth2', body: { name: 'dup', client_id: 'fz-client' }, note: 'duplicate client_id' });
  // Values a plugin entity's schema lets through but Postgres cannot store.
  add({ method: 'post', path: '/oauth2_tokens', body: { expires_in: 1e12, credential: { id: ids.credential } }, note: 'token expires_in out of int range' });
  add({ method: 'post', path: '/consumers/fz-user/oauth2', body: { name: 'x', client_id: 'c'.repeat(300_000) }, note: 'client_id beyond the index limit' });
  return out;
}

test('every malformed request gets a 4xx with a message and changes nothing', async () => {
  const before = await dumpDatabase(t.db);
  const all = cases();
  assert.ok(all.length >= 200, `${all.length} cases`);
  const failures: string[] = [];
  for (const c of all) {
    let req = api[c.method](c.path);
    if (c.raw !== undefined) req = req.set('Content-Type', c.type ?? 'application/json').send(c.raw);
    else if (c.body !== undefined) req = req.send(c.body as object);
    const res = await req;
    const ok =
      res.status >= 400 &&
      res.status < 500 &&
      /application\/json/.test(String(res.headers['content-type'])) &&
      typeof res.body?.message === 'string' &&
      res.body.message.length > 0 &&
      !/\n\s+at /.test(res.text);
    if (!ok) failures.push(`${c.method.toUpperCase()} ${c.path.slice(0, 80)} (${c.note}): ${res.status} ${res.text.slice(0, 300)}`);
  }
  assert.deepEqual(failures, [], `${failures.length} of ${all.length} requests misbehaved`);
  const afterDump = await dumpDatabase(t.db);
  assert.deepEqual(afterDump, before, 'stored data unchanged');
  // The server is still fine.
  await api.get('/services/fz-svc').expect(200);
});
