// Resource requests on a route the oauth2 plugin covers (kong.md §b.10), and the RFC 7009 /
// RFC 7662 / RFC 8414 endpoints, through a real data plane and upstream.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { basic, makeConsumer, makeCredential, makeOauth2Plugin, makeRoute, makeService, startEnv, type Env, type TestCredential } from './oauth2-helpers.ts';

let env: Env;
before(async () => {
  env = await startEnv();
});
after(() => env.close());
const dp = () => env.dataPlanes[0];

const INVALID = 'The access token is invalid or has expired';

async function setup(config: Record<string, unknown> = {}, extra: { anonymousConsumer?: boolean } = {}) {
  const service = makeService(env.upstream.port);
  const other = makeService(env.upstream.port);
  const route = makeRoute(['/api'], service);
  const otherRoute = makeRoute(['/other'], other);
  const plugin = makeOauth2Plugin({ enable_client_credentials: true, enable_password_grant: true, scopes: ['read', 'write'], ...config }, { service: { id: service.id } });
  const otherPlugin = makeOauth2Plugin({ enable_client_credentials: true, ...config }, { service: { id: other.id } });
  const consumer = makeConsumer('bob', 'bob-custom');
  const anon = makeConsumer('anonymous-user');
  const credential = await makeCredential(consumer);
  const second = await makeCredential(consumer, { name: 'second' });
  const content = {
    services: [service, other],
    routes: [route, otherRoute],
    plugins: [plugin, otherPlugin],
    consumers: extra.anonymousConsumer === false ? [consumer] : [consumer, anon],
    credentials: { oauth2_credentials: [credential, second] },
  };
  await env.publish(content);
  const issue = async (cred: TestCredential = credential, path = '/api', params: Record<string, string> = {}) => {
    const res = await dp().call(`${path}/oauth2/token`, { form: { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.plain_secret, ...params } });
    assert.equal(res.status, 200, res.body);
    return res.json().access_token as string;
  };
  /** Access and refresh token from the password grant, for `userid` (with `scope`, if given). */
  const passwordGrant = async (userid: string, scope?: string) => {
    const form: Record<string, string> = { grant_type: 'password', client_id: credential.client_id, client_secret: credential.plain_secret, provision_key: plugin.config.provision_key as string, authenticated_userid: userid };
    if (scope) form.scope = scope;
    const res = await dp().call('/api/oauth2/token', { form });
    assert.equal(res.status, 200, res.body);
    return res.json() as { access_token: string; refresh_token: string };
  };
  return { service, other, route, plugin, consumer, anon, credential, second, content, issue, passwordGrant, provisionKey: plugin.config.provision_key as string };
}

