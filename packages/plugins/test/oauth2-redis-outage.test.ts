// A data plane losing Redis: tokens it has validated recently keep working from its in-process
// cache (nothing can be revoked meanwhile either), unknown ones and the token endpoint answer
// 503 (never 500: an outage is not a bug), and everything comes back when Redis does.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '@gatehouse/core/config.ts';
import { SNAPSHOT_KEYS } from '@gatehouse/core/snapshot.ts';
import { tempDir } from '@gatehouse/core/testing.ts';
import { startDataPlane } from '@gatehouse/data-plane';
import { request, silent, standardSetup, startEnv, startRedisRelay, type Env } from './oauth2-helpers.ts';

let env: Env;
let relay: Awaited<ReturnType<typeof startRedisRelay>>;
before(async () => {
  relay = await startRedisRelay();
  env = await startEnv({ dataPlaneRedisUrl: relay.url });
});
after(async () => {
  await relay.restore().catch(() => {});
  await env.close();
  await relay.close();
});

test('cached tokens survive a Redis outage; uncached ones fail; all recover', async () => {
  const s = await standardSetup(env, { enable_client_credentials: true });
  const dp = env.dataPlanes[0];
  const issue = async () => {
    const r = await dp.call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(r.status, 200, r.body);
    return r.json().access_token as string;
  };
  const use = (t: string) => dp.call('/api/x', { https: false, headers: { authorization: `Bearer ${t}` } });
  const seen = await issue();
  const unseen = await issue();
  assert.equal((await use(seen)).status, 200);

  await relay.cut();
  // Past the freshness window the data plane tries Redis, fails, and falls back to what it knew.
  await new Promise((r) => setTimeout(r, 10_500));
  assert.equal((await use(seen)).status, 200, 'validated before the outage');
  const failed = await use(unseen);
  assert.equal(failed.status, 503);
  assert.equal(failed.headers['retry-after'], '1');
  assert.deepEqual(failed.json(), { message: 'The token store is unreachable; try again shortly' });
  const issuing = await dp.call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
  assert.equal(issuing.status, 503);
  assert.equal(issuing.headers['cache-control'], 'no-store');
  assert.deepEqual(issuing.json(), { error: 'temporarily_unavailable', error_description: 'The token store is unreachable; try again shortly' });

  await relay.restore();
  const deadline = Date.now() + 15_000;
  while ((await use(unseen)).status !== 200) {
    assert.ok(Date.now() < deadline, 'recovered');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal((await use(seen)).status, 200);
  assert.equal((await use('unknown-token')).status, 401);
});

test('a revocation published while a data plane was disconnected is not missed (cache re-read on resubscribe)', async () => {
  const s = await standardSetup(env, { enable_client_credentials: true });
  const dp = env.dataPlanes[0];
  const r = await dp.call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
  const token = r.json().access_token as string;
  const use = () => dp.call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } });
  assert.equal((await use()).status, 200);
  const cachedAt = Date.now();

  await relay.cut();
  // Revoked while this data plane cannot hear it (as the admin API or another data plane would).
  const { TokenStore } = await import('../src/oauth2/tokens.ts');
  const other = new TokenStore(env.store);
  const record = await other.lookupAccess((await import('@gatehouse/core/crypto.ts')).sha256Hex(token));
  assert.ok(record);
  await other.revokeToken(record);
  await relay.restore();

  while ((await use()).status !== 401) {
    assert.ok(Date.now() - cachedAt < 9_000, 'refused before the cache entry would have gone stale anyway');
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('a data plane restarted while Redis is down serves its disk cache, the oauth2 plugin included', async () => {
  await standardSetup(env, { enable_client_credentials: true });
  const dir = tempDir('gatehouse-oauth2-restart-');
  const config = loadConfig({
    REDIS_URL: relay.url,
    GATEHOUSE_REDIS_PREFIX: env.prefix,
    GATEHOUSE_DATA_DIR: dir.path,
    GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0',
    GATEHOUSE_LOG_LEVEL: 'error',
  });
  try {
    const first = await startDataPlane({ config, logger: silent, pollIntervalMs: 200 });
    await first.close();
    await relay.cut();
    // Started with no Redis: it must listen and serve from the disk cache, not wait for Redis.
    const second = await Promise.race([
      startDataPlane({ config, logger: silent, pollIntervalMs: 200 }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the data plane waited for Redis')), 8000)),
    ]);
    try {
      assert.equal(second.configVersion?.version, JSON.parse((await env.store.get(SNAPSHOT_KEYS.latest))!).version);
      const port = second.addresses[0].port;
      const res = await request(port, '/api/x', { https: false });
      assert.equal(res.status, 401, 'the oauth2 plugin runs from the cached config');
    } finally {
      await relay.restore();
      await second.close();
    }
  } finally {
    await relay.restore().catch(() => {});
    dir.remove();
  }
});
