// The embedded database (no DATABASE_URL): what `npm start` uses. Writes, concurrent writes
// (one PGlite connection shared by interactive transactions) and snapshots.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemoryStore, SNAPSHOT_KEYS, createLogger, loadConfig } from '@gatehouse/core';
import { tempDir } from '@gatehouse/core/testing.ts';
import { startControlPlane, type ControlPlane } from '../src/index.ts';

const dir = tempDir();
let cp: ControlPlane;
let base: string;
before(async () => {
  cp = await startControlPlane({
    config: loadConfig({ GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0' }),
    store: new MemoryStore(),
    logger: createLogger({ role: 'test', silent: true }),
  });
  base = cp.adminAddresses[0].url;
});
after(async () => {
  await cp?.close();
  dir.remove();
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (res.status === 204 ? null : await res.json()) as any };
}

test('the embedded database serves the admin API', async () => {
  assert.equal(cp.db.kind, 'pglite');
  assert.equal((await api('POST', '/services', { name: 'emb', url: 'http://emb.test' })).status, 201);
  assert.equal((await api('POST', '/services/emb/routes', { paths: ['/emb'] })).status, 201);
  assert.equal((await api('DELETE', '/services/emb')).status, 400);
  assert.equal((await api('POST', '/consumers', { username: 'emb' })).status, 201);
  assert.equal((await api('POST', '/consumers', { username: 'emb' })).status, 409);
});

test('concurrent writes on the single embedded connection all commit, each with its version', async () => {
  const before = (await api('GET', '/status')).body.database.config_version;
  const results = await Promise.all(Array.from({ length: 25 }, (_, i) => api('POST', '/consumers', { username: `c-${i}` })));
  assert.deepEqual(results.map((r) => r.status), Array(25).fill(201));
  const dupes = await Promise.all(Array.from({ length: 5 }, () => api('POST', '/consumers', { username: 'same' })));
  assert.deepEqual(dupes.map((r) => r.status).sort(), [201, 409, 409, 409, 409]);
  const status = (await api('GET', '/status')).body;
  assert.equal(status.database.config_version, before + 26);
  await cp.publisher.flush();
  const latest = JSON.parse((await cp.store.get(SNAPSHOT_KEYS.latest))!);
  assert.equal(latest.version, before + 26, `publisher: ${cp.publisher.lastError}`);
  const snap = JSON.parse((await cp.store.get(SNAPSHOT_KEYS.version(latest.version)))!);
  assert.equal(snap.consumers.length, 27);
});
