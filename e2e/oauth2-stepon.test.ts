// Kong's OAuth 2.0 blog tutorial ("Step On") on a split Gatehouse: one control plane and two data
// planes as separate processes (`node bin/gatehouse.js control-plane|data-plane`) sharing only
// Redis (and Postgres for the control plane), an HTTPS upstream that answers /stepcounts for the
// user named in X-Authenticated-Userid. The code is issued on one data plane and exchanged on the
// other; refresh, revocation and every other grant are exercised, each also with the control
// plane stopped.
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { generateSelfSigned } from '@gatehouse/core/tls.ts';
import { createTestDatabase, getFreePort, tempDir, testRedisPrefix, TEST_REDIS_URL, type TestDatabase } from '@gatehouse/core/testing.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { basic, request, type Res } from '../packages/plugins/test/oauth2-helpers.ts';
import { gatehouse as run, waitFor, type Proc } from './proxy-helpers.ts';



let testDb: TestDatabase;
let prefix: string;
let adminPort: number;
let cp: Proc | null = null;
const dps: { proc: Proc; http: number; https: number }[] = [];
const dirs: { path: string; remove(): void }[] = [];
let upstream: ReturnType<typeof createServer>;
let upstreamPort: number;
let probe: RedisStore;

const cpEnv = () => ({
  DATABASE_URL: testDb.url,
  REDIS_URL: TEST_REDIS_URL,
  GATEHOUSE_REDIS_PREFIX: prefix,
  GATEHOUSE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
  GATEHOUSE_DATA_DIR: dirs[0].path,
});

async function startCp() {
  cp = run('control-plane', cpEnv());
  await waitFor('admin API', async () => (await fetch(`http://127.0.0.1:${adminPort}/`)).ok, 30_000, [cp]);
}

