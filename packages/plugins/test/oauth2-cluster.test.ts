// The oauth2 plugin across the split: a real control plane (Postgres, admin API) and two real
// data planes sharing only Redis. Admin entities, stream → Postgres, revocation propagation
// (p99 over 50 revocations), issuance with the control plane down, restore after Redis loses keys.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '@gatehouse/core/config.ts';
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { createTestDatabase, tempDir, testRedisPrefix, TEST_REDIS_URL, type TestDatabase } from '@gatehouse/core/testing.ts';
import { startControlPlane, type ControlPlane } from '@gatehouse/control-plane';
import { cacheFile, startDataPlane } from '@gatehouse/data-plane';
import type { Oauth2DataPlaneHandler } from '../src/oauth2/handler.ts';
import { SNAPSHOT_KEYS } from '@gatehouse/core/snapshot.ts';
import { KEYS } from '../src/oauth2/tokens.ts';
import { basic, request, silent, startEchoUpstream, type TestDataPlane, type Upstream } from './oauth2-helpers.ts';

let testDb: TestDatabase;
let prefix: string;
let cp: ControlPlane;
let admin: string;
let upstream: Upstream;
const dps: TestDataPlane[] = [];
const dpDataDirs: string[] = [];
const dirs: { remove(): void }[] = [];
let probe: RedisStore;

function cpConfig() {
  const dir = tempDir('gatehouse-cp-');
  dirs.push(dir);
  return loadConfig({
    DATABASE_URL: testDb.url,
    REDIS_URL: TEST_REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0',
    GATEHOUSE_DATA_DIR: dir.path,
    GATEHOUSE_LOG_LEVEL: 'error',
    GATEHOUSE_NODE_ID: 'cp-oauth2-test',
  });
}

async function startCp() {
  cp = await startControlPlane({ config: cpConfig(), logger: silent, verifyIntervalMs: 500 });
  admin = cp.adminAddresses[0].url;
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${admin}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let credential: { id: string; client_id: string; client_secret: string };
let provisionKey: string;

before(async () => {
  testDb = await createTestDatabase();
  prefix = testRedisPrefix();
  probe = new RedisStore({ url: TEST_REDIS_URL, prefix });
  upstream = await startEchoUpstream();
  await startCp();
  for (let i = 0; i < 2; i++) {
    const dir = tempDir('gatehouse-dp-');
    dirs.push(dir);
    dpDataDirs.push(dir.path);
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl',
      GATEHOUSE_LOG_LEVEL: 'error',
    });
    const dp = await startDataPlane({ config, logger: silent, pollIntervalMs: 200 });
    const httpPort = dp.addresses.find((a) => !a.ssl)!.port;
    const httpsPort = dp.addresses.find((a) => a.ssl)!.port;
    dps.push({
      dp,
      httpPort,
      httpsPort,
      handler: () => dp.proxy.plugins.handler('oauth2') as Oauth2DataPlaneHandler,
      call: (path, o = {}) => request(o.https === false ? httpPort : httpsPort, path, { https: o.https !== false, ...o }),
    });
  }

  const svc = await api('POST', '/services', { name: 'stepon', url: `http://127.0.0.1:${upstream.port}` });
  assert.equal(svc.status, 201, JSON.stringify(svc.body));
  assert.equal((await api('POST', '/services/stepon/routes', { name: 'stepon', paths: ['/api'] })).status, 201);
  const plugin = await api('POST', '/services/stepon/plugins', {
    name: 'oauth2',
    config: { enable_client_credentials: true, enable_password_grant: true, enable_authorization_code: true, scopes: ['a', 'b'] },
  });
  assert.equal(plugin.status, 201, JSON.stringify(plugin.body));
  provisionKey = plugin.body.config.provision_key;
  assert.equal((await api('POST', '/consumers', { username: 'bob' })).status, 201);
  const cred = await api('POST', '/consumers/bob/oauth2', { name: 'app', redirect_uris: ['https://app.test/cb'] });
  assert.equal(cred.status, 201, JSON.stringify(cred.body));
  credential = cred.body;
  // Both data planes serve the configuration.
  for (const d of dps) {
    await waitFor('the token endpoint on each data plane', async () => (await token(d)).status === 200);
  }
});

after(async () => {
  for (const d of dps) await d.dp.close();
  await cp?.close();
  await upstream.close();
  await probe.close();
  await testDb.drop();
  for (const d of dirs) d.remove();
});

