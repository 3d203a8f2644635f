// Route regexes whose matching time grows faster than linearly with the request (ReDoS) are
// refused with Kong's schema-violation shape; ordinary Kong regexes, lookarounds and
// backreferences included, are accepted.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { dumpDatabase, openTestApp, type TestApp } from './helpers.ts';

let t: TestApp;
let api: ReturnType<typeof request>;

before(async () => {
  t = await openTestApp();
  api = request(t.app);
  await api.post('/services').send({ name: 'rx-svc', url: 'http://rx.test' }).expect(201);
  await api.post('/services/rx-svc/routes').send({ name: 'rx-route', paths: ['/rx'] }).expect(201);
});
after(async () => {
  await t.close();
});

const BACKTRACKING = ['~/(a+)+$', '~/(a|a)*$', '~/(a*)*b', '~/(\\w+\\s?)*$', '~/api/\\d+\\d+x'];

test('regex paths with super-linear backtracking are refused, naming the path; nothing is written', async () => {
  const before = await dumpDatabase(t.db);
  for (const path of BACKTRACKING) {
    const res = await api.post('/services/rx-svc/routes').send({ paths: ['/ok', path] });
    assert.equal(res.status, 400, `${path}: ${res.text}`);
    assert.equal(res.body.code, 2);
    assert.equal(res.body.name, 'schema violation');
    const message = res.body.fields.paths[1];
    assert.equal(res.body.fields.paths[0], null);
    assert.match(message, /^invalid regex: '.*' \((catastrophic|super-linear) backtracking: matching time can grow /, path);
    assert.ok(message.startsWith(`invalid regex: '${path.slice(1)}' (`), message);
    assert.equal(res.body.message, `schema violation (paths.2: ${message})`);
  }
  const exponential = await api.post('/routes').send({ paths: ['~/(a+)+$'] }).expect(400);
  assert.equal(
    exponential.body.fields.paths[0],
    "invalid regex: '/(a+)+$' (catastrophic backtracking: matching time can grow exponentially with the input's length)",
  );
  const quadratic = await api.post('/routes').send({ paths: ['~/api/\\d+\\d+x'] }).expect(400);
  assert.equal(
    quadratic.body.fields.paths[0],
    "invalid regex: '/api/\\d+\\d+x' (super-linear backtracking: matching time can grow as the input's length to the power 2)",
  );
  // PATCH and PUT are checked the same way.
  await api.patch('/routes/rx-route').send({ paths: ['~/(a|a)*$'] }).expect(400);
  await api.put('/routes/rx-route').send({ paths: ['~/(a*)*b'] }).expect(400);
  assert.deepEqual(await dumpDatabase(t.db), before);
});

test('header regexes (~*) are checked too, and must compile', async () => {
  const slow = await api.post('/routes').send({ paths: ['/h'], headers: { 'x-v': ['plain', '~*^(a+)+$'] } }).expect(400);
  assert.deepEqual(slow.body.fields.headers, {
    'x-v': [null, "invalid regex: '^(a+)+$' (catastrophic backtracking: matching time can grow exponentially with the input's length)"],
  });
  const broken = await api.post('/routes').send({ paths: ['/h'], headers: { 'x-v': ['~*(['] } }).expect(400);
  assert.match(broken.body.fields.headers['x-v'][0], /^invalid regex: '\(\[' \(/);
  const ok = await api.post('/routes').send({ paths: ['/h'], headers: { 'x-v': ['~*^v\\d+$'] } }).expect(201);
  await api.delete(`/routes/${ok.body.id}`).expect(204);
});

test("ordinary Kong regexes are accepted: Kong's documentation examples, lookarounds, backreferences", async () => {
  const accepted = [
    '~/users/\\d+$',
    '~/(?<name>[a-z]+)/profile',
    '~/version/(?<version>\\d+)/users/(?<user>\\S+)',
    '~/status/\\d{3}$',
    '~/files/.*\\.png$',
    '~/api/.*/users',
    '~/(?!admin)[^/]+/x',
    '~/foo(?=bar)',
    '~/(\\w+)/\\1$',
  ];
  for (const path of accepted) {
    const res = await api.post('/services/rx-svc/routes').send({ paths: [path] });
    assert.equal(res.status, 201, `${path}: ${res.text}`);
    assert.deepEqual(res.body.paths, [path]);
    await api.delete(`/routes/${res.body.id}`).expect(204);
  }
  // A regex that does not compile keeps Kong's message, and one that compiles only inside the
  // router's anchoring group is refused.
  const broken = await api.post('/routes').send({ paths: ['~/a)(b'] }).expect(400);
  assert.match(broken.body.fields.paths[0], /^invalid regex: '\/a\)\(b' \(/);
});