async function api(method: string, path: string, form?: string) {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const dpCall = (i: number, path: string, options: Parameters<typeof request>[2] = {}): Promise<Res> =>
  request(options.https === false ? dps[i].http : dps[i].https, path, { https: options.https !== false, ...options, headers: { host: 'stepon.test', ...options.headers } });

let provisionKey: string;
let app: { client_id: string; client_secret: string };

before(async () => {
  testDb = await createTestDatabase();
  prefix = testRedisPrefix();
  probe = new RedisStore({ url: TEST_REDIS_URL, prefix });
  for (let i = 0; i < 3; i++) dirs.push(tempDir('gatehouse-e2e-'));

  // The "Step On" API: HTTPS, answers for whoever the gateway says is authenticated.
  const tls = await generateSelfSigned('stepon.local');
  upstream = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const user = req.headers['x-authenticated-userid'];
    res.writeHead(req.url?.startsWith('/stepcounts') && user ? 200 : 404, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        user,
        steps: user === 'clark' ? 10234 : 42,
        scope: req.headers['x-authenticated-scope'] ?? null,
        consumer: req.headers['x-consumer-username'] ?? null,
        consumer_id: req.headers['x-consumer-id'] ?? null,
        credential: req.headers['x-credential-identifier'] ?? null,
        authorization: req.headers.authorization ?? null,
      }),
    );
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as AddressInfo).port;

  adminPort = await getFreePort();
  await startCp();
  for (let i = 0; i < 2; i++) {
    const http = await getFreePort();
    const https = await getFreePort();
    const proc = run('data-plane', {
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${http}, 127.0.0.1:${https} ssl`,
      GATEHOUSE_DATA_DIR: dirs[i + 1].path,
      GATEHOUSE_WORKERS: '1',
    });
    dps.push({ proc, http, https });
  }

  // The tutorial's admin calls (form-encoded, as with curl).
  assert.equal((await api('POST', '/services', `name=stepon&url=https://127.0.0.1:${upstreamPort}`)).status, 201);
  assert.equal((await api('POST', '/services/stepon/routes', 'paths[]=/stepon')).status, 201);
  const plugin = await api(
    'POST',
    '/services/stepon/plugins',
    'name=oauth2&config.scopes=user_profile&config.scopes=biometric&config.scopes=step_counts' +
      '&config.enable_authorization_code=true&config.enable_client_credentials=true&config.enable_password_grant=true&config.enable_implicit_grant=true',
  );
  assert.equal(plugin.status, 201, JSON.stringify(plugin.body));
  provisionKey = plugin.body.config.provision_key;
  assert.equal((await api('POST', '/consumers', 'username=shoeflyshoe')).status, 201);
  const cred = await api('POST', '/consumers/shoeflyshoe/oauth2', 'name=Shoe%20Fly%20Shoe&redirect_uris[]=https://shoeflyshoe.test/callback');
  assert.equal(cred.status, 201, JSON.stringify(cred.body));
  app = cred.body;
  for (let i = 0; i < 2; i++) {
    await waitFor(`data plane ${i} serving the oauth2 route`, async () => (await dpCall(i, '/stepon/stepcounts', { https: false })).status === 401, 30_000, [dps[i].proc]);
  }
});

after(async () => {
  for (const d of dps) await d.proc.stop();
  await cp?.stop();
  await new Promise<void>((r) => upstream.close(() => r()));
  await probe.close();
  await testDb.drop();
  for (const d of dirs) d.remove();
});

function authorizeCode(i: number, extra: Record<string, string> = {}) {
  return dpCall(i, '/stepon/oauth2/authorize', {
    form: { client_id: app.client_id, response_type: 'code', scope: 'step_counts user_profile', provision_key: provisionKey, authenticated_userid: 'clark', state: 'tutorial', ...extra },
  });
}
function tokenOn(i: number, form: Record<string, string>) {
  return dpCall(i, '/stepon/oauth2/token', { form, headers: { authorization: basic(app.client_id, app.client_secret) } });
}
const stepcounts = (i: number, token: string) => dpCall(i, '/stepon/stepcounts', { https: false, headers: { authorization: `Bearer ${token}` } });

async function everyGrant(label: string) {
  // Authorization code: issued on data plane 0, exchanged on data plane 1.
  const auth = await authorizeCode(0);
  assert.equal(auth.status, 200, `${label}: ${auth.body}`);
  const redirect = new URL(auth.json().redirect_uri);
  assert.equal(redirect.origin + redirect.pathname, 'https://shoeflyshoe.test/callback');
  assert.equal(redirect.searchParams.get('state'), 'tutorial');
  const code = redirect.searchParams.get('code')!;
  const exchanged = await tokenOn(1, { grant_type: 'authorization_code', code });
  assert.equal(exchanged.status, 200, `${label}: ${exchanged.body}`);
  const { access_token, refresh_token } = exchanged.json();
  assert.equal((await tokenOn(0, { grant_type: 'authorization_code', code })).json().error_description, 'Invalid code', `${label}: code single-use across data planes`);
  // Replaying the code revoked what it produced (RFC 9700); take a fresh one for the rest.
  assert.equal((await stepcounts(0, access_token)).status, 401, `${label}: replay revoked the grant`);
  void refresh_token;

  const code2 = new URL((await authorizeCode(1)).json().redirect_uri).searchParams.get('code')!;
  const tokens = (await tokenOn(0, { grant_type: 'authorization_code', code: code2 })).json();
  for (const i of [0, 1]) {
    const res = await stepcounts(i, tokens.access_token);
    assert.equal(res.status, 200, `${label}: ${res.body}`);
    const body = res.json();
    assert.equal(body.user, 'clark');
    assert.equal(body.steps, 10234);
    assert.equal(body.scope, 'step_counts user_profile');
    assert.equal(body.consumer, 'shoeflyshoe');
    assert.equal(body.credential, app.client_id);
  }

  // Refresh on the other data plane: rotation; the old access token dies everywhere.
  const refreshed = await tokenOn(1, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  assert.equal(refreshed.status, 200, `${label}: ${refreshed.body}`);
  const second = refreshed.json();
  assert.notEqual(second.refresh_token, tokens.refresh_token);
  assert.equal((await stepcounts(0, tokens.access_token)).status, 401);
  assert.equal((await stepcounts(0, second.access_token)).status, 200);

  // Revocation (RFC 7009) on one data plane, effective on both.
  const revoked = await dpCall(1, '/stepon/oauth2/revoke', { form: { token: second.access_token }, headers: { authorization: basic(app.client_id, app.client_secret) } });
  assert.equal(revoked.status, 200);
  for (const i of [0, 1]) assert.equal((await stepcounts(i, second.access_token)).status, 401, `${label}: revoked on data plane ${i}`);

  // Client credentials, password and implicit grants.
  const cc = await tokenOn(0, { grant_type: 'client_credentials', scope: 'biometric' });
  assert.equal(cc.status, 200, `${label}: ${cc.body}`);
  assert.equal(cc.json().refresh_token, undefined);
  const ccUse = await dpCall(1, '/stepon/stepcounts', { https: false, headers: { authorization: `Bearer ${cc.json().access_token}` } });
  assert.equal(ccUse.status, 404, 'no user: the upstream has no step counts for a client-only token');
  assert.equal(ccUse.json().consumer, 'shoeflyshoe');
  const pw = await tokenOn(1, { grant_type: 'password', provision_key: provisionKey, authenticated_userid: 'lois', scope: 'user_profile' });
  assert.equal(pw.status, 200, `${label}: ${pw.body}`);
  assert.equal((await stepcounts(0, pw.json().access_token)).json().steps, 42);
  const implicit = await authorizeCode(0, { response_type: 'token' });
  assert.equal(implicit.status, 200);
  const fragment = new URLSearchParams(new URL(implicit.json().redirect_uri).hash.slice(1));
  assert.equal(fragment.get('token_type'), 'bearer');
  assert.equal((await stepcounts(1, fragment.get('access_token')!)).json().user, 'clark');
  return { ccToken: cc.json().access_token as string, pwToken: pw.json().access_token as string };
}

describe('Step On tutorial across a control plane and two data planes', () => {
  test('every grant with the control plane up; tokens reach Postgres; admin DELETE revokes on both data planes', async () => {
    const { pwToken } = await everyGrant('control plane up');
    const row = await waitFor('token row', async () => {
      const r = await api('GET', `/oauth2_tokens/${pwToken}`);
      return r.status === 200 ? r.body : null;
    });
    assert.equal(row.authenticated_userid, 'lois');
    assert.equal(row.access_token, null);
    assert.equal((await api('DELETE', `/oauth2_tokens/${pwToken}`)).status, 204);
    for (const i of [0, 1]) await waitFor('admin revocation', async () => (await stepcounts(i, pwToken)).status === 401, 2000);
  });

  test('every grant with the control plane stopped; Postgres catches up when it returns', async () => {
    await cp!.stop();
    cp = null;
    const { ccToken, pwToken } = await everyGrant('control plane down');
    await startCp();
    for (const t of [ccToken, pwToken]) {
      await waitFor('row after restart', async () => (await api('GET', `/oauth2_tokens/${t}`)).status === 200, 10_000);
    }
  });
});

describe('a data plane with several worker processes', () => {
  test('a revocation reaches every worker (each caches tokens on its own)', async () => {
    const http = await getFreePort();
    const https = await getFreePort();
    const dir = tempDir('gatehouse-e2e-');
    dirs.push(dir);
    const proc = run('data-plane', {
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${http}, 127.0.0.1:${https} ssl`,
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_WORKERS: '2',
    });
    try {
      const call = (path: string, o: Parameters<typeof request>[2] = {}) =>
        request(o.https === false ? http : https, path, { https: o.https !== false, ...o, headers: { host: 'stepon.test', ...o.headers } });
      await waitFor('multi-worker data plane', async () => (await call('/stepon/stepcounts', { https: false })).status === 401, 30_000, [proc]);
      const tok = await call('/stepon/oauth2/token', { form: { grant_type: 'password', provision_key: provisionKey, authenticated_userid: 'clark' }, headers: { authorization: basic(app.client_id, app.client_secret) } });
      assert.equal(tok.status, 200, tok.body);
      const token = tok.json().access_token;
      // Fresh connections spread over the workers; every one of them caches the token.
      for (let i = 0; i < 20; i++) assert.equal((await call('/stepon/stepcounts', { https: false, headers: { authorization: `Bearer ${token}` } })).status, 200);
      const revoked = await call('/stepon/oauth2/revoke', { form: { token }, headers: { authorization: basic(app.client_id, app.client_secret) } });
      assert.equal(revoked.status, 200);
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 20; i++) assert.equal((await call('/stepon/stepcounts', { https: false, headers: { authorization: `Bearer ${token}` } })).status, 401, `request ${i}`);
    } finally {
      await proc.stop();
    }
  });
});