function token(d: TestDataPlane, params: Record<string, string> = {}) {
  return d.call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: credential.client_id, client_secret: credential.client_secret, ...params } });
}
async function newToken(d = dps[0], params: Record<string, string> = {}): Promise<string> {
  const res = await token(d, params);
  assert.equal(res.status, 200, res.body);
  return res.json().access_token;
}
const use = (d: TestDataPlane, t: string) => d.call('/api/x', { https: false, headers: { authorization: `Bearer ${t}` } });

describe('admin entities', () => {
  test('credential: the plaintext secret only in the write response; GET shows a hash; client_id endpoint key', async () => {
    assert.match(credential.client_secret, /^[A-Za-z0-9]{32}$/);
    assert.match(credential.client_id, /^[A-Za-z0-9]{32}$/);
    const got = await api('GET', `/oauth2/${credential.client_id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.id, credential.id);
    assert.notEqual(got.body.client_secret, credential.client_secret);
    assert.match(got.body.client_secret, /^\$sha256\$/);
    assert.equal(got.body.hash_secret, false);
    assert.equal(got.body.client_type, 'confidential');
    assert.deepEqual(got.body.consumer, { id: (await api('GET', '/consumers/bob')).body.id });
    const nested = await api('GET', `/consumers/bob/oauth2/${credential.id}`);
    assert.equal(nested.status, 200);
    const dbRow = await cp.db.prisma.oauth2Credential.findUnique({ where: { id: credential.id } });
    assert.ok(!JSON.stringify(dbRow).includes(credential.client_secret), 'no plaintext in Postgres');
    const pointer = JSON.parse((await probe.get(SNAPSHOT_KEYS.latest))!);
    const snapshot = (await probe.get(SNAPSHOT_KEYS.version(pointer.version)))!;
    assert.ok(snapshot.includes(credential.client_id), 'the credential is in the snapshot');
    assert.ok(!snapshot.includes(credential.client_secret), 'only its hash');
  });

  test('credential validation: name required, redirect_uris errors, consumer required, all-or-none secret rule', async () => {
    const noName = await api('POST', '/consumers/bob/oauth2', {});
    assert.equal(noName.status, 400);
    assert.equal(noName.body.message, 'schema violation (name: required field missing)');
    const uris = await api('POST', '/consumers/bob/oauth2', { name: 'x', redirect_uris: ['https://ok.test/', 'not-valid', 'https://x.test/#frag'] });
    assert.equal(uris.status, 400);
    assert.deepEqual(uris.body.fields, { redirect_uris: [null, "cannot parse 'not-valid'", "fragment not allowed in 'https://x.test/#frag'"] });
    const noConsumer = await api('POST', '/oauth2', { name: 'x' });
    assert.equal(noConsumer.status, 400);
    assert.equal(noConsumer.body.message, 'schema violation (consumer: required field missing)');
    const type = await api('POST', '/consumers/bob/oauth2', { name: 'x', client_type: 'other' });
    assert.deepEqual(type.body.fields, { client_type: 'expected one of: confidential, public' });
    const half = await api('PATCH', `/oauth2/${credential.id}`, { client_secret: 'new-secret' });
    assert.equal(half.status, 400);
    assert.deepEqual(half.body.fields, { '@entity': ["all or none of these fields must be set: 'hash_secret', 'client_secret'"] });
    const rename = await api('PATCH', `/oauth2/${credential.id}`, { name: 'renamed' });
    assert.equal(rename.status, 200);
    // The secret is untouched by an unrelated PATCH.
    await waitFor('renamed credential still authenticates', async () => (await token(dps[0])).status === 200);
  });

  test('the admin API registers only values the OAuth endpoints accept (client_id, client_secret, redirect_uris, provision_key, tokens)', async () => {
    const fields = async (path: string, body: unknown) => {
      const res = await api('POST', path, body);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      return res.body.fields;
    };
    assert.deepEqual(await fields('/consumers/bob/oauth2', { name: 'x', client_id: 'i'.repeat(256) }), { client_id: 'length must be at most 255' });
    assert.deepEqual(await fields('/consumers/bob/oauth2', { name: 'x', client_secret: 's'.repeat(256) }), { client_secret: 'length must be at most 255' });
    assert.deepEqual(await fields('/consumers/bob/oauth2', { name: 'x', redirect_uris: [`https://app.test/${'p'.repeat(2048)}`] }), {
      redirect_uris: ['length must be at most 2048'],
    });
    assert.deepEqual(await fields('/plugins', { name: 'oauth2', config: { enable_password_grant: true, provision_key: 'k'.repeat(256) } }), {
      config: { provision_key: 'length must be at most 255' },
    });
    assert.deepEqual(await fields('/oauth2_tokens', { credential: { id: credential.id }, expires_in: 60, access_token: 't'.repeat(1025) }), {
      access_token: 'length must be at most 1024',
    });
    // At the limits, a credential works on the data planes.
    const longest = { client_id: 'i'.repeat(255), client_secret: 's'.repeat(255) };
    const created = await api('POST', '/consumers/bob/oauth2', { name: 'longest', ...longest, redirect_uris: [`https://app.test/${'p'.repeat(2048 - 17)}`] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await waitFor('the longest credential on a data plane', async () => (await dps[1].call('/api/oauth2/token', { form: { grant_type: 'client_credentials', ...longest } })).status === 200);
  });

  test('hash_secret: bcrypt stored, secret shown once, works on the data planes; Kong PBKDF2 imports verify', async () => {
    const res = await api('POST', '/consumers/bob/oauth2', { name: 'hashed', hash_secret: true, client_secret: 'my-secret' });
    assert.equal(res.status, 201);
    assert.equal(res.body.client_secret, 'my-secret');
    const got = await api('GET', `/oauth2/${res.body.id}`);
    assert.match(got.body.client_secret, /^\$bcrypt-hmac-sha256\$2b\$10\$/, 'bcrypt of a pre-hash (secrets.ts)');
    const form = { grant_type: 'client_credentials', client_id: res.body.client_id, client_secret: 'my-secret' };
    await waitFor('hashed credential on dp', async () => (await dps[1].call('/api/oauth2/token', { form })).status === 200);
    const wrong = await dps[1].call('/api/oauth2/token', { form: { ...form, client_secret: 'nope' } });
    assert.equal(wrong.json().error, 'invalid_client');
    // Past bcrypt's 72 bytes the secret still counts, byte for byte.
    const long = await api('POST', '/consumers/bob/oauth2', { name: 'long', hash_secret: true, client_secret: `${'y'.repeat(72)}-tail` });
    assert.equal(long.status, 201);
    const lform = { grant_type: 'client_credentials', client_id: long.body.client_id, client_secret: `${'y'.repeat(72)}-tail` };
    await waitFor('long-secret credential on dp', async () => (await dps[0].call('/api/oauth2/token', { form: lform })).status === 200);
    assert.equal((await dps[0].call('/api/oauth2/token', { form: { ...lform, client_secret: `${'y'.repeat(72)}-fake` } })).json().error, 'invalid_client');
    // A plain bcrypt string (from an earlier version or another system) is stored as given and verifies.
    const bcrypt = (await import('bcrypt')).default;
    const plainBcrypt = await bcrypt.hash('old-secret', 4);
    const old = await api('POST', '/consumers/bob/oauth2', { name: 'old-bcrypt', hash_secret: true, client_secret: plainBcrypt });
    assert.equal(old.status, 201);
    assert.equal((await api('GET', `/oauth2/${old.body.id}`)).body.client_secret, plainBcrypt);
    const oform = { grant_type: 'client_credentials', client_id: old.body.client_id, client_secret: 'old-secret' };
    await waitFor('plain bcrypt credential on dp', async () => (await dps[1].call('/api/oauth2/token', { form: oform })).status === 200);
    // Kong's $pbkdf2-sha512$ PHC string (hash_secret=true) imported as is.
    const { pbkdf2Sync, randomBytes } = await import('node:crypto');
    const salt = randomBytes(16);
    const phc = `$pbkdf2-sha512$i=10000,l=32$${salt.toString('base64').replace(/=+$/, '')}$${pbkdf2Sync('kong-secret', salt, 10000, 32, 'sha512').toString('base64').replace(/=+$/, '')}`;
    const imported = await api('POST', '/consumers/bob/oauth2', { name: 'from-kong', hash_secret: true, client_secret: phc });
    assert.equal(imported.status, 201);
    const kform = { grant_type: 'client_credentials', client_id: imported.body.client_id, client_secret: 'kong-secret' };
    await waitFor('imported credential on dp', async () => (await dps[0].call('/api/oauth2/token', { form: kform })).status === 200);
  });

  test("changing a credential's client_id: new tokens under the new id, old tokens refused", async () => {
    const cred = (await api('POST', '/consumers/bob/oauth2', { name: 'renumbered' })).body;
    const form = (clientId: string) => ({ form: { grant_type: 'client_credentials', client_id: clientId, client_secret: cred.client_secret } });
    let old = '';
    await waitFor('credential on dp', async () => {
      const r = await dps[0].call('/api/oauth2/token', form(cred.client_id));
      if (r.status === 200) old = r.json().access_token;
      return r.status === 200;
    });
    assert.equal((await api('PATCH', `/oauth2/${cred.id}`, { client_id: 'renumbered-client' })).status, 200);
    await waitFor('new client_id works on both data planes', async () =>
      (await dps[0].call('/api/oauth2/token', form('renumbered-client'))).status === 200 && (await dps[1].call('/api/oauth2/token', form('renumbered-client'))).status === 200,
    );
    for (const d of dps) assert.equal((await use(d, old)).status, 401);
  });

  test("changing a credential's client_id deletes its tokens and codes, so a restore from Postgres does not bring them back", async () => {
    const cred = (await api('POST', '/consumers/bob/oauth2', { name: 'renamed-restore', redirect_uris: ['https://app.test/cb'] })).body;
    const password = (clientId: string) =>
      dps[0].call('/api/oauth2/token', { form: { grant_type: 'password', client_id: clientId, client_secret: cred.client_secret, provision_key: provisionKey, authenticated_userid: 'u' } });
    let issued: { access_token: string; refresh_token: string } | null = null;
    await waitFor('credential on dp', async () => {
      const r = await password(cred.client_id);
      if (r.status === 200) issued = r.json();
      return r.status === 200;
    });
    const { access_token, refresh_token } = issued!;
    const auth = await dps[0].call('/api/oauth2/authorize', { form: { provision_key: provisionKey, authenticated_userid: 'u', client_id: cred.client_id, response_type: 'code' } });
    const code = new URL(auth.json().redirect_uri).searchParams.get('code')!;
    const rows = () => Promise.all([cp.db.prisma.oauth2Token.count({ where: { credentialId: cred.id } }), cp.db.prisma.oauth2AuthorizationCode.count({ where: { credentialId: cred.id } })]);
    await waitFor('token and code persisted', async () => (await rows()).join() === '1,1');

    assert.equal((await api('PATCH', `/oauth2/${cred.id}`, { client_id: 'renamed-restore-client' })).status, 200);
    assert.deepEqual(await rows(), [0, 0], 'rows deleted with the change');
    for (const key of [KEYS.access(sha256Hex(access_token)), KEYS.refresh(sha256Hex(refresh_token)), KEYS.code(sha256Hex(code))]) {
      assert.equal(await probe.exists(key), false, `${key} deleted from Redis`);
    }
    // Redis loses its data: the control plane restores what Postgres holds.
    await probe.del(KEYS.sentinel);
    await waitFor('sentinel restored', () => probe.exists(KEYS.sentinel), 5000);
    assert.equal(await probe.exists(KEYS.access(sha256Hex(access_token))), false, 'not restored');
    const renamed = { client_id: 'renamed-restore-client', client_secret: cred.client_secret };
    await waitFor('new client_id on both data planes', async () => {
      for (const d of dps) if ((await d.call('/api/oauth2/token', { form: { grant_type: 'client_credentials', ...renamed } })).status !== 200) return false;
      return true;
    });
    for (const d of dps) assert.equal((await use(d, access_token)).status, 401);
    const refreshed = await dps[1].call('/api/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token, ...renamed } });
    assert.equal(refreshed.json().error_description, 'Invalid refresh_token');
    const redeemed = await dps[1].call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, ...renamed } });
    assert.equal(redeemed.json().error_description, 'Invalid code');
  });

  test('oauth2_tokens: validation, POST shows the plaintext once, PUT by value, PATCH re-keys, DELETE revokes', async () => {
    const empty = await api('POST', '/oauth2_tokens', {});
    assert.equal(empty.status, 400);
    assert.deepEqual(empty.body.fields, { expires_in: 'required field missing', credential: 'required field missing' });
    const frac = await api('POST', '/oauth2_tokens', { credential: { id: credential.id }, expires_in: 1.5 });
    assert.deepEqual(frac.body.fields, { expires_in: 'expected an integer' });

    const svc = (await api('GET', '/services/stepon')).body;
    const created = await api('POST', '/oauth2_tokens', { credential: { id: credential.id }, service: { id: svc.id }, expires_in: 3600, scope: 'a' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const plain = created.body.access_token;
    assert.match(plain, /^[A-Za-z0-9]{32}$/);
    assert.equal(created.body.token_type, 'bearer');
    const listed = await api('GET', `/oauth2_tokens/${created.body.id}`);
    assert.equal(listed.body.access_token, null, 'never shown again');
    assert.equal((await api('GET', `/oauth2_tokens/${plain}`)).body.id, created.body.id, 'looked up by hash');
    const up = await use(dps[1], plain);
    assert.equal(up.status, 200);
    assert.equal(up.json().headers['x-authenticated-scope'], 'a');

    const put = await api('PUT', '/oauth2_tokens/foobar', { credential: { id: credential.id }, service: { id: svc.id }, expires_in: 0 });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.access_token, 'foobar');
    assert.equal((await use(dps[0], 'foobar')).status, 200);

    const patched = await api('PATCH', `/oauth2_tokens/${created.body.id}`, { access_token: 'rekeyed-token' });
    assert.equal(patched.status, 200);
    assert.equal((await use(dps[1], 'rekeyed-token')).status, 200);
    assert.equal((await use(dps[1], plain)).status, 401);

    // Kong's `ttl`: the token disappears after that many seconds, whatever expires_in says.
    const short = await api('POST', '/oauth2_tokens', { credential: { id: credential.id }, service: { id: svc.id }, expires_in: 3600, ttl: 3 });
    assert.equal(short.status, 201, JSON.stringify(short.body));
    assert.equal((await use(dps[0], short.body.access_token)).status, 200);
    await new Promise((r) => setTimeout(r, 4100));
    for (const d of dps) assert.equal((await use(d, short.body.access_token)).status, 401, 'also where it was cached');

    assert.equal((await api('DELETE', '/oauth2_tokens/foobar')).status, 204);
    assert.equal((await use(dps[0], 'foobar')).status, 401);
    assert.equal((await api('GET', '/oauth2_tokens/foobar')).status, 404);
  });
});

