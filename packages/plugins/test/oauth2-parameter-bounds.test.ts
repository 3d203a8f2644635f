// Size bounds of the OAuth parameters (docs/oauth2.md): an oversized one is invalid_request
// naming it and its limit, at every endpoint, before anything is stored, and never echoed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { basic, standardSetup, startEnv, type Env } from './oauth2-helpers.ts';

let env: Env;
let setup: Awaited<ReturnType<typeof standardSetup>>;
before(async () => {
  env = await startEnv();
  setup = await standardSetup(env, {
    enable_authorization_code: true,
    enable_client_credentials: true,
    enable_password_grant: true,
    scopes: ['email', 'profile'],
  });
});
after(() => env.close());

const dp = () => env.dataPlanes[0];
const MB = 'u'.repeat(1024 * 1024);

/** The limits as docs/oauth2.md states them. */
const LIMITS: [string, number][] = [
  ['client_id', 255],
  ['client_secret', 255],
  ['provision_key', 255],
  ['authenticated_userid', 255],
  ['username', 255],
  ['password', 1024],
  ['code', 255],
  ['refresh_token', 1024],
  ['token', 1024],
  ['redirect_uri', 2048],
  ['scope', 2048],
  ['state', 2048],
  ['code_challenge', 128],
  ['code_verifier', 128],
  ['code_challenge_method', 32],
  ['grant_type', 64],
  ['response_type', 64],
  ['token_type_hint', 64],
];

const tooLong = (name: string, limit: number) => ({ error: 'invalid_request', error_description: `${name} must not be longer than ${limit} characters` });

function client() {
  return { client_id: setup.credential.client_id, client_secret: setup.credential.plain_secret };
}

describe('parameter bounds', () => {
  test('every parameter, at every endpoint: one character over its limit is invalid_request naming it; at the limit it is read', async () => {
    const base: Record<string, Record<string, string>> = {
      authorize: { provision_key: setup.provisionKey, authenticated_userid: 'u', client_id: setup.credential.client_id, response_type: 'code' },
      token: { grant_type: 'client_credentials', ...client() },
      revoke: { token: 'some-token', ...client() },
      introspect: { token: 'some-token', ...client() },
    };
    for (const [endpoint, params] of Object.entries(base)) {
      for (const [name, limit] of LIMITS) {
        const over = await dp().call(`/api/oauth2/${endpoint}`, { form: { ...params, [name]: 'x'.repeat(limit + 1) } });
        assert.equal(over.status, 400, `${endpoint} ${name}: ${over.body.slice(0, 200)}`);
        assert.deepEqual(over.json(), tooLong(name, limit), `${endpoint} ${name}`);
        assert.equal(over.headers['cache-control'], 'no-store');
        const at = await dp().call(`/api/oauth2/${endpoint}`, { form: { ...params, [name]: 'x'.repeat(limit) } });
        assert.notEqual(at.json().error_description, over.json().error_description, `${endpoint} ${name} at its limit`);
      }
    }
  });

  test('a 1 MB authenticated_userid is refused before it is stored, by every grant; 255 characters still reach the upstream', async () => {
    const password = { grant_type: 'password', provision_key: setup.provisionKey, ...client() };
    const requests = [
      dp().call('/api/oauth2/token', { form: { ...password, authenticated_userid: MB } }),
      dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials', provision_key: setup.provisionKey, authenticated_userid: MB, ...client() } }),
      dp().call('/api/oauth2/authorize', {
        form: { provision_key: setup.provisionKey, authenticated_userid: MB, client_id: setup.credential.client_id, response_type: 'code' },
      }),
      dp().call('/api/oauth2/authorize', {
        json: { provision_key: setup.provisionKey, authenticated_userid: MB, client_id: setup.credential.client_id, response_type: 'token' },
      }),
    ];
    for (const res of await Promise.all(requests)) {
      assert.equal(res.status, 400);
      assert.deepEqual(res.json(), tooLong('authenticated_userid', 255));
    }
    const longest = 'ü'.repeat(255);
    const ok = await dp().call('/api/oauth2/token', { form: { ...password, authenticated_userid: longest } });
    assert.equal(ok.status, 200, ok.body);
    const up = await dp().call('/api/x', { https: false, headers: { authorization: `Bearer ${ok.json().access_token}` } });
    assert.equal(up.status, 200);
    assert.equal(Buffer.from(up.json().headers['x-authenticated-userid'], 'latin1').toString('utf8'), longest);
  });

  test('scope and state are echoed only within their bounds', async () => {
    const cc = { grant_type: 'client_credentials', ...client() };
    const hugeScope = await dp().call('/api/oauth2/token', { form: { ...cc, scope: `email ${MB}` } });
    assert.deepEqual(hugeScope.json(), tooLong('scope', 2048));
    const hugeState = await dp().call('/api/oauth2/token', { form: { ...cc, state: MB } });
    assert.deepEqual(hugeState.json(), tooLong('state', 2048));
    // A state in a JSON body is measured by its JSON text, whatever its type.
    const objectState = await dp().call('/api/oauth2/token', { json: { ...cc, state: { a: MB } } });
    assert.deepEqual(objectState.json(), tooLong('state', 2048));
    const authorize = { provision_key: setup.provisionKey, authenticated_userid: 'u', client_id: setup.credential.client_id, response_type: 'code' };
    const redirected = await dp().call('/api/oauth2/authorize', { form: { ...authorize, state: MB } });
    assert.equal(redirected.status, 400);
    assert.deepEqual(redirected.json(), tooLong('state', 2048), 'plain JSON, no redirect carrying the state');

    // Within bounds they are echoed as before.
    const unknown = 'x'.repeat(2048);
    const invalid = await dp().call('/api/oauth2/token', { form: { ...cc, scope: unknown, state: 's'.repeat(2048) } });
    assert.deepEqual(invalid.json(), { error: 'invalid_scope', error_description: `"${unknown}" is an invalid scope`, state: 's'.repeat(2048) });
  });

  test('client credentials in a Basic header are bounded like the parameters', async () => {
    const longId = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials' }, headers: { authorization: basic('i'.repeat(256), 'secret') } });
    assert.equal(longId.status, 400);
    assert.deepEqual(longId.json(), tooLong('client_id', 255));
    const longSecret = await dp().call('/api/oauth2/introspect', { form: { token: 't' }, headers: { authorization: basic(setup.credential.client_id, 's'.repeat(256)) } });
    assert.deepEqual(longSecret.json(), tooLong('client_secret', 255));
    const ok = await dp().call('/api/oauth2/token', { form: { grant_type: 'client_credentials' }, headers: { authorization: basic(setup.credential.client_id, setup.credential.plain_secret) } });
    assert.equal(ok.status, 200, ok.body);
  });
});
