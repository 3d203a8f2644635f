// Snapshot sync against the real Redis (unique key prefix per run): start-up load,
// announcements, the poll, refusal of invalid snapshots, heartbeats, the disk cache when
// Redis is unreachable, and resync after the Redis link drops (through a TCP proxy the test
// controls: the shared Redis server itself is never stopped).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { createLogger } from '@gatehouse/core/logger.ts';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import { SNAPSHOT_KEYS, type DataPlaneHeartbeat } from '@gatehouse/core/snapshot.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { getFreePort, tempDir, TcpRelay, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { cacheFile, SnapshotSync, startDataPlane, type DataPlane } from '../src/index.ts';
import { dpConfig, plugin, publish, req, route, service, snapshot, startUpstream, waitFor, type Upstream } from './helpers.ts';

const strict: PluginDefinition = {
  name: 'strict',
  version: '1.0.0',
  priority: 10,
  configSchema: z.strictObject({ limit: z.number().int().min(1) }),
};
const plugins = new Map([['strict', strict]]);

/** A relay to the test Redis that the test can cut and restore. */
const redisProxy = async (port: number) => new TcpRelay(TEST_REDIS_URL, port);

describe('snapshot sync over Redis', () => {
  const prefix = testRedisPrefix();
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  const dirs: { path: string; remove(): void }[] = [];
  const planes: DataPlane[] = [];
  let up: Upstream;
  const svc = () => service({ host: '127.0.0.1', port: up.port });

  const dir = () => {
    const d = tempDir();
    dirs.push(d);
    return d.path;
  };
  async function start(env: Record<string, string>, pollIntervalMs?: number) {
    const dp = await startDataPlane({
      config: dpConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix, ...env }),
      plugins,
      pollIntervalMs,
    });
    planes.push(dp);
    return dp;
  }
  const served = async (dp: DataPlane, path: string) => (await req(dp.addresses[0].port, path)).status;

  before(async () => {
    up = await startUpstream('up');
  });
  after(async () => {
    for (const dp of planes) await dp.close();
    const keys = [SNAPSHOT_KEYS.latest, SNAPSHOT_KEYS.dataPlanes, ...Array.from({ length: 40 }, (_, i) => SNAPSHOT_KEYS.version(i))];
    await store.del(...keys);
    await store.close();
    await up.close();
    for (const d of dirs) d.remove();
  });

  test('loads the latest snapshot at start, swaps on announcements, finds unannounced ones by polling', async () => {
    const s = svc();
    await publish(store, snapshot(1, { services: [s], routes: [route({ paths: ['/one'] }, s)] }));
    const dp = await start({ GATEHOUSE_DATA_DIR: dir() }, 300);
    assert.equal(dp.configVersion?.version, 1);
    assert.equal(await served(dp, '/one'), 200);

    const t0 = Date.now();
    await publish(store, snapshot(2, { services: [s], routes: [route({ paths: ['/two'] }, s)] }));
    await waitFor('announced snapshot', async () => (await served(dp, '/two')) === 200, 5000, 5);
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(await served(dp, '/one'), 404);

    const third = snapshot(3, { services: [s], routes: [route({ paths: ['/three'] }, s)] });
    await publish(store, third, { announce: false });
    await waitFor('polled snapshot', async () => (await served(dp, '/three')) === 200, 5000);

    // Heartbeat with the applied version, under a node id kept in the data dir.
    const beat = await waitFor('heartbeat', async () => {
      const raw = (await store.hgetall(SNAPSHOT_KEYS.dataPlanes))[dp.nodeId];
      const b: DataPlaneHeartbeat | null = raw ? JSON.parse(raw) : null;
      return b && b.config_version === 3 ? b : null;
    });
    assert.equal(beat.id, dp.nodeId);
    assert.equal(beat.workers, 1);
    assert.equal(beat.hostname, hostname());
    assert.equal(beat.config_hash, third.hash);
    assert.ok(Math.abs(beat.last_seen - Date.now() / 1000) < 10);
    // The disk cache holds the applied snapshot.
    assert.equal(JSON.parse(readFileSync(cacheFile(dp.sync['o'].config.dataDir), 'utf8')).version, 3);
  });

  test('a burst of announcements coalesces: the last version is applied, most of those between are skipped', async () => {
    const burstPrefix = testRedisPrefix();
    const burstStore = new RedisStore({ url: TEST_REDIS_URL, prefix: burstPrefix });
    const applied: number[] = [];
    const sync = new SnapshotSync({
      config: dpConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: burstPrefix, GATEHOUSE_DATA_DIR: dir() }),
      store: burstStore,
      logger: createLogger({ role: 'test', level: 'error' }),
      plugins,
      nodeId: 'burst',
      pollIntervalMs: 60_000,
      // A slow apply: the announcements pile up meanwhile.
      apply: async (snap) => {
        applied.push(snap.version);
        await new Promise((r) => setTimeout(r, 50));
      },
    });
    try {
      await sync.start();
      const s = svc();
      for (let v = 1; v <= 20; v++) await publish(burstStore, snapshot(v, { services: [s], routes: [route({ paths: [`/v${v}`] }, s)] }));
      await waitFor('the last version applied', () => sync.pointer?.version === 20);
      assert.equal(applied.at(-1), 20);
      assert.ok(applied.length < 10, `applied: ${applied.join(', ')}`);
      assert.deepEqual(applied, [...applied].sort((a, b) => a - b), 'never an older version after a newer one');
    } finally {
      await sync.close();
      await burstStore.del(SNAPSHOT_KEYS.latest, SNAPSHOT_KEYS.dataPlanes, ...Array.from({ length: 21 }, (_, i) => SNAPSHOT_KEYS.version(i)));
      await burstStore.close();
    }
  });

  test('refuses invalid snapshots and keeps serving the previous one', async () => {
    const s = svc();
    const dp = await start({ GATEHOUSE_DATA_DIR: dir() }, 200);
    await publish(store, snapshot(10, { services: [s], routes: [route({ paths: ['/good'] }, s)] }));
    await waitFor('good snapshot', () => dp.configVersion?.version === 10);

    const tampered = snapshot(11, { services: [s], routes: [route({ paths: ['/tampered'] }, s)] });
    tampered.routes[0].paths = ['/changed-after-hashing'];
    await publish(store, tampered);
    const unknown = snapshot(12, { services: [s], routes: [route({ paths: ['/unknown'] }, s)], plugins: [plugin('not-installed', {})] });
    await publish(store, unknown);
    const badConfig = snapshot(13, { services: [s], routes: [route({ paths: ['/bad'] }, s)], plugins: [plugin('strict', { limit: 0 })] });
    await publish(store, badConfig);
    const badRegex = snapshot(14, { services: [s], routes: [route({ paths: ['~/(unclosed'] }, s)] });
    await publish(store, badRegex);
    // A credential that is not an object with an id: refused here, not left to each plugin (or,
    // under node:cluster, to each worker while the primary reports the version as applied).
    const badCredential = snapshot(15, { services: [s], routes: [route({ paths: ['/bad-credential'] }, s)], credentials: { oauth2_credentials: [null] } });
    await publish(store, badCredential);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(dp.configVersion?.version, 10);
    assert.equal(await served(dp, '/good'), 200);

    const fixed = snapshot(16, { services: [s], routes: [route({ paths: ['/fixed'] }, s)], plugins: [plugin('strict', { limit: 5 })] });
    await publish(store, fixed);
    await waitFor('valid snapshot after invalid ones', () => dp.configVersion?.version === 16);
    assert.equal(await served(dp, '/fixed'), 200);
  });

  test('restarted while Redis is unreachable: serves from the disk cache with the same node id', async () => {
    const s = svc();
    const d = dir();
    const first = await start({ GATEHOUSE_DATA_DIR: d });
    await publish(store, snapshot(20, { services: [s], routes: [route({ paths: ['/cached'] }, s)] }));
    await waitFor('snapshot 20', () => first.configVersion?.version === 20);
    await first.close();
    assert.ok(existsSync(cacheFile(d)));

    const deadPort = await getFreePort();
    const second = await start({ GATEHOUSE_DATA_DIR: d, REDIS_URL: `redis://127.0.0.1:${deadPort}` });
    assert.equal(second.nodeId, first.nodeId);
    assert.equal(second.configVersion?.version, 20);
    assert.equal(await served(second, '/cached/x'), 200);
  });

  test('no Redis and no disk cache: 503 naming Redis, then the config arrives once Redis is reachable', async () => {
    const s = svc();
    await publish(store, snapshot(25, { services: [s], routes: [route({ paths: ['/late'] }, s)] }));
    const proxy = await redisProxy(await getFreePort());
    const dp = await start({ GATEHOUSE_DATA_DIR: dir(), REDIS_URL: proxy.url }, 300);
    const res = await req(dp.addresses[0].port, '/late');
    assert.equal(res.status, 503);
    assert.deepEqual(res.json(), { message: `no configuration loaded yet: waiting for the control plane (Redis at ${proxy.url})` });
    await proxy.open();
    try {
      await waitFor('config after Redis came up', async () => (await served(dp, '/late')) === 200, 15_000, 100);
    } finally {
      await proxy.cut();
    }
  });

  test('the Redis link drops, a change is published meanwhile: resynced when the link is back', async () => {
    const s = svc();
    const proxy = await redisProxy(await getFreePort());
    await proxy.open();
    await publish(store, snapshot(30, { services: [s], routes: [route({ paths: ['/before'] }, s)] }));
    // A long poll interval: the resubscribe handler has to do the work.
    const dp = await start({ GATEHOUSE_DATA_DIR: dir(), REDIS_URL: proxy.url }, 60_000);
    assert.equal(dp.configVersion?.version, 30);
    await proxy.cut();
    await publish(store, snapshot(31, { services: [s], routes: [route({ paths: ['/after'] }, s)] }));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await served(dp, '/before'), 200, 'keeps serving while Redis is away');
    await proxy.open();
    try {
      await waitFor('resync after reconnect', async () => (await served(dp, '/after')) === 200, 15_000, 100);
    } finally {
      await proxy.cut();
    }
  });
});
