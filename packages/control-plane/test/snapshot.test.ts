// The control-plane half of config snapshots: every committed write bumps config_version, and
// the publisher stores a complete snapshot in Redis, moves `config:latest` and announces it;
// bursts coalesce without losing the last write; a flushed Redis is repopulated. Also
// GET /clustering/data-planes from heartbeats written straight into the store.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import request from 'supertest';
import { DATA_PLANE_TTL_S, RedisStore, SNAPSHOT_KEYS, hashContent, sha256Hex, type DataPlaneHeartbeat, type Snapshot } from '@gatehouse/core';
import { TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { openTestApp, type TestApp } from './helpers.ts';
import { bumpVersion } from '../src/engine.ts';
import { SnapshotPublisher, _readCorePrisma, _readCoreRaw, type PublisherOptions } from '../src/publisher.ts';

let t: TestApp;
let api: ReturnType<typeof request>;
let raw: Redis;
let listener: RedisStore;
const announcements: { version: number; hash: string }[] = [];

before(async () => {
  t = await openTestApp({ verifyIntervalMs: 200 });
  api = request(t.app);
  raw = new Redis(TEST_REDIS_URL);
  listener = new RedisStore({ url: TEST_REDIS_URL, prefix: t.prefix });
  await listener.subscribe(SNAPSHOT_KEYS.channel, (m) => announcements.push(JSON.parse(m)));
  await t.publisher.start();
});
after(async () => {
  await listener.close();
  const keys = await raw.keys(`${t.prefix}*`);
  if (keys.length) await raw.del(...keys);
  raw.disconnect();
  await t.close();
});

const dbVersion = async () => Number((await t.db.prisma.configVersion.findUnique({ where: { id: 1 } }))!.version);
const latest = async () => JSON.parse((await t.store.get(SNAPSHOT_KEYS.latest)) ?? 'null') as { version: number; hash: string } | null;
const snapshotAt = async (v: number) => JSON.parse((await t.store.get(SNAPSHOT_KEYS.version(v))) ?? 'null') as Snapshot | null;

async function until(what: string, fn: () => Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('on start the current version is published', async () => {
  const p = await latest();
  assert.equal(p?.version, 0);
  const snap = await snapshotAt(0);
  assert.deepEqual([snap!.services, snap!.routes, snap!.consumers, snap!.plugins], [[], [], [], []]);
});

test('a write bumps the version and publishes a complete, self-contained snapshot', async () => {
  const v0 = await dbVersion();
  const svc = (await api.post('/services').send({ name: 'snap-svc', url: 'http://up.test/base' }).expect(201)).body;
  const route = (await api.post('/services/snap-svc/routes').send({ paths: ['/snap'] }).expect(201)).body;
  const consumer = (await api.post('/consumers').send({ username: 'snap-user' }).expect(201)).body;
  const plugin = (await api.post('/plugins').send({ name: 'oauth2', enabled: false, config: { enable_password_grant: true } }).expect(201)).body;
  assert.equal(await dbVersion(), v0 + 4);
  await t.publisher.flush();
  const p = await latest();
  assert.equal(p!.version, v0 + 4);
  const snap = await snapshotAt(p!.version);
  assert.ok(snap);
  assert.equal(snap.version, p!.version);
  assert.equal(snap.hash, p!.hash);
  const { version, hash, created_at, ...content } = snap;
  assert.equal(hashContent(content), hash, 'hash of the content');
  assert.ok(created_at > 0);
  // Entities exactly as the admin API shows them, but for the oauth2 provision_key, which only
  // the admin sees (the data planes get its hash); disabled plugins included.
  assert.deepEqual(snap.services, [(await api.get(`/services/${svc.id}`)).body]);
  assert.deepEqual(snap.routes, [route]);
  assert.deepEqual(snap.consumers, [consumer]);
  const shown = (await api.get(`/plugins/${plugin.id}`)).body;
  assert.deepEqual(snap.plugins, [{ ...shown, config: { ...shown.config, provision_key: `$sha256$${sha256Hex(shown.config.provision_key)}` } }]);
  assert.equal(snap.plugins[0].enabled, false);
  assert.deepEqual(snap.credentials, {});
  await until('announcement', async () => announcements.some((a) => a.version === p!.version && a.hash === p!.hash));
});

test('failed writes and reads do not bump the version', async () => {
  const v0 = await dbVersion();
  await api.post('/services').send({}).expect(400);
  await api.post('/services').send({ name: 'snap-svc', host: 'x.test' }).expect(409);
  await api.get('/services').expect(200);
  await api.delete('/services/not-there').expect(204);
  assert.equal(await dbVersion(), v0);
});

test('a burst is coalesced and the last write is never lost', async () => {
  const before = t.publisher.published;
  const writes = Array.from({ length: 30 }, (_, i) => api.post('/consumers').send({ username: `burst-${i}` }).expect(201));
  await Promise.all(writes);
  await t.publisher.flush();
  const published = t.publisher.published - before;
  assert.ok(published >= 1 && published < 30, `30 writes gave ${published} snapshots`);
  const p = await latest();
  assert.equal(p!.version, await dbVersion());
  const snap = await snapshotAt(p!.version);
  for (let i = 0; i < 30; i++) assert.ok(snap!.consumers.some((c) => c.username === `burst-${i}`), `burst-${i} in the snapshot`);

  // Back-to-back writes without waiting: the final state is always published.
  for (let i = 0; i < 5; i++) {
    await api.patch('/consumers/burst-0').send({ custom_id: `round-${i}` }).expect(200);
  }
  await until('last write published', async () => {
    const l = await latest();
    const s = l && (await snapshotAt(l.version));
    return !!s && s.consumers.some((c) => c.username === 'burst-0' && c.custom_id === 'round-4');
  });
  assert.equal((await latest())!.version, await dbVersion());
});

test('a publish loop woken with nothing to do does not block later writes', async () => {
  // A debounce timer can fire after another loop already took its work: that empty loop must
  // not leave the publisher believing it is still running.
  await t.publisher.flush();
  await (t.publisher as unknown as { run(): Promise<void> }).run();
  await api.patch('/consumers/burst-2').send({ custom_id: 'after-empty-run' }).expect(200);
  await until('publish after an empty loop', async () => {
    const l = await latest();
    const s = l && (await snapshotAt(l.version));
    return !!s && s.consumers.some((c) => c.custom_id === 'after-empty-run');
  }, 1500);
});

test('older snapshots expire, the latest few are kept', async () => {
  for (let i = 0; i < 8; i++) {
    await api.patch('/consumers/burst-1').send({ custom_id: `keep-${i}` }).expect(200);
    await t.publisher.flush();
  }
  const v = (await latest())!.version;
  assert.equal(await raw.pttl(`${t.prefix}${SNAPSHOT_KEYS.version(v)}`), -1, 'latest does not expire');
  const expiring: number[] = [];
  for (let k = 0; k <= v; k++) {
    const ttl = await raw.pttl(`${t.prefix}${SNAPSHOT_KEYS.version(k)}`);
    if (ttl > 0) expiring.push(k);
  }
  assert.ok(expiring.length > 0, 'some older versions expire');
  assert.ok(expiring.every((k) => k < v - 4), `only old versions expire: ${expiring.join(',')} (latest ${v})`);
});

test('snapshots an earlier control-plane process stored expire too (the list is kept in the store)', async () => {
  // A publisher that stops, as a process would, after writes that reached only it.
  const earlier = new SnapshotPublisher({ ...(t.publisher as unknown as { options: PublisherOptions }).options });
  const mine: number[] = [];
  for (let i = 0; i < 4; i++) {
    await t.db.prisma.$transaction((tx) => bumpVersion(tx as never));
    earlier.notify();
    await earlier.flush();
    mine.push(earlier.last!.version);
  }
  await earlier.close();
  for (let i = 0; i < 8; i++) {
    await api.patch('/consumers/burst-1').send({ custom_id: `after-restart-${i}` }).expect(200);
    await t.publisher.flush();
  }
  for (const v of mine) assert.ok((await raw.pttl(`${t.prefix}${SNAPSHOT_KEYS.version(v)}`)) > 0, `version ${v} expires`);
  assert.ok((await raw.scard(`${t.prefix}${SNAPSHOT_KEYS.stored}`)) <= 6);
});

test('snapshots stored without being listed (by a version before the list) expire once a control plane starts', async () => {
  // As an earlier version left them: stored, unlisted, no expiry.
  for (const v of [1, 2]) {
    await raw.set(`${t.prefix}${SNAPSHOT_KEYS.version(v)}`, '{}');
    await raw.srem(`${t.prefix}${SNAPSHOT_KEYS.stored}`, String(v));
  }
  const restarted = new SnapshotPublisher({ ...(t.publisher as unknown as { options: PublisherOptions }).options });
  await restarted.start();
  await restarted.close();
  await api.patch('/consumers/burst-1').send({ custom_id: 'after-adoption' }).expect(200);
  await t.publisher.flush();
  for (const v of [1, 2]) assert.ok((await raw.pttl(`${t.prefix}${SNAPSHOT_KEYS.version(v)}`)) > 0, `version ${v} expires`);
});

test('a store ahead of the database (database recreated, Redis kept): the version moves past it and writes reach the data planes again', async () => {
  await t.publisher.flush();
  const v = await dbVersion();
  // What a previous database's history left in Redis.
  const ahead = v + 40;
  await t.store.set(SNAPSHOT_KEYS.version(ahead), JSON.stringify({ ...(await snapshotAt(v))!, version: ahead }));
  await t.store.set(SNAPSHOT_KEYS.latest, JSON.stringify({ version: ahead, hash: 'from-the-old-database' }));
  await until('the database version past the store', async () => (await dbVersion()) > ahead && (await latest())!.version === (await dbVersion()));
  await api.patch('/consumers/burst-1').send({ custom_id: 'after-reset' }).expect(200);
  await t.publisher.flush();
  const p = (await latest())!;
  assert.ok(p.version > ahead + 1);
  assert.equal((await snapshotAt(p.version))!.consumers.find((c) => c.username === 'burst-1')!.custom_id, 'after-reset');
  assert.deepEqual(announcements.at(-1), p);
});

test('the snapshot is republished after Redis loses it', async () => {
  const v = await dbVersion();
  const keys = await raw.keys(`${t.prefix}config:*`);
  await raw.del(...keys);
  assert.equal(await t.store.get(SNAPSHOT_KEYS.latest), null);
  await until('republish', async () => (await latest())?.version === v && (await snapshotAt(v)) !== null);
  // Only the snapshot body lost (latest still there): also noticed.
  await raw.del(`${t.prefix}${SNAPSHOT_KEYS.version(v)}`);
  await until('republish of the body', async () => (await snapshotAt(v)) !== null);
});

test('GET /clustering/data-planes lists live data planes with their sync status', async () => {
  await t.publisher.flush();
  const p = (await latest())!;
  const now = Math.floor(Date.now() / 1000);
  const hb = (id: string, extra: Partial<DataPlaneHeartbeat>): DataPlaneHeartbeat => ({
    id,
    hostname: `${id}.local`,
    ip: '10.0.0.1',
    version: '0.1.0',
    config_version: p.version,
    config_hash: p.hash,
    last_seen: now,
    workers: 2,
    ...extra,
  });
  await t.store.hset(SNAPSHOT_KEYS.dataPlanes, 'dp-a', JSON.stringify(hb('dp-a', {})));
  await t.store.hset(SNAPSHOT_KEYS.dataPlanes, 'dp-b', JSON.stringify(hb('dp-b', { config_hash: 'f'.repeat(64), config_version: 1 })));
  await t.store.hset(SNAPSHOT_KEYS.dataPlanes, 'dp-c', JSON.stringify(hb('dp-c', { config_hash: null, config_version: null })));
  await t.store.hset(SNAPSHOT_KEYS.dataPlanes, 'dp-old', JSON.stringify(hb('dp-old', { last_seen: now - DATA_PLANE_TTL_S - 10 })));
  await t.store.hset(SNAPSHOT_KEYS.dataPlanes, 'dp-garbage', '{not json');
  const res = await api.get('/clustering/data-planes').expect(200);
  assert.equal(res.body.next, null);
  assert.deepEqual(
    res.body.data.map((d: any) => [d.id, d.sync_status]),
    [
      ['dp-a', 'normal'],
      ['dp-b', 'out_of_sync'],
      ['dp-c', 'unknown'],
    ],
  );
  assert.deepEqual(res.body.data[0], {
    id: 'dp-a',
    hostname: 'dp-a.local',
    ip: '10.0.0.1',
    version: '0.1.0',
    config_hash: p.hash,
    config_version: p.version,
    last_seen: now,
    sync_status: 'normal',
    workers: 2,
  });
  const left = await t.store.hgetall(SNAPSHOT_KEYS.dataPlanes);
  assert.deepEqual(Object.keys(left).sort(), ['dp-a', 'dp-b', 'dp-c'], 'stale and unreadable entries dropped');
});

test('the one-statement read of the core tables returns exactly what findMany returns', async () => {
  // Every column filled, nulls, JSON, arrays and defaults, so a renamed or added column shows.
  await api
    .post('/services')
    .send({ name: 'rows-svc', url: 'https://example.com:8443/base', retries: 2, tags: ['a', 'b'], tls_verify: true, tls_verify_depth: 3, ca_certificates: ['7b4d2bd1-6a3b-4b7b-8f5c-2a3e1c0d9f10'] })
    .expect(201);
  await api.post('/services').send({ name: 'rows-svc-2', url: 'http://example.org' }).expect(201);
  await api
    .post('/services/rows-svc/routes')
    .send({ name: 'rows-route', paths: ['/rows'], methods: ['GET'], hosts: ['a.example'], headers: { 'x-a': ['1', '2'] }, strip_path: false, regex_priority: 4, tags: ['t'] })
    .expect(201);
  await api.post('/services/rows-svc-2/routes').send({ paths: ['/rows-2'] }).expect(201);
  await api.post('/consumers').send({ username: 'rows-user', custom_id: 'rows-cid', tags: ['c'] }).expect(201);
  await api.post('/consumers').send({ custom_id: 'rows-cid-only' }).expect(201);
  await api.post('/routes/rows-route/plugins').send({ name: 'oauth2', instance_name: 'rows-plugin', config: { enable_client_credentials: true, scopes: ['a', 'b'] }, tags: ['p'] }).expect(201);
  await api.post('/services/rows-svc-2/plugins').send({ name: 'oauth2', enabled: false, config: { enable_password_grant: true } }).expect(201);
  const [viaPrisma, viaRaw] = await t.db.prisma.$transaction(async (tx: any) => [await _readCorePrisma(tx), await _readCoreRaw(tx)]);
  assert.ok(viaPrisma.routes.length >= 2 && viaPrisma.plugins.length >= 2 && viaPrisma.consumers.length >= 2);
  assert.deepStrictEqual(viaRaw, viaPrisma);
  assert.equal(JSON.stringify(viaRaw), JSON.stringify(viaPrisma), 'same keys in the same order');
});