describe('across the split', () => {
  test('a token issued on a data plane is in Postgres (GET /oauth2_tokens) within a second, hash only', async () => {
    const t = await newToken(dps[0], { scope: 'b' });
    const start = Date.now();
    const row = await waitFor('token row', async () => {
      const r = await api('GET', `/oauth2_tokens/${t}`);
      return r.status === 200 ? r.body : null;
    }, 3000);
    assert.ok(Date.now() - start < 1000, `took ${Date.now() - start} ms`);
    assert.equal(row.scope, 'b');
    assert.equal(row.access_token, null);
    assert.equal(row.credential.id, credential.id);
    const list = await api('GET', '/oauth2_tokens');
    assert.ok(list.body.data.some((x: { id: string }) => x.id === row.id));
    const dbRow = await cp.db.prisma.oauth2Token.findUnique({ where: { id: row.id } });
    assert.equal(dbRow!.accessTokenHash, sha256Hex(t));
  });

  test('code issued on one data plane, exchanged on the other', async () => {
    const a = await dps[0].call('/api/oauth2/authorize', { form: { provision_key: provisionKey, authenticated_userid: 'clark', client_id: credential.client_id, response_type: 'code', scope: 'a b' } });
    assert.equal(a.status, 200, a.body);
    const code = new URL(a.json().redirect_uri).searchParams.get('code')!;
    const t = await dps[1].call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: credential.client_id, client_secret: credential.client_secret } });
    assert.equal(t.status, 200, t.body);
    const up = await use(dps[0], t.json().access_token);
    assert.equal(up.json().headers['x-authenticated-userid'], 'clark');
  });

  test('the provision_key reaches the data planes as its SHA-256 only (Redis, disk cache); the admin API shows it; its flows work', async () => {
    const plugin = (await api('GET', '/services/stepon/plugins')).body.data.find((p: { name: string }) => p.name === 'oauth2');
    assert.equal(plugin.config.provision_key, provisionKey, 'shown to the admin');
    const pointer = JSON.parse((await probe.get(SNAPSHOT_KEYS.latest))!);
    const snapshot = (await probe.get(SNAPSHOT_KEYS.version(pointer.version)))!;
    assert.ok(!snapshot.includes(provisionKey), 'no plaintext in the snapshot in Redis');
    const published = JSON.parse(snapshot).plugins.find((p: { id: string }) => p.id === plugin.id);
    assert.equal(published.config.provision_key, `$sha256$${sha256Hex(provisionKey)}`);
    for (const dir of dpDataDirs) {
      const cached = await waitFor('disk cache of the latest snapshot', async () => {
        const text = readFileSync(cacheFile(dir), 'utf8');
        return JSON.parse(text).version === pointer.version ? text : null;
      });
      assert.ok(!cached.includes(provisionKey), 'no plaintext in the disk cache');
    }

    const client = { client_id: credential.client_id, client_secret: credential.client_secret };
    const password = await dps[0].call('/api/oauth2/token', { form: { grant_type: 'password', provision_key: provisionKey, authenticated_userid: 'lois', ...client } });
    assert.equal(password.status, 200, password.body);
    const wrongKey = await dps[0].call('/api/oauth2/token', { form: { grant_type: 'password', provision_key: `${provisionKey}x`, authenticated_userid: 'lois', ...client } });
    assert.deepEqual(wrongKey.json(), { error: 'invalid_provision_key', error_description: 'Invalid provision_key' });
    // The hash itself is no key.
    const hashAsKey = await dps[1].call('/api/oauth2/authorize', {
      form: { provision_key: published.config.provision_key, authenticated_userid: 'lois', client_id: credential.client_id, response_type: 'code' },
    });
    assert.equal(hashAsKey.json().error, 'invalid_provision_key');
    const authorized = await dps[1].call('/api/oauth2/authorize', { form: { provision_key: provisionKey, authenticated_userid: 'lois', client_id: credential.client_id, response_type: 'code' } });
    assert.equal(authorized.status, 200, authorized.body);
    const code = new URL(authorized.json().redirect_uri).searchParams.get('code')!;
    const redeemed = await dps[0].call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, ...client } });
    assert.equal(redeemed.status, 200, redeemed.body);
    assert.equal((await use(dps[1], redeemed.json().access_token)).json().headers['x-authenticated-userid'], 'lois');
  });

  test('one code redeemed concurrently on both data planes: exactly one success', async () => {
    const a = await dps[1].call('/api/oauth2/authorize', { form: { provision_key: provisionKey, authenticated_userid: 'clark', client_id: credential.client_id, response_type: 'code' } });
    const code = new URL(a.json().redirect_uri).searchParams.get('code')!;
    const form = { grant_type: 'authorization_code', code, client_id: credential.client_id, client_secret: credential.client_secret };
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => dps[i % 2].call('/api/oauth2/token', { form })));
    assert.equal(results.filter((r) => r.status === 200).length, 1, results.map((r) => r.status).join(','));
    assert.ok(results.filter((r) => r.status !== 200).every((r) => r.json().error_description === 'Invalid code'));
  });

  test('revocation reaches every data plane within 100 ms (p99 over 50, admin DELETE and RFC 7009)', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 50; i++) tokens.push(await newToken(dps[i % 2]));
    // Cached on both data planes.
    for (const t of tokens) for (const d of dps) assert.equal((await use(d, t)).status, 200);
    await waitFor('tokens persisted', async () => (await cp.db.prisma.oauth2Token.count({ where: { accessTokenHash: { in: tokens.map(sha256Hex) } } })) === 50);

    const seen = new Map<string, number[]>();
    for (const d of dps) {
      d.handler().tokens.onRevocation = (m) => {
        const t = performance.now();
        for (const h of m.a ?? []) seen.set(h, [...(seen.get(h) ?? []), t]);
      };
    }
    const latencies: number[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      const h = sha256Hex(t);
      seen.delete(h);
      const start = performance.now();
      if (i % 2 === 0) {
        assert.equal((await api('DELETE', `/oauth2_tokens/${t}`)).status, 204);
      } else {
        const r = await dps[0].call('/api/oauth2/revoke', { form: { token: t }, headers: { authorization: basic(credential.client_id, credential.client_secret) } });
        assert.equal(r.status, 200);
      }
      await waitFor('revocation on both data planes', async () => (seen.get(h)?.length ?? 0) >= 2, 2000);
      latencies.push(Math.max(...seen.get(h)!) - start);
      for (const d of dps) assert.equal((await use(d, t)).status, 401, `token ${i} still accepted`);
    }
    for (const d of dps) d.handler().tokens.onRevocation = null;
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1];
    console.log(`top: ${latencies.slice(-5).map((x) => x.toFixed(1)).join(" ")}`);
    console.log(`revocation propagation over ${latencies.length}: p50 ${latencies[25].toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
    // The target is 100 ms (met with margin when the machine is not saturated: see the bench case
    // `npm run bench`); this process also runs the control plane and both data planes, and other
    // test files run beside it, so the assertion leaves headroom for a loaded 2-core CI machine.
    assert.ok(p99 < 250, `p99 ${p99} ms`);
    await waitFor('rows deleted', async () => (await cp.db.prisma.oauth2Token.count({ where: { accessTokenHash: { in: tokens.map(sha256Hex) } } })) === 0);
  });

  test('deleting a credential revokes its cached tokens on every data plane before the next snapshot', async () => {
    const cred = (await api('POST', '/consumers/bob/oauth2', { name: 'doomed' })).body;
    const form = { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret };
    const res = await waitFor('doomed on dp', async () => {
      const r = await dps[0].call('/api/oauth2/token', { form });
      return r.status === 200 ? r : null;
    });
    const t = res.json().access_token;
    await waitFor('doomed works on dp1', async () => (await use(dps[1], t)).status === 200);
    assert.equal((await api('DELETE', `/oauth2/${cred.id}`)).status, 204);
    await waitFor('credential revocation', async () => (await use(dps[0], t)).status === 401 && (await use(dps[1], t)).status === 401, 1000);
  });

  test('deleting a consumer revokes its tokens on every data plane (through the next snapshot)', async () => {
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const name = `gone-${i}`;
      assert.equal((await api('POST', '/consumers', { username: name })).status, 201);
      const cred = (await api('POST', `/consumers/${name}/oauth2`, { name: 'app' })).body;
      const form = { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret };
      let t = '';
      await waitFor('consumer credential on both data planes', async () => {
        const r = await dps[i % 2].call('/api/oauth2/token', { form });
        if (r.status !== 200) return false;
        t = r.json().access_token;
        return (await use(dps[0], t)).status === 200 && (await use(dps[1], t)).status === 200;
      });
      const consumerId = cred.consumer.id;
      const seen: number[] = [];
      for (const d of dps) {
        d.handler().tokens.onRevocation = (m) => {
          if (m.u?.includes(consumerId)) seen.push(performance.now());
        };
      }
      const start = performance.now();
      assert.equal((await api('DELETE', `/consumers/${name}`)).status, 204);
      await waitFor('consumer revocation on both data planes', async () => seen.length >= 2, 3000);
      latencies.push(Math.max(...seen) - start);
      for (const d of dps) assert.equal((await use(d, t)).status, 401);
    }
    for (const d of dps) d.handler().tokens.onRevocation = null;
    latencies.sort((a, b) => a - b);
    console.log(`consumer deletion → revoked on both data planes: p50 ${latencies[5].toFixed(1)} ms, max ${latencies[9].toFixed(1)} ms`);
    assert.ok(latencies[9] < 250, `max ${latencies[9]} ms`);
  });

  test('issuance works with the control plane down; the stream catches up when it returns', async () => {
    await cp.close();
    const t = await newToken(dps[1], { scope: 'a' });
    assert.equal((await use(dps[0], t)).status, 200);
    await startCp();
    const row = await waitFor('row after restart', async () => {
      const r = await api('GET', `/oauth2_tokens/${t}`);
      return r.status === 200 ? r.body : null;
    });
    assert.equal(row.scope, 'a');
  });

  test('Redis losing the keys: the control plane restores live tokens from Postgres', async () => {
    const t = await newToken(dps[0]);
    await waitFor('persisted', async () => (await api('GET', `/oauth2_tokens/${t}`)).status === 200);
    // Simulate data loss for this token and the sentinel (never a FLUSH: other tests share Redis).
    await probe.del(KEYS.access(sha256Hex(t)), KEYS.sentinel);
    // Gone from Redis (never cached on this data plane), and Redis not restored yet: the data
    // plane cannot tell, so the client is told to retry rather than that its token is invalid.
    const unrestored = await use(dps[1], t);
    assert.equal(unrestored.status, 503, unrestored.body);
    assert.equal(unrestored.json().error, 'temporarily_unavailable');
    await waitFor('sentinel restored', () => probe.exists(KEYS.sentinel), 5000);
    assert.equal((await use(dps[1], t)).status, 200, 'restored');
  });
});
