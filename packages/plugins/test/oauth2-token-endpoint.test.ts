// Kong's /oauth2/token and /oauth2/authorize behaviour (kong.md §b.4–§b.9) through a real data
// plane over HTTPS, plus the RFC 9700 rules Gatehouse adds (single-use codes under concurrency,
// replay revokes the grant, refresh rotation with reuse detection, PKCE downgrade).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcrypt';
import { randomAlnum, sha256Base64Url } from '@gatehouse/core/crypto.ts';
import { basic, makeConsumer, makeCredential, makeOauth2Plugin, makeRoute, makeService, standardSetup, startEnv, type Env, type TestCredential } from './oauth2-helpers.ts';

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());

const dp = () => env.dataPlanes[0];
const ALNUM32 = /^[A-Za-z0-9]{32}$/;

function assertNoStore(res: { headers: Record<string, unknown> }) {
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.equal(res.headers['pragma'], 'no-cache');
}

async function authorize(params: Record<string, string>, path = '/api/oauth2/authorize') {
  return dp().call(path, { form: params });
}

function codeFrom(redirect: string): string {
  const code = new URL(redirect).searchParams.get('code');
  assert.ok(code, `no code in ${redirect}`);
  return code;
}

async function resource(token: string) {
  return dp().call('/api/resource', { https: false, headers: { authorization: `Bearer ${token}` } });
}

