// startControlPlane as `gatehouse control-plane` and the all-in-one mode use it: listeners
// (plain and TLS with a generated certificate), the admin token, the refusal to expose the
// admin API without one, auto-migration, the store choice, request logs, `/` and `/status`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import https from 'node:https';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError, MemoryStore, SNAPSHOT_KEYS, createLogger, loadConfig, migrationStatus, openDatabase } from '@gatehouse/core';
import { capturingLogger, createTestDatabase, tempDir, TEST_REDIS_URL, testRedisPrefix, type TestDatabase } from '@gatehouse/core/testing.ts';
import { startControlPlane, type ControlPlane } from '../src/index.ts';

const root = join(import.meta.dirname, '../../..');
const dirs: { remove(): void }[] = [];
const dbs: TestDatabase[] = [];
after(async () => {
  for (const d of dbs) await d.drop();
  for (const d of dirs) d.remove();
});


async function call(cp: ControlPlane, path: string, init: RequestInit & { token?: string } = {}) {
  const url = cp.adminAddresses.find((a) => !a.ssl)!.url;
  const headers = new Headers(init.headers);
  if (init.token) headers.set('Authorization', `Bearer ${init.token}`);
  const res = await fetch(url + path, { ...init, headers });
  return { status: res.status, body: (res.status === 204 ? null : await res.json()) as any, headers: res.headers };
}

function httpsGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false, headers }, (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
      })
      .on('error', reject);
  });
}

test('all options: fresh database migrated, plain and TLS listeners, token, memory store, / and /status', async () => {
  const testDb = await createTestDatabase({ migrate: false });
  dbs.push(testDb);
  const dir = tempDir();
  dirs.push(dir);
  const { logger, lines } = capturingLogger('control-plane', 'debug');
  const config = loadConfig({
    DATABASE_URL: testDb.url,
    GATEHOUSE_DATA_DIR: dir.path,
    GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl',
    GATEHOUSE_ADMIN_TOKEN: 'tok-123456',
  });
  const cp = await startControlPlane({ config, logger });
  try {
    assert.equal(cp.adminAddresses.length, 2);
    assert.equal(cp.store.kind, 'memory');
    assert.ok(lines.some((l) => /REDIS_URL is not set.*other processes cannot see/.test(l.message)), 'memory store is announced');
    assert.ok(lines.some((l) => l.message === 'migrations applied'));
    assert.deepEqual((await migrationStatus(cp.db.sql)).map((m) => m.status), ['applied']);

    // The token guards everything.
    assert.deepEqual(await call(cp, '/').then((r) => [r.status, r.body]), [401, { message: 'Unauthorized' }]);
    assert.equal((await call(cp, '/', { headers: { Authorization: 'Bearer wrong-token' } })).status, 401);
    assert.equal((await call(cp, '/', { headers: { Authorization: 'Basic dG9rLTEyMzQ1Ng==' } })).status, 401);
    assert.equal((await call(cp, '/', { headers: { 'Gatehouse-Admin-Token': 'tok-12345' } })).status, 401);
    assert.equal((await call(cp, '/services', { headers: { 'Gatehouse-Admin-Token': 'tok-123456' } })).status, 200);
    const info = await call(cp, '/', { token: 'tok-123456' });
    assert.equal(info.status, 200);
    assert.equal(info.body.node_id, cp.nodeId);
    assert.equal(info.body.configuration.database, 'postgres');
    assert.equal(info.body.configuration.store, 'memory (in-process)');
    assert.equal(info.body.configuration.admin_token, 'set');
    assert.equal(info.body.configuration.admin_listen.length, 2);
    assert.deepEqual(Object.keys(info.body.plugins.available_on_server), ['oauth2']);
    assert.ok(!JSON.stringify(info.body).includes('tok-123456'), 'no secret in /');

    // TLS listener with the self-signed certificate generated into the data dir.
    const tls = cp.adminAddresses.find((a) => a.ssl)!;
    const overTls = await httpsGet(`${tls.url}/status`, { Authorization: 'Bearer tok-123456' });
    assert.equal(overTls.status, 200);
    assert.equal(overTls.body.database.reachable, true);
    assert.equal(overTls.body.store.latest_snapshot.version, 0);

    // A write goes to the given (memory) store as a snapshot.
    const created = await call(cp, '/services', {
      method: 'POST',
      token: 'tok-123456',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'req-abc' },
      body: JSON.stringify({ name: 'srv', url: 'http://srv.test' }),
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('x-request-id'), 'req-abc');
    await cp.publisher.flush();
    const status = await call(cp, '/status', { token: 'tok-123456' });
    assert.equal(status.body.database.config_version, 1);
    assert.equal(status.body.store.latest_snapshot.version, 1);
    assert.equal(JSON.parse((await cp.store.get(SNAPSHOT_KEYS.version(1)))!).services[0].name, 'srv');

    // A token in a path (Kong's /oauth2_tokens/{access_token}) is not logged either.
    assert.equal((await call(cp, '/oauth2_tokens/sekret-access-token-1', { token: 'tok-123456' })).status, 404);

    // One log line per request, with the request id, and never the token.
    const requestLines = lines.filter((l) => l.message === 'admin request');
    assert.ok(requestLines.some((l) => l.request_id === 'req-abc' && l.method === 'POST' && l.path === '/services' && l.status === 201));
    assert.ok(requestLines.length >= 8);
    assert.ok(!JSON.stringify(lines).includes('tok-123456'), 'token never logged');
    assert.ok(requestLines.some((l) => l.path === '/oauth2_tokens/[redacted]' && l.status === 404));
    assert.ok(!JSON.stringify(lines).includes('sekret-access-token-1'), 'access token never logged');
  } finally {
    await cp.close();
  }
  await assert.rejects(fetch(`${cp.adminAddresses[0].url}/`), 'listener closed');
});