describe('resource requests', () => {
  test('missing token: 401 invalid_request with WWW-Authenticate: Bearer (realm when set)', async () => {
    await setup();
    const res = await dp().call('/api/thing', { https: false });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json(), { error: 'invalid_request', error_description: 'The access token is missing' });
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    const empty = await dp().call('/api/thing', { https: false, headers: { authorization: '' } });
    assert.equal(empty.status, 401);
    assert.equal(empty.json().error_description, 'The access token is missing');
    await setup({ realm: 'gatehouse' });
    const realm = await dp().call('/api/thing', { https: false });
    assert.equal(realm.headers['www-authenticate'], 'Bearer realm="gatehouse"');
  });

  test('invalid token: 401 invalid_token and the exact header', async () => {
    await setup();
    const res = await dp().call('/api/thing', { https: false, headers: { authorization: 'Bearer nope' } });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json(), { error: 'invalid_token', error_description: INVALID });
    assert.equal(res.headers['www-authenticate'], `Bearer error="invalid_token", error_description="${INVALID}"`);
    // Any other header form: the whole value is the token, which fails.
    const odd = await dp().call('/api/thing', { https: false, headers: { authorization: 'Basic abc def' } });
    assert.equal(odd.json().error, 'invalid_token');
    await setup({ realm: 'r' });
    const realm = await dp().call('/api/thing', { https: false, headers: { authorization: 'bearer nope' } });
    assert.equal(realm.headers['www-authenticate'], `Bearer realm="r", error="invalid_token", error_description="${INVALID}"`);
  });

  test('valid token: upstream identity headers set, client-sent copies never pass', async () => {
    const s = await setup();
    const token = await s.issue(s.credential, '/api', { scope: 'read write' });
    const res = await dp().call('/api/thing', {
      https: false,
      headers: { authorization: `Bearer ${token}`, 'x-consumer-username': 'mallory', 'x-authenticated-userid': 'root', 'x-anonymous-consumer': 'true' },
    });
    assert.equal(res.status, 200, res.body);
    const h = res.json().headers;
    assert.equal(h['x-consumer-id'], s.consumer.id);
    assert.equal(h['x-consumer-custom-id'], 'bob-custom');
    assert.equal(h['x-consumer-username'], 'bob');
    assert.equal(h['x-credential-identifier'], s.credential.client_id);
    assert.equal(h['x-authenticated-scope'], 'read write');
    assert.equal(h['x-authenticated-userid'], undefined);
    assert.equal(h['x-anonymous-consumer'], undefined);
    assert.equal(h.authorization, `Bearer ${token}`, 'kept without hide_credentials');
  });

  test('"token" scheme, access_token in the query, in a form body and in a JSON body', async () => {
    const s = await setup();
    const token = await s.issue();
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Token ${token}` } })).status, 200);
    assert.equal((await dp().call(`/api/x?access_token=${token}`, { https: false })).status, 200);
    assert.equal((await dp().call('/api/x', { https: false, form: { access_token: token } })).status, 200);
    assert.equal((await dp().call('/api/x', { https: false, json: { access_token: token } })).status, 200);
    assert.equal((await dp().call('/api/x', { https: false, json: { access_token: 123 } })).json().error_description, 'The access token is missing');
  });

  test('hide_credentials strips the header, the query parameter and form bodies', async () => {
    const s = await setup({ hide_credentials: true });
    const token = await s.issue();
    const header = await dp().call('/api/x?keep=1', { https: false, headers: { authorization: `Bearer ${token}` } });
    assert.equal(header.json().headers.authorization, undefined);
    assert.equal(header.json().url, '/x?keep=1');
    const query = await dp().call(`/api/x?a=1&access_token=${token}&b=%20`, { https: false });
    assert.equal(query.status, 200);
    assert.equal(query.json().url, '/x?a=1&b=%20');
    const body = await dp().call('/api/x', { https: false, form: { access_token: token, other: 'v' } });
    assert.equal(body.status, 200);
    assert.equal(body.json().body, 'other=v');
  });

  test('hide_credentials strips the token under whatever key it was read from (access_token[], encoded keys)', async () => {
    const s = await setup({ hide_credentials: true });
    const token = await s.issue();
    for (const key of ['access_token[]', 'access_token%5B%5D', 'access%5Ftoken', 'access%5ftoken%5b%5d']) {
      const query = await dp().call(`/api/x?a=1&${key}=${token}&b=%20`, { https: false });
      assert.equal(query.status, 200, `${key}: ${query.body}`);
      assert.equal(query.json().url, '/x?a=1&b=%20', `query key ${key}`);
      assert.ok(!query.body.includes(token), `query key ${key}: the token reached the upstream`);
      const body = await dp().call('/api/x', { https: false, method: 'POST', body: `${key}=${token}&other=v`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      assert.equal(body.status, 200, `${key}: ${body.body}`);
      assert.equal(body.json().body, 'other=v', `form key ${key}`);
    }
  });

  test('hide_credentials: a JSON body is not stripped; a multipart upload goes through intact', async () => {
    const s = await setup({ hide_credentials: true, realm: 'zone' });
    const token = await s.issue();
    const json = await dp().call('/api/x', { https: false, json: { access_token: token, keep: 1 } });
    assert.equal(json.status, 200);
    assert.deepEqual(JSON.parse(json.json().body), { access_token: token, keep: 1 });
    const boundary = 'b0undary';
    const multipart = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n\u0000\u0001binary\r\n--${boundary}--\r\n`;
    const up = await dp().call(`/api/upload?access_token=${token}`, { https: false, method: 'POST', body: multipart, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    assert.equal(up.status, 200, up.body);
    assert.equal(up.json().url, '/upload');
    assert.equal(up.json().body, multipart);
    // 405 carries the realm too.
    const get = await dp().call('/api/oauth2/token');
    assert.equal(get.headers['www-authenticate'], 'Bearer realm="zone", error="invalid_method", error_description="The HTTP method GET is invalid for the token endpoint"');
  });

  test('custom auth_header_name: Authorization is not looked at', async () => {
    const s = await setup({ auth_header_name: 'x-token' });
    const token = await s.issue();
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } })).json().error_description, 'The access token is missing');
    assert.equal((await dp().call('/api/x', { https: false, headers: { 'x-token': `Bearer ${token}` } })).status, 200);
  });

  test('service binding: a token for another service is invalid; global tokens need global_credentials', async () => {
    const s = await setup();
    const token = await s.issue(s.credential, '/other');
    const res = await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(res.json(), { error: 'invalid_token', error_description: INVALID });
    // Hitting the wrong service first does not poison the cache.
    assert.equal((await dp().call('/other/x', { https: false, headers: { authorization: `Bearer ${token}` } })).status, 200);

    const g = await setup({ global_credentials: true });
    const globalToken = await g.issue();
    assert.equal((await dp().call('/other/x', { https: false, headers: { authorization: `Bearer ${globalToken}` } })).status, 200, 'global token on a global plugin');
    // The same global token on a plugin without global_credentials.
    const narrowed = { ...g.content, plugins: [g.content.plugins[0], { ...g.content.plugins[1], config: { ...g.content.plugins[1].config, global_credentials: false } }] };
    await env.publish(narrowed);
    const refused = await dp().call('/other/x', { https: false, headers: { authorization: `Bearer ${globalToken}` } });
    assert.equal(refused.status, 401);
    assert.deepEqual(refused.json(), { error: 'invalid_token', error_description: "The access token is global, but the current plugin is configured without 'global_credentials'" });
    assert.equal(refused.headers['www-authenticate'], `Bearer error="invalid_token", error_description="${INVALID}"`);
  });

  test('expiry: a token older than expires_in is refused', async () => {
    const s = await setup({ token_expiration: 2 });
    const token = await s.issue();
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } })).status, 200);
    await new Promise((r) => setTimeout(r, 3100));
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } })).json().error, 'invalid_token');
  });

  test('a consumer or credential gone from the snapshot invalidates its tokens at once (cached or not)', async () => {
    const s = await setup();
    const t1 = await s.issue(s.credential);
    const t2 = await s.issue(s.second);
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${t1}` } })).status, 200);
    await env.publish({ ...s.content, credentials: { oauth2_credentials: [s.second] } });
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${t1}` } })).status, 401);
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${t2}` } })).status, 200);
    await env.publish({ ...s.content, consumers: [s.anon], credentials: { oauth2_credentials: [s.second] } });
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${t2}` } })).status, 401);
    // New token requests fail too.
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.second.client_id, client_secret: s.second.plain_secret } });
    assert.equal(res.json().error, 'invalid_client');
  });

  test('revocation messages for a deleted consumer or credential act before the snapshot does', async () => {
    const s = await setup();
    const t1 = await s.issue(s.credential);
    const auth = (t: string) => dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${t}` } });
    assert.equal((await auth(t1)).status, 200);
    const { TokenStore } = await import('../src/oauth2/tokens.ts');
    const publisher = new TokenStore(env.store);
    const seen = new Promise<void>((resolve) => {
      dp().handler().tokens.onRevocation = (m) => m.u && resolve();
    });
    await publisher.publish({ u: [s.consumer.id] });
    await seen;
    dp().handler().tokens.onRevocation = null;
    assert.equal((await auth(t1)).status, 401, 'consumer revoked');
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(res.json().error, 'invalid_client');
    // A snapshot that still lists the consumer (published before the deletion) does not undo it.
    await env.publish({ ...s.content, services: [{ ...s.service, tags: ['v2'] }, s.other] });
    assert.equal((await auth(t1)).status, 401);
  });

  test('anonymous: by username or id, headers, 500 when the consumer does not exist', async () => {
    const s = await setup({ anonymous: 'anonymous-user' });
    const res = await dp().call('/api/x', { https: false, headers: { 'x-credential-identifier': 'spoof' } });
    assert.equal(res.status, 200);
    const h = res.json().headers;
    assert.equal(h['x-consumer-id'], s.anon.id);
    assert.equal(h['x-consumer-username'], 'anonymous-user');
    assert.equal(h['x-consumer-custom-id'], undefined);
    assert.equal(h['x-anonymous-consumer'], 'true');
    assert.equal(h['x-credential-identifier'], undefined);
    const token = await s.issue();
    const authed = await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${token}` } });
    assert.equal(authed.json().headers['x-anonymous-consumer'], undefined);
    assert.equal(authed.json().headers['x-consumer-id'], s.consumer.id);

    const byId = await setup({ anonymous: 'placeholder' });
    await env.publish({ ...byId.content, plugins: [{ ...byId.plugin, config: { ...byId.plugin.config, anonymous: byId.anon.id } }, byId.content.plugins[1]] });
    assert.equal((await dp().call('/api/x', { https: false })).json().headers['x-consumer-id'], byId.anon.id);

    const missing = await setup({ anonymous: 'ghost' }, { anonymousConsumer: false });
    void missing;
    const err = await dp().call('/api/x', { https: false });
    assert.equal(err.status, 500);
    assert.deepEqual(err.json(), { message: "anonymous consumer ghost is configured but doesn't exist" });
  });
});