describe('endpoint detection, method and HTTPS rules', () => {
  let setup: Awaited<ReturnType<typeof standardSetup>>;
  before(async () => {
    setup = await standardSetup(env, { enable_client_credentials: true, enable_authorization_code: true });
  });

  test('only POST: 405 invalid_method with WWW-Authenticate, for both endpoints and any prefix', async () => {
    const res = await dp().call('/api/oauth2/token');
    assert.equal(res.status, 405);
    assert.deepEqual(res.json(), { error: 'invalid_method', error_description: 'The HTTP method GET is invalid for the token endpoint' });
    assert.equal(res.headers['www-authenticate'], 'Bearer error="invalid_method", error_description="The HTTP method GET is invalid for the token endpoint"');
    const a = await dp().call('/api/some/deeper/oauth2/authorize/', { method: 'PUT', body: '' });
    assert.equal(a.status, 405);
    assert.equal(a.json().error_description, 'The HTTP method PUT is invalid for the authorization endpoint');
  });

  test('plain HTTP is refused with access_denied (and no-store headers)', async () => {
    const res = await dp().call('/api/oauth2/token', { https: false, form: { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json(), { error: 'access_denied', error_description: 'You must use HTTPS' });
    assertNoStore(res);
  });

  test('X-Forwarded-Proto is ignored from untrusted peers even with accept_http_if_already_terminated', async () => {
    const local = await startEnv({ trustedIps: '' });
    try {
      const s = await standardSetup(local, { enable_client_credentials: true, accept_http_if_already_terminated: true });
      const params = { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret };
      const res = await local.dataPlanes[0].call('/api/oauth2/token', { https: false, form: params, headers: { 'x-forwarded-proto': 'https' } });
      assert.equal(res.status, 400);
      assert.equal(res.json().error_description, 'You must use HTTPS');
    } finally {
      await local.close();
    }
  });

  test('trusted peer: X-Forwarded-Proto https accepted only with the flag; several values refused', async () => {
    const local = await startEnv({ trustedIps: '127.0.0.1' });
    try {
      const s = await standardSetup(local, { enable_client_credentials: true, accept_http_if_already_terminated: true });
      const params = { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret };
      const ok = await local.dataPlanes[0].call('/api/oauth2/token', { https: false, form: params, headers: { 'x-forwarded-proto': 'HTTPS' } });
      assert.equal(ok.status, 200, ok.body);
      const two = await local.dataPlanes[0].call('/api/oauth2/token', { https: false, form: params, headers: { 'x-forwarded-proto': ['https', 'http'] } });
      assert.equal(two.status, 400);
      assert.deepEqual(two.json(), { error: 'access_denied', error_description: 'Only one X-Forwarded-Proto header allowed' });
      // Without the flag a trusted X-Forwarded-Proto does not count.
      const s2 = await standardSetup(local, { enable_client_credentials: true });
      const p2 = { grant_type: 'client_credentials', client_id: s2.credential.client_id, client_secret: s2.credential.plain_secret };
      const no = await local.dataPlanes[0].call('/api/oauth2/token', { https: false, form: p2, headers: { 'x-forwarded-proto': 'https' } });
      assert.equal(no.status, 400);
      assert.equal(no.json().error, 'access_denied');
    } finally {
      await local.close();
    }
  });
});

describe('token endpoint: client authentication and grant types', () => {
  let setup: Awaited<ReturnType<typeof standardSetup>>;
  let hashed: TestCredential;
  let pub: TestCredential;
  let noRedirect: TestCredential;
  before(async () => {
    const service = makeService(env.upstream.port);
    const route = makeRoute(['/api'], service);
    const plugin = makeOauth2Plugin(
      { enable_client_credentials: true, enable_password_grant: true, enable_authorization_code: true, scopes: ['email', 'profile'] },
      { service: { id: service.id } },
    );
    const consumer = makeConsumer('bob', 'bob-custom');
    const credential = await makeCredential(consumer);
    hashed = await makeCredential(consumer, { hash_secret: true, name: 'hashed' });
    pub = await makeCredential(consumer, { client_type: 'public', name: 'spa' });
    noRedirect = await makeCredential(consumer, { redirect_uris: null, name: 'machine' });
    const content = { services: [service], routes: [route], plugins: [plugin], consumers: [consumer], credentials: { oauth2_credentials: [credential, hashed, pub, noRedirect] } };
    await env.publish(content);
    setup = { service, route, plugin, consumer, credential, content, provisionKey: plugin.config.provision_key as string };
  });

  test('client_credentials with the secret in the body, form-encoded: Kong response shape', async () => {
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret, scope: 'email  profile', state: 'st1' } });
    assert.equal(res.status, 200, res.body);
    const body = res.json();
    assert.match(body.access_token, ALNUM32);
    assert.equal(body.token_type, 'bearer');
    assert.equal(body.expires_in, 7200);
    assert.equal(body.refresh_token, undefined, 'no refresh token for client_credentials');
    assert.equal(body.state, 'st1');
    assertNoStore(res);
    const up = await resource(body.access_token);
    assert.equal(up.status, 200);
    assert.equal(up.json().headers['x-authenticated-scope'], 'email profile', 'scope re-joined with single spaces');
  });

  test('parameters from JSON, multipart and the query string (merged, body wins)', async () => {
    const json = await dp().call('/api/oauth2/token', { json: { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret } });
    assert.equal(json.status, 200, json.body);
    assert.match(json.body, /^\{"token_type":"bearer","access_token":"[A-Za-z0-9]{32}","expires_in":7200\}$/, 'Kong key order');
    const boundary = 'XyZ123';
    const parts = { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret };
    const multipart =
      Object.entries(parts).map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + `--${boundary}--\r\n`;
    const mp = await dp().call('/api/oauth2/token', { method: 'POST', body: multipart, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    assert.equal(mp.status, 200, mp.body);
    // Client credentials never in the query string (RFC 6749 §2.3.1; see the client authentication tests).
    const q = await dp().call('/api/oauth2/token?grant_type=password&scope=email', {
      form: { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret },
    });
    assert.equal(q.status, 200, q.body);
    assert.equal(q.json().refresh_token, undefined, 'the body grant_type won');
    assert.equal((await resource(q.json().access_token)).json().headers['x-authenticated-scope'], 'email', 'the query scope was read');
  });

  test('Basic authentication; a bad secret in the header is 401 with WWW-Authenticate, in the body 400', async () => {
    const ok = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials' }, headers: { authorization: basic(setup.credential.client_id, setup.credential.plain_secret) } });
    assert.equal(ok.status, 200, ok.body);
    const bad = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', state: 'x' }, headers: { authorization: basic(setup.credential.client_id, 'wrong') } });
    assert.equal(bad.status, 401);
    assert.deepEqual(bad.json(), { error: 'invalid_client', error_description: 'Invalid client authentication', state: 'x' });
    assert.equal(bad.headers['www-authenticate'], 'Basic realm="OAuth2.0"');
    assertNoStore(bad);
    const body = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: 'wrong' } });
    assert.equal(body.status, 400);
    assert.equal(body.json().error, 'invalid_client');
    assert.equal(body.headers['www-authenticate'], undefined);
  });

  test('RFC 6749 §2.3: a Basic header and a client_secret parameter together, or client credentials in the query string, are invalid_request', async () => {
    const id = setup.credential.client_id;
    const secret = setup.credential.plain_secret;
    const both = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: id, client_secret: secret, state: 's' }, headers: { authorization: basic(id, secret) } });
    assert.equal(both.status, 400, both.body);
    assert.deepEqual(both.json(), { error: 'invalid_request', error_description: 'The client must use only one authentication method', state: 's' });
    assertNoStore(both);
    // Kong let the body pair win over a Basic header of another client.
    const mixed = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: id, client_secret: secret }, headers: { authorization: basic(pub.client_id, 'garbage') } });
    assert.equal(mixed.json().error, 'invalid_request');
    // Basic plus a client_id parameter alone (no second credential) is fine.
    const withId = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: id }, headers: { authorization: basic(id, secret) } });
    assert.equal(withId.status, 200, withId.body);

    for (const query of [`client_id=${id}&client_secret=${secret}`, `client_secret=${secret}`, `client_id=${id}`]) {
      const res = await dp().call(`/api/oauth2/token?${query}`, { form: { grant_type: 'client_credentials', client_id: id, client_secret: secret } });
      assert.equal(res.status, 400, `${query}: ${res.body}`);
      assert.deepEqual(res.json(), { error: 'invalid_request', error_description: 'Client credentials must not be sent in the request URI' });
    }
    const viaQueryOnly = await dp().call(`/api/oauth2/token?client_id=${id}&client_secret=${secret}`, { form: { grant_type: 'client_credentials' } });
    assert.equal(viaQueryOnly.json().error, 'invalid_request');
    // Revocation and introspection authenticate clients the same way.
    for (const endpoint of ['revoke', 'introspect']) {
      const twice = await dp().call(`/api/oauth2/${endpoint}`, { form: { token: 'x', client_secret: secret }, headers: { authorization: basic(id, secret) } });
      assert.equal(twice.status, 400, `${endpoint}: ${twice.body}`);
      assert.equal(twice.json().error_description, 'The client must use only one authentication method');
      const inQuery = await dp().call(`/api/oauth2/${endpoint}?client_id=${id}&client_secret=${secret}`, { form: { token: 'x' } });
      assert.equal(inQuery.status, 400, `${endpoint}: ${inQuery.body}`);
      assert.equal(inQuery.json().error_description, 'Client credentials must not be sent in the request URI');
      assert.equal((await dp().call(`/api/oauth2/${endpoint}`, { form: { token: 'x' }, headers: { authorization: basic(id, secret) } })).status, 200);
    }
  });

  test('an unknown client in Basic on client_credentials is still 400 (Kong skips the client check for that grant)', async () => {
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials' }, headers: { authorization: basic('nobody', 'x') } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json(), { error: 'invalid_client', error_description: 'Invalid client authentication' });
  });

  test('an unknown client in Basic on other grants is 401', async () => {
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', provision_key: setup.provisionKey, authenticated_userid: 'u' }, headers: { authorization: basic('nobody', 'x') } });
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Basic realm="OAuth2.0"');
  });

  test('hash_secret (bcrypt): right secret accepted repeatedly, wrong one refused', async () => {
    for (let i = 0; i < 3; i++) {
      const ok = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: hashed.client_id, client_secret: hashed.plain_secret } });
      assert.equal(ok.status, 200, ok.body);
    }
    const bad = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: hashed.client_id, client_secret: `${hashed.plain_secret}x` } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error, 'invalid_client');
  });

  test('hash_secret (bcrypt): every byte of a secret longer than 72 bytes counts; plain bcrypt hashes still verify', async () => {
    const consumer = makeConsumer('long');
    const prefix72 = 'x'.repeat(72);
    const long = await makeCredential(consumer, { hash_secret: true, name: 'long', secret: `${prefix72}the-real-tail-9f8e7d` });
    assert.match(long.client_secret, /^\$bcrypt-hmac-sha256\$2b\$10\$[./A-Za-z0-9]{53}$/, 'the pre-hashed form');
    const wide = await makeCredential(consumer, { hash_secret: true, name: 'wide', secret: '€'.repeat(30) });
    // A hash written before the pre-hash existed (or imported as a bcrypt string).
    const legacySecret = `legacy-${randomAlnum(20)}`;
    const legacy = { ...(await makeCredential(consumer, { name: 'legacy' })), client_secret: await bcrypt.hash(legacySecret, 4), hash_secret: true, plain_secret: legacySecret };
    const service = makeService(env.upstream.port);
    const plugin = makeOauth2Plugin({ enable_client_credentials: true }, { service: { id: service.id } });
    const c = setup.content;
    await env.publish({
      services: [...c.services, service],
      routes: [...c.routes, makeRoute(['/long'], service)],
      plugins: [...c.plugins, plugin],
      consumers: [...c.consumers, consumer],
      credentials: { oauth2_credentials: [...c.credentials.oauth2_credentials, long, wide, legacy] },
    });
    const cc = (client_id: string, client_secret: string) => dp().call('/long/oauth2/token', { form: { grant_type: 'client_credentials', client_id, client_secret } });
    assert.equal((await cc(long.client_id, long.plain_secret)).status, 200);
    for (const wrong of [`${prefix72}wrong`, prefix72, `${prefix72}the-real-tail-9f8e7`, `${prefix72}the-real-tail-9f8e7dX`]) {
      const res = await cc(long.client_id, wrong);
      assert.equal(res.status, 400, `${wrong.slice(72)}: ${res.body}`);
      assert.equal(res.json().error, 'invalid_client');
    }
    assert.equal((await cc(wide.client_id, wide.plain_secret)).status, 200);
    assert.equal((await cc(wide.client_id, `${'€'.repeat(24)}xxx`)).json().error, 'invalid_client', 'same first 72 bytes, different tail');
    assert.equal((await cc(legacy.client_id, legacySecret)).status, 200, 'plain bcrypt hashes keep working');
    assert.equal((await cc(legacy.client_id, `${legacySecret}x`)).json().error, 'invalid_client');
  });

  test('a credential without redirect_uris can only use client_credentials', async () => {
    const cc = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: noRedirect.client_id, client_secret: noRedirect.plain_secret } });
    assert.equal(cc.status, 200);
    const pw = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', client_id: noRedirect.client_id, client_secret: noRedirect.plain_secret, provision_key: setup.provisionKey, authenticated_userid: 'u' } });
    assert.equal(pw.status, 400);
    assert.deepEqual(pw.json(), { error: 'invalid_client', error_description: 'Invalid client authentication' });
  });

  test('unsupported grant types, and disabled ones', async () => {
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'urn:foo', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret, state: 's' } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json(), { error: 'unsupported_grant_type', error_description: 'Invalid grant_type', state: 's' });
  });

  test('last failing check wins: a bad redirect_uri then a bad secret reports the secret', async () => {
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', client_id: setup.credential.client_id, client_secret: 'nope', redirect_uri: 'https://evil.test/' } });
    assert.equal(res.json().error, 'invalid_client');
    const redirect = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret, redirect_uri: 'https://app.test/cb/' } });
    assert.deepEqual(redirect.json(), {
      error: 'invalid_request',
      error_description: 'Invalid redirect_uri that does not match with any redirect_uri created with the application',
    });
  });

  test('public clients: a secret is refused; client_credentials is for confidential clients only', async () => {
    const withSecret = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', client_id: pub.client_id, client_secret: 'something', provision_key: setup.provisionKey, authenticated_userid: 'u' } });
    assert.deepEqual(withSecret.json(), { error: 'invalid_request', error_description: 'client_secret is disallowed for public clients' });
    const pw = await dp().call('/api/oauth2/token', { form: { grant_type: 'password', provision_key: setup.provisionKey, authenticated_userid: 'u' }, headers: { authorization: basic(pub.client_id) } });
    assert.equal(pw.status, 200, pw.body);
    const cc = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: pub.client_id } });
    assert.equal(cc.status, 400);
    assert.equal(cc.json().error, 'unauthorized_client');
  });

  test('password grant: provision_key, authenticated_userid, refresh token issued', async () => {
    const base = { grant_type: 'password', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret };
    const noKey = await dp().call('/api/oauth2/token', { form: { ...base, authenticated_userid: 'u' } });
    assert.deepEqual(noKey.json(), { error: 'invalid_provision_key', error_description: 'Invalid provision_key' });
    const noUser = await dp().call('/api/oauth2/token', { form: { ...base, provision_key: setup.provisionKey, authenticated_userid: '   ' } });
    assert.deepEqual(noUser.json(), { error: 'invalid_authenticated_userid', error_description: 'Missing authenticated_userid parameter' });
    const ok = await dp().call('/api/oauth2/token', { form: { ...base, provision_key: setup.provisionKey, authenticated_userid: 'alice', scope: 'email' } });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /^\{"refresh_token":"[A-Za-z0-9]{32}","token_type":"bearer","access_token":"[A-Za-z0-9]{32}","expires_in":7200\}$/);
    assert.match(ok.json().refresh_token, ALNUM32);
    const up = await resource(ok.json().access_token);
    assert.equal(up.json().headers['x-authenticated-userid'], 'alice');
    assert.equal(up.json().headers['x-authenticated-scope'], 'email');
  });

  test('client_credentials with authenticated_userid needs the provision_key', async () => {
    const base = { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret, authenticated_userid: 'svc' };
    const bad = await dp().call('/api/oauth2/token', { form: base });
    assert.equal(bad.json().error, 'invalid_provision_key');
    const ok = await dp().call('/api/oauth2/token', { form: { ...base, provision_key: setup.provisionKey } });
    assert.equal(ok.status, 200);
    assert.equal((await resource(ok.json().access_token)).json().headers['x-authenticated-userid'], 'svc');
  });

  test('scope validation strings', async () => {
    const base = { grant_type: 'client_credentials', client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret };
    const bad = await dp().call('/api/oauth2/token', { form: { ...base, scope: 'email admin' } });
    assert.deepEqual(bad.json(), { error: 'invalid_scope', error_description: '"admin" is an invalid scope' });
    const arr = await dp().call('/api/oauth2/token', { json: { ...base, scope: ['email'] } });
    assert.deepEqual(arr.json(), { error: 'invalid_scope', error_description: 'scope must be a string' });
  });
});

