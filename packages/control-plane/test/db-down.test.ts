// The database (and Redis) going away and coming back, with real traffic: the control plane talks to the
// shared Postgres through a TCP proxy in this test, which we close (refusing and cutting every
// connection) and reopen. Admin requests answer 503 meanwhile, and everything recovers by itself,
// including the snapshot of a write made just before the outage.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisStore, SNAPSHOT_KEYS, createLogger, loadConfig, MemoryStore } from '@gatehouse/core';
import { createTestDatabase, TEST_DATABASE_URL, TEST_REDIS_URL, testRedisPrefix, type TestDatabase } from '@gatehouse/core/testing.ts';
import { startControlPlane, type ControlPlane } from '../src/index.ts';
import { TcpProxy } from './helpers.ts';

let testDb: TestDatabase;
let proxy: TcpProxy;
let cp: ControlPlane;
let base: string;

before(async () => {
  testDb = await createTestDatabase();
  proxy = new TcpProxy(TEST_DATABASE_URL);
  await proxy.open();
  const viaProxy = new URL(testDb.url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  cp = await startControlPlane({
    config: loadConfig({ DATABASE_URL: viaProxy.toString(), GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0' }),
    store: new MemoryStore(),
    logger: createLogger({ role: 'test', silent: true }),
    verifyIntervalMs: 200,
  });
  base = cp.adminAddresses[0].url;
});
after(async () => {
  await cp?.close();
  await proxy.close();
  await testDb.drop();
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (res.status === 204 ? null : await res.json()) as any };
}

async function until<T>(what: string, fn: () => Promise<T | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (${String(last)})`);
}

test('503 while the database is down, recovery when it returns', async () => {
  assert.equal((await api('POST', '/services', { name: 'before', host: 'b.test' })).status, 201);

  await proxy.close();
  for (const [method, path, body] of [
    ['GET', '/services'],
    ['GET', '/services/before'],
    ['POST', '/consumers', { username: 'during' }],
    ['PATCH', '/services/before', { retries: 1 }],
    ['DELETE', '/services/before'],
    ['GET', '/'],
  ] as const) {
    const res = await api(method, path, body);
    assert.equal(res.status, 503, `${method} ${path}: ${JSON.stringify(res.body)}`);
    assert.ok(!res.body.message.includes('\n') && !res.body.message.includes('invocation'), `one clear line: ${res.body.message}`);
    assert.match(res.body.message, /^database unavailable: .+/);
  }
  // Bad input is still answered as bad input: it never needs the database.
  assert.equal((await api('POST', '/routes', {})).status, 400);
  const status = await api('GET', '/status');
  assert.equal(status.status, 200);
  assert.equal(status.body.database.reachable, false);
  assert.match(status.body.database.error, /^database unavailable/);

  await proxy.open();
  const back = await until('database back', async () => {
    const r = await api('GET', '/services/before');
    return r.status === 200 ? r : false;
  });
  assert.equal(back.body.name, 'before');
  assert.equal((await api('POST', '/consumers', { username: 'after' })).status, 201);
  assert.equal((await api('GET', '/status')).body.database.reachable, true);
  await cp.publisher.flush();
  const latest = JSON.parse((await cp.store.get(SNAPSHOT_KEYS.latest))!);
  const snapshot = JSON.parse((await cp.store.get(SNAPSHOT_KEYS.version(latest.version)))!);
  assert.ok(snapshot.consumers.some((c: { username: string }) => c.username === 'after'));
  assert.ok(!snapshot.consumers.some((c: { username: string }) => c.username === 'during'), 'nothing half-written');
});

test('a write whose snapshot could not be published is published once the database returns', async () => {
  // Commit, then cut the database before the publisher reads the snapshot.
  const res = await api('POST', '/consumers', { username: 'racy' });
  assert.equal(res.status, 201);
  await proxy.close();
  await new Promise((r) => setTimeout(r, 300));
  await proxy.open();
  await until('snapshot with the write', async () => {
    const latest = JSON.parse((await cp.store.get(SNAPSHOT_KEYS.latest)) ?? 'null');
    const snap = latest && JSON.parse((await cp.store.get(SNAPSHOT_KEYS.version(latest.version))) ?? 'null');
    return snap?.consumers.some((c: { username: string }) => c.username === 'racy') ? true : false;
  });
});

test('Redis away: writes still commit, the snapshot is published once Redis is back', async () => {
  const relay = new TcpProxy(TEST_REDIS_URL);
  await relay.open();
  const prefix = testRedisPrefix();
  const cp2 = await startControlPlane({
    config: loadConfig({
      DATABASE_URL: testDb.url,
      REDIS_URL: `redis://127.0.0.1:${relay.port}`,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0',
    }),
    logger: createLogger({ role: 'test', silent: true }),
    verifyIntervalMs: 200,
  });
  const direct = new RedisStore({ url: TEST_REDIS_URL, prefix });
  try {
    const url = cp2.adminAddresses[0].url;
    await relay.close();
    const res = await fetch(`${url}/consumers`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'while-redis-away' }) });
    assert.equal(res.status, 201, 'the database is the source of truth; Redis is not needed to commit');
    const status = (await (await fetch(`${url}/status`)).json()) as any;
    assert.equal(status.store.reachable, false);
    await relay.open();
    await until('snapshot in Redis after it returned', async () => {
      const latest = JSON.parse((await direct.get(SNAPSHOT_KEYS.latest)) ?? 'null');
      const snap = latest && JSON.parse((await direct.get(SNAPSHOT_KEYS.version(latest.version))) ?? 'null');
      return snap?.consumers.some((c: { username: string }) => c.username === 'while-redis-away') ? true : false;
    });
  } finally {
    await cp2.close();
    const raw = new Redis(TEST_REDIS_URL);
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(...keys);
    raw.disconnect();
    await direct.close();
    await relay.close();
  }
});