describe('RFC 7009 revocation and RFC 7662 introspection', () => {
  test('a client revokes its own access token; unknown tokens are 200; others are refused', async () => {
    const s = await setup();
    const mine = await s.issue(s.credential);
    const theirs = await s.issue(s.second);
    const auth = { authorization: basic(s.credential.client_id, s.credential.plain_secret) };
    const other = await dp().call('/api/oauth2/revoke', { form: { token: theirs }, headers: auth });
    assert.equal(other.status, 400);
    assert.equal(other.json().error, 'unauthorized_client');
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${theirs}` } })).status, 200, "someone else's token survives");

    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${mine}` } })).status, 200);
    const res = await dp().call('/api/oauth2/revoke', { form: { token: mine, token_type_hint: 'refresh_token' }, headers: auth });
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${mine}` } })).status, 401);
    assert.equal((await dp().call('/api/oauth2/revoke', { form: { token: 'unknown' }, headers: auth })).status, 200);
  });

  test('client authentication is required; HTTPS and POST too', async () => {
    const s = await setup();
    const token = await s.issue();
    const bad = await dp().call('/api/oauth2/revoke', { form: { token }, headers: { authorization: basic(s.credential.client_id, 'wrong') } });
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['www-authenticate'], 'Basic realm="OAuth2.0"');
    const none = await dp().call('/api/oauth2/revoke', { form: { token } });
    assert.equal(none.status, 401);
    assert.equal(none.json().error, 'invalid_client');
    assert.equal(none.headers['www-authenticate'], 'Basic realm="OAuth2.0"', 'a 401 names the scheme');
    const noneIntrospect = await dp().call('/api/oauth2/introspect', { form: { token } });
    assert.equal(noneIntrospect.status, 401);
    assert.equal(noneIntrospect.headers['www-authenticate'], 'Basic realm="OAuth2.0"');
    const badPost = await dp().call('/api/oauth2/introspect', { form: { token, client_id: s.credential.client_id, client_secret: 'wrong' } });
    assert.equal(badPost.status, 400, 'a failed client_secret_post stays 400');
    assert.equal(badPost.headers['www-authenticate'], undefined);
    const http = await dp().call('/api/oauth2/introspect', { https: false, form: { token, client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(http.json().error, 'access_denied');
    const get = await dp().call('/api/oauth2/revoke');
    assert.equal(get.status, 405);
    assert.equal(get.json().error_description, 'The HTTP method GET is invalid for the revocation endpoint');
    const missing = await dp().call('/api/oauth2/introspect', { form: { client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(missing.status, 400);
    assert.equal(missing.json().error, 'invalid_request');
  });

  test('revoking a refresh token revokes its grant', async () => {
    const s = await setup();
    const { access_token, refresh_token } = await s.passwordGrant('u1');
    const r = await dp().call('/api/oauth2/revoke', { form: { token: refresh_token, client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(r.status, 200);
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${access_token}` } })).status, 401);
    const again = await dp().call('/api/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token, client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(again.json().error_description, 'Invalid refresh_token');
  });

  test('introspection: active with claims for own tokens; {"active":false} for others, unknown and revoked', async () => {
    const s = await setup();
    const { access_token, refresh_token } = await s.passwordGrant('u2', 'read');
    const mine = { client_id: s.credential.client_id, client_secret: s.credential.plain_secret };
    const body = (await dp().call('/api/oauth2/introspect', { form: { token: access_token, ...mine } })).json();
    assert.equal(body.active, true);
    assert.equal(body.client_id, s.credential.client_id);
    assert.equal(body.scope, 'read');
    assert.equal(body.sub, 'u2');
    assert.equal(body.token_type, 'bearer');
    assert.equal(body.aud, s.service.id);
    assert.ok(body.exp - body.iat === 7200);
    const rt = (await dp().call('/api/oauth2/introspect', { form: { token: refresh_token, token_type_hint: 'refresh_token', ...mine } })).json();
    assert.equal(rt.active, true);
    assert.equal(rt.token_type, 'refresh_token');
    const theirs = await dp().call('/api/oauth2/introspect', { form: { token: access_token, client_id: s.second.client_id, client_secret: s.second.plain_secret } });
    assert.deepEqual(theirs.json(), { active: false });
    assert.deepEqual((await dp().call('/api/oauth2/introspect', { form: { token: 'nope', ...mine } })).json(), { active: false });
    await dp().call('/api/oauth2/revoke', { form: { token: access_token, ...mine } });
    assert.deepEqual((await dp().call('/api/oauth2/introspect', { form: { token: access_token, ...mine } })).json(), { active: false });
  });

  test("after the credential's client_id changed: introspection says inactive, the refresh token is refused", async () => {
    const s = await setup();
    const { access_token, refresh_token } = await s.passwordGrant('u3');
    const before = await dp().call('/api/oauth2/introspect', { form: { token: access_token, client_id: s.credential.client_id, client_secret: s.credential.plain_secret } });
    assert.equal(before.json().active, true);
    const renamed = { ...s.credential, client_id: `${s.credential.client_id}-renamed` };
    await env.publish({ ...s.content, credentials: { oauth2_credentials: [renamed, s.second] } });
    const auth = { client_id: renamed.client_id, client_secret: s.credential.plain_secret };
    assert.equal((await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${access_token}` } })).status, 401, 'refused on resource requests');
    assert.deepEqual((await dp().call('/api/oauth2/introspect', { form: { token: access_token, ...auth } })).json(), { active: false });
    assert.deepEqual((await dp().call('/api/oauth2/introspect', { form: { token: refresh_token, token_type_hint: 'refresh_token', ...auth } })).json(), { active: false });
    const refreshed = await dp().call('/api/oauth2/token', { form: { grant_type: 'refresh_token', refresh_token, ...auth } });
    assert.equal(refreshed.status, 400, refreshed.body);
    assert.deepEqual(refreshed.json(), { error: 'invalid_request', error_description: 'Invalid refresh_token' });
    // New tokens under the new client_id are fine.
    const fresh = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', ...auth } });
    assert.equal((await dp().call('/api/oauth2/introspect', { form: { token: fresh.json().access_token, ...auth } })).json().active, true);
  });

  test("after the credential's client_id changed: a code issued under the old one is not redeemable", async () => {
    const s = await setup({ enable_authorization_code: true });
    const auth = await dp().call('/api/oauth2/authorize', { form: { provision_key: s.provisionKey, authenticated_userid: 'u', client_id: s.credential.client_id, response_type: 'code' } });
    const code = new URL(auth.json().redirect_uri).searchParams.get('code')!;
    const renamed = { ...s.credential, client_id: `${s.credential.client_id}-renamed` };
    await env.publish({ ...s.content, credentials: { oauth2_credentials: [renamed, s.second] } });
    const res = await dp().call('/api/oauth2/token', { form: { grant_type: 'authorization_code', code, client_id: renamed.client_id, client_secret: s.credential.plain_secret } });
    assert.deepEqual(res.json(), { error: 'invalid_request', error_description: 'Invalid code' });
  });
});

describe('RFC 8414 metadata', () => {
  test('served over HTTPS at <route path>/.well-known/oauth-authorization-server with the enabled grants', async () => {
    await setup({ enable_authorization_code: true, enable_password_grant: false });
    // Over plain HTTP its https:// addresses would name the plain listener's port: refused as the endpoints are.
    const plain = await dp().call('/api/.well-known/oauth-authorization-server', { https: false });
    assert.equal(plain.status, 400);
    assert.deepEqual(plain.json(), { error: 'access_denied', error_description: 'You must use HTTPS' });
    const res = await dp().call('/api/.well-known/oauth-authorization-server');
    assert.equal(res.status, 200);
    const m = res.json();
    assert.equal(m.issuer, 'https://gateway.test/api');
    assert.equal(m.authorization_endpoint, 'https://gateway.test/api/oauth2/authorize');
    assert.equal(m.token_endpoint, 'https://gateway.test/api/oauth2/token');
    assert.equal(m.revocation_endpoint, 'https://gateway.test/api/oauth2/revoke');
    assert.equal(m.introspection_endpoint, 'https://gateway.test/api/oauth2/introspect');
    assert.deepEqual(m.grant_types_supported, ['authorization_code', 'client_credentials', 'refresh_token']);
    assert.deepEqual(m.response_types_supported, ['code']);
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(m.scopes_supported, ['read', 'write']);
    assert.ok(m.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
  });
});