describe('authorization code grant', () => {
  let setup: Awaited<ReturnType<typeof standardSetup>>;
  let pub: TestCredential;
  let multi: TestCredential;
  before(async () => {
    const service = makeService(env.upstream.port);
    const route = makeRoute(['/api'], service);
    const plugin = makeOauth2Plugin(
      { enable_authorization_code: true, enable_implicit_grant: true, scopes: ['email', 'profile'], mandatory_scope: true },
      { service: { id: service.id } },
    );
    const consumer = makeConsumer('bob', 'bob-custom');
    const credential = await makeCredential(consumer);
    pub = await makeCredential(consumer, { client_type: 'public', name: 'spa' });
    multi = await makeCredential(consumer, { redirect_uris: ['https://app.test/kong?foo=bar&code=123', 'https://other.test/cb'], name: 'multi' });
    const content = { services: [service], routes: [route], plugins: [plugin], consumers: [consumer], credentials: { oauth2_credentials: [credential, pub, multi] } };
    await env.publish(content);
    setup = { service, route, plugin, consumer, credential, content, provisionKey: plugin.config.provision_key as string };
  });

  const authParams = () => ({
    provision_key: setup.provisionKey,
    authenticated_userid: 'clark',
    client_id: setup.credential.client_id,
    response_type: 'code',
    scope: 'email',
  });
  const exchange = (code: string, extra: Record<string, string> = {}) =>
    dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret, ...extra } });

  test('authorize errors before a redirect URI is known are plain JSON', async () => {
    const noKey = await authorize({ ...authParams(), provision_key: 'nope', state: 'abc' });
    assert.equal(noKey.status, 400);
    assert.deepEqual(noKey.json(), { error: 'invalid_provision_key', error_description: 'Invalid provision_key', state: 'abc' });
    assertNoStore(noKey);
    const noUser = await authorize({ ...authParams(), authenticated_userid: '' });
    assert.deepEqual(noUser.json(), { error: 'invalid_authenticated_userid', error_description: 'Missing authenticated_userid parameter' });
    const noClient = await authorize({ ...authParams(), client_id: 'nobody' });
    assert.deepEqual(noClient.json(), { error: 'invalid_client', error_description: 'Invalid client authentication' });
  });

  test('authorize errors after the client is known redirect with sorted, Kong-encoded params', async () => {
    const res = await authorize({ ...authParams(), response_type: 'nope', state: 'some state,"x"' });
    assert.equal(res.status, 400);
    assert.equal(
      res.json().redirect_uri,
      'https://app.test/cb?error=unsupported_response_type&error_description=Invalid%20response_type&state=some%20state%2c%22x%22',
    );
    const scope = await authorize({ ...authParams(), scope: 'admin' });
    assert.equal(scope.json().redirect_uri, 'https://app.test/cb?error=invalid_scope&error_description=%22admin%22%20is%20an%20invalid%20scope');
    const mandatory = await authorize({ ...authParams(), scope: '' });
    assert.match(mandatory.json().redirect_uri, /error_description=You%20must%20specify%20a%20scope/);
  });

  test('a state that is not one string is invalid_request (never a 500), and is not echoed', async () => {
    for (const state of [{ toString: 1 }, { a: 1 }, ['a', 'b'], 5, true]) {
      const res = await dp().call('/api/oauth2/authorize', { json: { ...authParams(), state } });
      assert.equal(res.status, 400, `${JSON.stringify(state)}: ${res.body}`);
      assert.equal(res.json().redirect_uri, 'https://app.test/cb?error=invalid_request&error_description=state%20must%20be%20a%20string');
    }
    const body = `${new URLSearchParams(authParams())}&state=a&state=b`;
    const repeated = await dp().call('/api/oauth2/authorize', { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(repeated.status, 400);
    assert.equal(repeated.json().redirect_uri, 'https://app.test/cb?error=invalid_request&error_description=state%20must%20be%20a%20string');
    // Before a redirect URI is known the error is plain JSON, without the state.
    const noKey = await dp().call('/api/oauth2/authorize', { json: { ...authParams(), provision_key: 'nope', state: { toString: 1 } } });
    assert.equal(noKey.status, 400);
    assert.deepEqual(noKey.json(), { error: 'invalid_provision_key', error_description: 'Invalid provision_key' });
    const ok = await dp().call('/api/oauth2/authorize', { json: { ...authParams(), state: 'st' } });
    assert.equal(ok.status, 200);
    assert.match(ok.json().redirect_uri, /^https:\/\/app\.test\/cb\?code=[A-Za-z0-9]{32}&state=st$/);
  });

  test('a redirect_uri not registered sends the error to the first registered URI (exact matching)', async () => {
    const res = await authorize({ ...authParams(), client_id: multi.client_id, redirect_uri: 'https://other.test/cb/' });
    assert.equal(res.status, 400);
    const url = new URL(res.json().redirect_uri);
    assert.equal(url.origin + url.pathname, 'https://app.test/kong');
    assert.equal(url.searchParams.get('error'), 'invalid_request');
    const ok = await authorize({ ...authParams(), client_id: multi.client_id, redirect_uri: 'https://other.test/cb' });
    assert.equal(ok.status, 200);
    assert.match(ok.json().redirect_uri, /^https:\/\/other\.test\/cb\?code=[A-Za-z0-9]{32}$/);
  });

  test('a repeated redirect_uri is invalid_request, not "omitted" (RFC 6749 §3.1), at authorize and at the token step', async () => {
    const params = new URLSearchParams({ ...authParams(), client_id: multi.client_id });
    const repeated = (first: string, second: string) => {
      const p = new URLSearchParams(params);
      p.append('redirect_uri', first);
      p.append('redirect_uri', second);
      return p.toString();
    };
    const formHeaders = { 'content-type': 'application/x-www-form-urlencoded' };
    for (const body of [repeated('https://evil.test/', 'https://other.test/cb'), repeated('https://other.test/cb', 'https://other.test/cb')]) {
      const res = await dp().call('/api/oauth2/authorize', { body, headers: formHeaders });
      assert.equal(res.status, 400, res.body);
      const url = new URL(res.json().redirect_uri);
      assert.equal(url.origin + url.pathname, 'https://app.test/kong', 'the error goes to the first registered URI, as for a mismatch');
      assert.equal(url.searchParams.get('error'), 'invalid_request');
      assert.equal(url.searchParams.get('error_description'), 'Invalid redirect_uri that does not match with any redirect_uri created with the application');
      assert.equal(url.searchParams.get('code'), '123', "only the registered URI's own query, no code issued");
    }
    const viaJson = await dp().call('/api/oauth2/authorize', { json: { ...authParams(), client_id: multi.client_id, redirect_uri: ['https://evil.test/', 'https://other.test/cb'] } });
    assert.equal(viaJson.status, 400);
    assert.equal(new URL(viaJson.json().redirect_uri).searchParams.get('error'), 'invalid_request');

    const code = codeFrom((await authorize({ ...authParams(), client_id: multi.client_id })).json().redirect_uri);
    const tokenBody = new URLSearchParams({ grant_type: 'authorization_code', code, client_id: multi.client_id, client_secret: multi.plain_secret });
    tokenBody.append('redirect_uri', 'https://evil.test/');
    tokenBody.append('redirect_uri', 'https://app.test/kong?foo=bar&code=123');
    const tok = await dp().call('/api/oauth2/token', { body: tokenBody.toString(), headers: formHeaders });
    assert.equal(tok.status, 400, tok.body);
    assert.deepEqual(tok.json(), { error: 'invalid_request', error_description: 'Invalid redirect_uri that does not match with any redirect_uri created with the application' });
    // The code was not consumed by the refused request.
    const ok = await dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: multi.client_id, client_secret: multi.plain_secret } });
    assert.equal(ok.status, 200, ok.body);
  });

  test("the registered URI's own query is kept and merged, keys sorted", async () => {
    const res = await authorize({ ...authParams(), client_id: multi.client_id });
    assert.match(res.json().redirect_uri, /^https:\/\/app\.test\/kong\?code=[A-Za-z0-9]{32}&foo=bar$/);
  });

  test('code flow end to end: userid and scope travel; the code is single-use and a replay revokes the tokens', async () => {
    const res = await authorize({ ...authParams(), state: 'xyz' });
    assert.equal(res.status, 200);
    const redirect = res.json().redirect_uri as string;
    assert.match(redirect, /^https:\/\/app\.test\/cb\?code=[A-Za-z0-9]{32}&state=xyz$/);
    const code = codeFrom(redirect);
    const tok = await exchange(code, { state: 'w' });
    assert.equal(tok.status, 200, tok.body);
    const body = tok.json();
    assert.match(body.refresh_token, ALNUM32);
    assert.equal(body.state, 'w');
    const up = await resource(body.access_token);
    assert.equal(up.status, 200);
    assert.equal(up.json().headers['x-authenticated-userid'], 'clark');
    assert.equal(up.json().headers['x-authenticated-scope'], 'email');

    const replay = await exchange(code, { state: 'wot' });
    assert.equal(replay.status, 400);
    assert.deepEqual(replay.json(), { error: 'invalid_request', error_description: 'Invalid code', state: 'wot' });
    // RFC 6749 §4.1.2 / RFC 9700 §4.5: the tokens issued from the replayed code are revoked.
    assert.equal((await resource(body.access_token)).status, 401);
    const refresh = await dp().call('/api/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token: body.refresh_token, client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret } });
    assert.equal(refresh.json().error_description, 'Invalid refresh_token');
  });

  test('concurrent redemptions of one code: exactly one succeeds (and the replay revokes it)', async () => {
    const code = codeFrom((await authorize(authParams())).json().redirect_uri);
    const results = await Promise.all(Array.from({ length: 12 }, () => exchange(code)));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, results.map((r) => r.status).join(','));
    for (const r of results.filter((x) => x.status !== 200)) assert.deepEqual(r.json(), { error: 'invalid_request', error_description: 'Invalid code' });
    assert.equal((await resource(ok[0].json().access_token)).status, 401, 'the winner is revoked because the code was replayed');
  });

  test('a code belongs to its client', async () => {
    const code = codeFrom((await authorize(authParams())).json().redirect_uri);
    const other = await dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: multi.client_id, client_secret: multi.plain_secret } });
    assert.deepEqual(other.json(), { error: 'invalid_request', error_description: 'Invalid code' });
    // The rightful client can still redeem it.
    assert.equal((await exchange(code)).status, 200);
  });

  test('redirect_uri given at authorize must match at the token step (RFC 6749 §4.1.3)', async () => {
    const code = codeFrom((await authorize({ ...authParams(), client_id: multi.client_id, redirect_uri: 'https://other.test/cb' })).json().redirect_uri);
    const wrong = await dp().call('/api/oauth2/token', {
      form: { grant_type: 'authorization_code', code, client_id: multi.client_id, client_secret: multi.plain_secret, redirect_uri: 'https://app.test/kong?foo=bar&code=123' },
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json().error, 'invalid_grant');
  });

  test('PKCE: public clients must send a challenge; only S256; verifier checks; downgrade refused', async () => {
    const base = { ...authParams(), client_id: pub.client_id };
    const missing = await authorize(base);
    assert.match(missing.json().redirect_uri, /error=invalid_request&error_description=code_challenge%20is%20required%20for%20public%20clients/);
    const methodOnly = await authorize({ ...base, code_challenge_method: 'S256' });
    assert.match(methodOnly.json().redirect_uri, /code_challenge%20is%20required%20when%20code_method%20is%20present/);
    const plain = await authorize({ ...base, code_challenge: 'abc', code_challenge_method: 'plain' });
    assert.match(plain.json().redirect_uri, /code_challenge_method%20is%20not%20supported%2c%20must%20be%20S256/);

    const verifier = randomAlnum(64);
    const code = codeFrom((await authorize({ ...base, code_challenge: sha256Base64Url(verifier) })).json().redirect_uri);
    const tokenReq = (extra: Record<string, string>) => dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: pub.client_id, ...extra } });
    assert.deepEqual((await tokenReq({})).json(), { error: 'invalid_request', error_description: 'code_verifier is required for PKCE authorization requests' });
    assert.deepEqual((await tokenReq({ code_verifier: 'short' })).json(), { error: 'invalid_request', error_description: 'code_verifier must be between 43 and 128 characters' });
    assert.deepEqual((await tokenReq({ code_verifier: randomAlnum(64) })).json(), { error: 'invalid_grant', error_description: 'Invalid code' });
    const ok = await tokenReq({ code_verifier: verifier });
    assert.equal(ok.status, 200, ok.body);

    // Standard base64 with padding is normalised at authorize time.
    const v2 = randomAlnum(50);
    const std = Buffer.from(sha256Base64Url(v2), 'base64url').toString('base64');
    const code2 = codeFrom((await authorize({ ...base, code_challenge: std, code_challenge_method: 's256' })).json().redirect_uri);
    const ok2 = await dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code: code2, client_id: pub.client_id, code_verifier: v2 } });
    assert.equal(ok2.status, 200, ok2.body);

    // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is rejected.
    const code3 = codeFrom((await authorize(authParams())).json().redirect_uri);
    const downgrade = await exchange(code3, { code_verifier: randomAlnum(50) });
    assert.deepEqual(downgrade.json(), { error: 'invalid_grant', error_description: 'Invalid code' });
  });

  test('PKCE: a code_challenge that is not the base64url of 32 bytes is refused; a recorded empty challenge still demands a verifier', async () => {
    const base = { ...authParams(), client_id: pub.client_id };
    const valid = sha256Base64Url(randomAlnum(50));
    // Each of these used to decode to an empty challenge, and an empty challenge turned PKCE off.
    const junk = ['A', '~', '!!!!', `${valid}A`, valid.slice(0, 42), `${valid.slice(0, 42)}~`, `${valid.slice(0, 42)}B`, 'A'.repeat(128)];
    for (const challenge of junk) {
      const res = await authorize({ ...base, code_challenge: challenge, state: 's' });
      assert.equal(res.status, 400, `${challenge}: ${res.body}`);
      const url = new URL(res.json().redirect_uri);
      assert.equal(url.searchParams.get('error'), 'invalid_request', challenge);
      assert.equal(url.searchParams.get('error_description'), 'code_challenge must be the base64url-encoded SHA-256 of the code_verifier (43 characters)');
      assert.equal(url.searchParams.get('code'), null, `no code for ${challenge}`);
      assert.equal(url.searchParams.get('state'), 's');
    }
    // A confidential client under pkce=lax is held to the same rule when it sends a challenge.
    const conf = await authorize({ ...authParams(), code_challenge: 'A' });
    assert.equal(new URL(conf.json().redirect_uri).searchParams.get('error'), 'invalid_request');

    // A code stored with an empty challenge (issued before the check existed) is unusable
    // without a verifier, and no verifier can match it.
    const { TokenStore } = await import('../src/oauth2/tokens.ts');
    const store = new TokenStore(env.store);
    const code = await store.createCode({
      credential_id: pub.id,
      service_id: setup.service.id,
      plugin_id: setup.plugin.id,
      authenticated_userid: 'clark',
      scope: 'email',
      redirect_uri: null,
      challenge: '',
      challenge_method: 'S256',
    });
    const tokenReq = (extra: Record<string, string>) => dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: pub.client_id, ...extra } });
    assert.deepEqual((await tokenReq({})).json(), { error: 'invalid_request', error_description: 'code_verifier is required for PKCE authorization requests' });
    assert.deepEqual((await tokenReq({ code_verifier: randomAlnum(50) })).json(), { error: 'invalid_grant', error_description: 'Invalid code' });
  });

  test('implicit grant: the token goes in the fragment, no refresh token', async () => {
    const res = await authorize({ ...authParams(), response_type: 'token', state: 'st' });
    assert.equal(res.status, 200);
    const redirect = res.json().redirect_uri as string;
    assert.match(redirect, /^https:\/\/app\.test\/cb#access_token=[A-Za-z0-9]{32}&expires_in=7200&state=st&token_type=bearer$/);
    const token = /access_token=([A-Za-z0-9]{32})/.exec(redirect)![1];
    assert.equal((await resource(token)).status, 200);
  });
});

