// Redis restarting empty under a running data plane: until the control plane has written the
// live tokens back from Postgres (and set the sentinel), a token that is not found cannot be
// told invalid. It is answered 503 temporarily_unavailable, never 401, so that clients keep it;
// tokens in the data plane's cache keep working. Once restored, unknown tokens are 401 again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { loadConfig } from '@gatehouse/core/config.ts';
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { createTestDatabase, tempDir, testRedisPrefix, TEST_REDIS_URL, type TestDatabase } from '@gatehouse/core/testing.ts';
import { startControlPlane, type ControlPlane } from '@gatehouse/control-plane';
import { startDataPlane, type DataPlane } from '@gatehouse/data-plane';
import { KEYS } from '../src/oauth2/tokens.ts';
import { request, silent, startEchoUpstream, startRedisRelay, type Relay, type Upstream } from './oauth2-helpers.ts';

let testDb: TestDatabase;
const prefix = testRedisPrefix();
let relay: Relay;
let probe: RedisStore;
let pubsub: Redis;
let upstream: Upstream;
let cp: ControlPlane | null = null;
let dp: DataPlane;
const dirs: { path: string; remove(): void }[] = [];

async function startCp() {
  const dir = tempDir('gatehouse-cp-');
  dirs.push(dir);
  const config = loadConfig({
    DATABASE_URL: testDb.url,
    REDIS_URL: TEST_REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0',
    GATEHOUSE_DATA_DIR: dir.path,
    GATEHOUSE_LOG_LEVEL: 'error',
  });
  cp = await startControlPlane({ config, logger: silent, verifyIntervalMs: 500 });
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${cp!.adminAddresses[0].url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitFor(what: string, fn: () => Promise<unknown>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const httpsPort = () => dp.addresses.find((a) => a.ssl)!.port;
const httpPort = () => dp.addresses.find((a) => !a.ssl)!.port;
const use = (token: string) => request(httpPort(), '/api/x', { headers: { authorization: `Bearer ${token}` } });
const oauth = (endpoint: string, form: Record<string, string>) => request(httpsPort(), `/api/oauth2/${endpoint}`, { https: true, form });

let client: { client_id: string; client_secret: string };
let provisionKey: string;

before(async () => {
  testDb = await createTestDatabase();
  relay = await startRedisRelay();
  probe = new RedisStore({ url: TEST_REDIS_URL, prefix });
  pubsub = new Redis(TEST_REDIS_URL);
  upstream = await startEchoUpstream();
  await startCp();
  const dir = tempDir('gatehouse-dp-');
  dirs.push(dir);
  // The data plane reaches Redis through the relay, so that Redis can "restart" under it.
  const config = loadConfig({
    REDIS_URL: relay.url,
    GATEHOUSE_REDIS_PREFIX: prefix,
    GATEHOUSE_DATA_DIR: dir.path,
    GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl',
    GATEHOUSE_LOG_LEVEL: 'error',
  });
  dp = await startDataPlane({ config, logger: silent, pollIntervalMs: 200 });
  assert.equal((await api('POST', '/services', { name: 'svc', url: `http://127.0.0.1:${upstream.port}` })).status, 201);
  assert.equal((await api('POST', '/services/svc/routes', { paths: ['/api'] })).status, 201);
  const plugin = await api('POST', '/services/svc/plugins', { name: 'oauth2', config: { enable_client_credentials: true, enable_password_grant: true } });
  assert.equal(plugin.status, 201, JSON.stringify(plugin.body));
  provisionKey = plugin.body.config.provision_key;
  assert.equal((await api('POST', '/consumers', { username: 'bob' })).status, 201);
  client = (await api('POST', '/consumers/bob/oauth2', { name: 'app', redirect_uris: ['https://app.test/cb'] })).body;
  // The echo upstream answers 200 too until the snapshot with the plugin arrives: a token says it has.
  await waitFor('the token endpoint on the data plane', async () => {
    const r = await oauth('token', { grant_type: 'client_credentials', ...client });
    return r.status === 200 && typeof r.json().access_token === 'string';
  });
});

after(async () => {
  await dp.close();
  await cp?.close();
  await relay.close();
  await upstream.close();
  await probe.close();
  pubsub.disconnect();
  await testDb.drop();
  for (const d of dirs) d.remove();
});

async function issue(): Promise<{ access_token: string; refresh_token: string }> {
  const res = await oauth('token', { grant_type: 'password', provision_key: provisionKey, authenticated_userid: 'lois', ...client });
  assert.equal(res.status, 200, res.body);
  return res.json();
}

test('Redis restarted empty: unknown tokens are 503 temporarily_unavailable until restored, cached ones keep working; then 401 as before', async () => {
  const cached = await issue();
  const uncached = await issue();
  assert.equal((await use(cached.access_token)).status, 200);
  const hashes = [cached.access_token, uncached.access_token].map(sha256Hex);
  await waitFor('tokens persisted to Postgres', async () => (await cp!.db.prisma.oauth2Token.count({ where: { accessTokenHash: { in: hashes } } })) === 2);

  // The control plane is held back, so the window before the restore stays open for the test.
  await cp!.close();
  cp = null;
  // Redis "restarts": connections drop, and it comes back without this cluster's keys.
  const subscribers = async () => Number(((await pubsub.pubsub('NUMSUB', `${prefix}${KEYS.channel}`)) as [string, number])[1]);
  await relay.cut();
  await waitFor('the data plane disconnected', async () => (await subscribers()) === 0);
  for (const key of await probe.keysWithPrefix('')) await probe.del(key);
  await relay.restore();
  await waitFor('the data plane subscribed again', async () => (await subscribers()) === 1 && (await dp.store.ping()));

  const unknown = await use(uncached.access_token);
  assert.equal(unknown.status, 503, unknown.body);
  assert.deepEqual(unknown.json(), { error: 'temporarily_unavailable', error_description: 'The token store is being restored; try again shortly' });
  assert.equal(unknown.headers['retry-after'], '1');
  assert.equal(
    unknown.headers['www-authenticate'],
    'Bearer error="temporarily_unavailable", error_description="The token store is being restored; try again shortly"',
  );
  assert.equal((await use('never-issued')).status, 503, 'nothing can be told invalid yet');
  const stillCached = await use(cached.access_token);
  assert.equal(stillCached.status, 200, 'validated before the restart: kept while the store is restored');
  assert.equal(stillCached.json().headers['x-authenticated-userid'], 'lois');

  // The endpoints: nothing a client must throw away either.
  const expected = { error: 'temporarily_unavailable', error_description: 'The token store is being restored; try again shortly' };
  const refreshed = await oauth('token', { grant_type: 'refresh_token', refresh_token: uncached.refresh_token, ...client });
  assert.equal(refreshed.status, 503, refreshed.body);
  assert.deepEqual(refreshed.json(), expected);
  for (const endpoint of ['introspect', 'revoke']) {
    const res = await oauth(endpoint, { token: uncached.access_token, ...client });
    assert.equal(res.status, 503, `${endpoint}: ${res.body}`);
    assert.deepEqual(res.json(), expected);
    assert.equal(res.headers['retry-after'], '1');
  }
  // Issuance goes on: a token issued now is in Redis and works.
  const fresh = await issue();
  assert.equal((await use(fresh.access_token)).status, 200);

  await startCp();
  await waitFor('the sentinel', () => probe.exists(KEYS.sentinel));
  assert.equal((await use(uncached.access_token)).status, 200, 'restored from Postgres');
  const invalid = await use('never-issued');
  assert.equal(invalid.status, 401);
  assert.equal(invalid.json().error, 'invalid_token');
  assert.equal((await use(cached.access_token)).status, 200);
  const refreshedNow = await oauth('token', { grant_type: 'refresh_token', refresh_token: uncached.refresh_token, ...client });
  assert.equal(refreshedNow.status, 200, refreshedNow.body);
  const unknownRefresh = await oauth('token', { grant_type: 'refresh_token', refresh_token: 'never-issued', ...client });
  assert.equal(unknownRefresh.json().error_description, 'Invalid refresh_token');
});