test('a given store is used; Redis from REDIS_URL otherwise', async () => {
  const testDb = await createTestDatabase();
  dbs.push(testDb);
  const store = new MemoryStore();
  const base = { DATABASE_URL: testDb.url, GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0', GATEHOUSE_LOG_LEVEL: 'error' };
  const cp = await startControlPlane({ config: loadConfig(base), store, logger: createLogger({ role: 't', silent: true }) });
  try {
    assert.equal(cp.store, store);
    assert.ok(await store.get(SNAPSHOT_KEYS.latest), 'snapshot published into the given store');
  } finally {
    await cp.close();
  }
  assert.ok(await store.get(SNAPSHOT_KEYS.latest), 'a given store is not closed by the control plane');

  const prefix = testRedisPrefix();
  const cp2 = await startControlPlane({
    config: loadConfig({ ...base, REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix }),
    logger: createLogger({ role: 't', silent: true }),
  });
  try {
    assert.equal(cp2.store.kind, 'redis');
    assert.ok(await cp2.store.get(SNAPSHOT_KEYS.latest));
    await cp2.store.del(SNAPSHOT_KEYS.latest, SNAPSHOT_KEYS.version(0));
  } finally {
    await cp2.close();
  }
});

test('GATEHOUSE_AUTO_MIGRATE=off refuses a database with pending migrations', async () => {
  const testDb = await createTestDatabase({ migrate: false });
  dbs.push(testDb);
  const config = loadConfig({ DATABASE_URL: testDb.url, GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0', GATEHOUSE_AUTO_MIGRATE: 'off' });
  await assert.rejects(startControlPlane({ config, logger: createLogger({ role: 't', silent: true }) }), /pending.*gatehouse migrations up/);
  const db = await openDatabase({ databaseUrl: testDb.url, dataDir: '/tmp' });
  try {
    assert.deepEqual((await migrationStatus(db.sql)).map((m) => m.status), ['pending'], 'nothing applied');
  } finally {
    await db.close();
  }
});

test('a non-loopback admin listener without a token is refused with a message naming the variable', async () => {
  const config = loadConfig({ GATEHOUSE_ADMIN_LISTEN: '0.0.0.0:0', DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/none' });
  await assert.rejects(startControlPlane({ config }), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /GATEHOUSE_ADMIN_TOKEN/);
    assert.match(err.message, /GATEHOUSE_ADMIN_LISTEN/);
    return true;
  });
  // Loopback forms are fine without a token (they fail later, on the unreachable database).
  for (const listen of ['127.0.0.1:0', '[::1]:0', 'localhost:0']) {
    const c = loadConfig({ GATEHOUSE_ADMIN_LISTEN: listen, DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/none' });
    await assert.rejects(startControlPlane({ config: c, logger: createLogger({ role: 't', silent: true }) }), (err: Error) => !(err instanceof ConfigError));
  }
  // From the command line: one line, exit code 1, no stack.
  const res = spawnSync(process.execPath, [join(root, 'bin/gatehouse.js'), 'control-plane'], {
    env: { ...process.env, GATEHOUSE_ADMIN_LISTEN: '0.0.0.0:8001', GATEHOUSE_ADMIN_TOKEN: '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(res.status, 1);
  assert.match(res.stderr, /^gatehouse: GATEHOUSE_ADMIN_TOKEN must be set when GATEHOUSE_ADMIN_LISTEN has a non-loopback address \(0\.0\.0\.0:8001\)/);
  assert.equal(res.stderr.trim().split('\n').length, 1);
});

test('a token on a public listener is accepted', async () => {
  const testDb = await createTestDatabase();
  dbs.push(testDb);
  const config = loadConfig({ DATABASE_URL: testDb.url, GATEHOUSE_ADMIN_LISTEN: '0.0.0.0:0', GATEHOUSE_ADMIN_TOKEN: 'pub-token' });
  const cp = await startControlPlane({ config, logger: createLogger({ role: 't', silent: true }) });
  try {
    const res = await fetch(`http://127.0.0.1:${cp.adminAddresses[0].port}/status`, { headers: { Authorization: 'Bearer pub-token' } });
    assert.equal(res.status, 200);
    const denied = await fetch(`http://127.0.0.1:${cp.adminAddresses[0].port}/status`);
    assert.equal(denied.status, 401);
  } finally {
    await cp.close();
  }
});