describe('refresh tokens', () => {
  async function setupWith(config: Record<string, unknown>) {
    return standardSetup(env, { enable_password_grant: true, ...config });
  }
  async function passwordToken(s: Awaited<ReturnType<typeof setupWith>>) {
    const res = await dp().call('/api/oauth2/token', {
      form: { grant_type: 'password', client_id: s.credential.client_id, client_secret: s.credential.plain_secret, provision_key: s.provisionKey, authenticated_userid: 'lois' },
    });
    assert.equal(res.status, 200, res.body);
    return res.json();
  }
  const refresh = (s: Awaited<ReturnType<typeof setupWith>>, token: string, cred: TestCredential = s.credential) =>
    dp().call('/api/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token: token, client_id: cred.client_id, client_secret: cred.plain_secret } });

  test('rotation: new pair, the old access token dies; replaying the old refresh token revokes the grant', async () => {
    const s = await setupWith({});
    const first = await passwordToken(s);
    const second = await refresh(s, first.refresh_token);
    assert.equal(second.status, 200, second.body);
    const b = second.json();
    assert.notEqual(b.refresh_token, first.refresh_token);
    assert.equal((await resource(first.access_token)).status, 401, 'the old row is gone');
    const up = await resource(b.access_token);
    assert.equal(up.status, 200);
    assert.equal(up.json().headers['x-authenticated-userid'], 'lois');

    const replay = await refresh(s, first.refresh_token);
    assert.deepEqual(replay.json(), { error: 'invalid_request', error_description: 'Invalid refresh_token' });
    // RFC 9700 §4.14.2: the grant's live tokens are revoked.
    assert.equal((await resource(b.access_token)).status, 401);
    assert.equal((await refresh(s, b.refresh_token)).status, 400);
  });

  test('reuse_refresh_token keeps the refresh token and replaces the access token', async () => {
    const s = await setupWith({ reuse_refresh_token: true });
    const first = await passwordToken(s);
    const second = (await refresh(s, first.refresh_token)).json();
    assert.equal(second.refresh_token, first.refresh_token);
    assert.equal((await resource(first.access_token)).status, 401);
    assert.equal((await resource(second.access_token)).status, 200);
    const third = (await refresh(s, first.refresh_token)).json();
    assert.equal(third.refresh_token, first.refresh_token);
    assert.equal((await resource(third.access_token)).status, 200);
  });

  test("another client's refresh token: invalid_client; a narrowed plugin scope list: Scope mismatch", async () => {
    const s = await setupWith({ scopes: ['a', 'b'] });
    const other = await makeCredential(s.consumer, { name: 'other' });
    await env.publish({ ...s.content, credentials: { oauth2_credentials: [s.credential, other] } });
    const res = await dp().call('/api/oauth2/token', {
      form: { grant_type: 'password', client_id: s.credential.client_id, client_secret: s.credential.plain_secret, provision_key: s.provisionKey, authenticated_userid: 'lois', scope: 'a b' },
    });
    const first = res.json();
    assert.deepEqual((await refresh(s, first.refresh_token, other)).json(), { error: 'invalid_client', error_description: 'Invalid client authentication' });
    const narrowed = { ...s.plugin, config: { ...s.plugin.config, scopes: ['a'] } };
    await env.publish({ ...s.content, plugins: [narrowed], credentials: { oauth2_credentials: [s.credential, other] } });
    assert.deepEqual((await refresh(s, first.refresh_token)).json(), { error: 'invalid_scope', error_description: 'Scope mismatch' });
  });

  test('concurrent refreshes of one token: at most one succeeds and the grant ends revoked', async () => {
    const s = await setupWith({});
    const first = await passwordToken(s);
    const results = await Promise.all(Array.from({ length: 8 }, () => refresh(s, first.refresh_token)));
    const ok = results.filter((r) => r.status === 200);
    assert.ok(ok.length <= 1, results.map((r) => r.status).join(','));
    for (const r of ok) assert.equal((await resource(r.json().access_token)).status, 401);
  });

  test('token_expiration 0: no expires_in and no refresh token', async () => {
    const s = await setupWith({ token_expiration: 0 });
    const body = await passwordToken(s);
    assert.equal(body.expires_in, undefined);
    assert.equal(body.refresh_token, undefined);
    assert.equal((await resource(body.access_token)).status, 200);
  });
});

describe('PKCE modes, global credentials and service binding of codes and refresh tokens', () => {
  test('pkce=strict: confidential clients need a challenge too; pkce=none: public clients do not', async () => {
    const strict = await standardSetup(env, { enable_authorization_code: true, pkce: 'strict' });
    const base = { provision_key: strict.provisionKey, authenticated_userid: 'u', client_id: strict.credential.client_id, response_type: 'code' };
    const res = await authorize(base);
    assert.match(res.json().redirect_uri, /code_challenge%20is%20required%20for%20confidential%20clients/);
    const none = await standardSetup(env, { enable_authorization_code: true, pkce: 'none' }, { client_type: 'public' });
    const ok = await authorize({ provision_key: none.provisionKey, authenticated_userid: 'u', client_id: none.credential.client_id, response_type: 'code' });
    assert.equal(ok.status, 200, ok.body);
    const code = codeFrom(ok.json().redirect_uri);
    const tok = await dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: none.credential.client_id } });
    assert.equal(tok.status, 200, tok.body);
  });

  test('HTTPS is required at the authorization endpoint too', async () => {
    const s = await standardSetup(env, { enable_authorization_code: true });
    const res = await dp().call('/api/oauth2/authorize', {
      https: false,
      form: { provision_key: s.provisionKey, authenticated_userid: 'u', client_id: s.credential.client_id, response_type: 'code', state: 'st' },
    });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json(), { error: 'access_denied', error_description: 'You must use HTTPS', state: 'st' });
  });

  test("codes and refresh tokens are bound to their service; global codes to their plugin", async () => {
    const consumer = makeConsumer('bob');
    const credential = await makeCredential(consumer);
    const svcA = makeService(env.upstream.port);
    const svcB = makeService(env.upstream.port);
    const svcC = makeService(env.upstream.port);
    const svcD = makeService(env.upstream.port);
    const routes = [makeRoute(['/a'], svcA), makeRoute(['/b'], svcB), makeRoute(['/c'], svcC), makeRoute(['/d'], svcD)];
    const cfg = { enable_authorization_code: true, enable_password_grant: true };
    const pA = makeOauth2Plugin(cfg, { service: { id: svcA.id } });
    const pB = makeOauth2Plugin(cfg, { service: { id: svcB.id } });
    const pC = makeOauth2Plugin({ ...cfg, global_credentials: true }, { service: { id: svcC.id } });
    const pD = makeOauth2Plugin({ ...cfg, global_credentials: true }, { service: { id: svcD.id } });
    // One provision key for all, so only the binding differs.
    for (const p of [pB, pC, pD]) p.config.provision_key = pA.config.provision_key;
    await env.publish({ services: [svcA, svcB, svcC, svcD], routes, plugins: [pA, pB, pC, pD], consumers: [consumer], credentials: { oauth2_credentials: [credential] } });
    const key = pA.config.provision_key as string;
    const auth = { client_id: credential.client_id, client_secret: credential.plain_secret };
    const codeOn = async (prefix: string) =>
      codeFrom((await dp().call(`${prefix}/oauth2/authorize`, { form: { provision_key: key, authenticated_userid: 'u', client_id: credential.client_id, response_type: 'code' } })).json().redirect_uri);

    const codeA = await codeOn('/a');
    assert.deepEqual((await dp().call('/b/oauth2/token', { form: { grant_type: 'authorization_code', code: codeA, ...auth } })).json(), { error: 'invalid_request', error_description: 'Invalid code' });
    assert.equal((await dp().call('/a/oauth2/token', { form: { grant_type: 'authorization_code', code: codeA, ...auth } })).status, 200);

    const codeC = await codeOn('/c');
    assert.deepEqual((await dp().call('/d/oauth2/token', { form: { grant_type: 'authorization_code', code: codeC, ...auth } })).json(), { error: 'invalid_request', error_description: 'Invalid code' }, 'another global plugin instance');
    assert.equal((await dp().call('/c/oauth2/token', { form: { grant_type: 'authorization_code', code: codeC, ...auth } })).status, 200);

    const pw = (await dp().call('/a/oauth2/token', { form: { grant_type: 'password', provision_key: key, authenticated_userid: 'u', ...auth } })).json();
    assert.deepEqual((await dp().call('/b/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token: pw.refresh_token, ...auth } })).json(), {
      error: 'invalid_request',
      error_description: 'Invalid refresh_token',
    });
    assert.equal((await dp().call('/a/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token: pw.refresh_token, ...auth } })).status, 200);
  });

  test('without config.scopes a requested scope is silently dropped', async () => {
    const s = await standardSetup(env, { enable_client_credentials: true });
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret, scope: 'anything' } });
    assert.equal(res.status, 200);
    const up = await resource(res.json().access_token);
    assert.equal(up.json().headers['x-authenticated-scope'], undefined);
  });
});
