// oauth2 next to another authentication plugin (Kong's "multiple authentication" rules): with
// `anonymous` set the plugins are OR-ed (an earlier success stands, oauth2 only clears its own
// headers); without it they are AND-ed (oauth2 still demands a token). The other plugin is a real
// plugin of this test, run by the real data plane at a higher priority, like Kong's jwt (1450).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { z } from 'zod';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import { plugins as registry } from '../src/index.ts';
import { makeConsumer, makeCredential, makeOauth2Plugin, makeRoute, makeService, startEnv, type Env } from './oauth2-helpers.ts';

let env: Env;
let headerAuthConsumer = makeConsumer('header-user');

// Authenticates requests carrying `x-demo-user: <username>` (a stand-in for key-auth).
const headerAuth: PluginDefinition = {
  name: 'header-auth',
  version: '0.0.1',
  priority: 1450,
  configSchema: z.strictObject({}),
  dataPlane: async () => ({
    default: () => ({
      access(ctx) {
        if (ctx.req.headers['x-demo-user'] === headerAuthConsumer.username) {
          ctx.consumer = headerAuthConsumer;
          ctx.credential = { id: 'demo', identifier: 'demo' };
          ctx.shared.authenticated = true;
          ctx.setUpstreamHeader('X-Consumer-Username', headerAuthConsumer.username);
        }
      },
    }),
  }),
};

before(async () => {
  env = await startEnv({ plugins: new Map([...registry, ['header-auth', headerAuth]]) });
});
after(() => env.close());

async function configure(oauth2: Record<string, unknown>) {
  const service = makeService(env.upstream.port);
  const route = makeRoute(['/api'], service);
  const oauth = makeOauth2Plugin({ enable_client_credentials: true, ...oauth2 }, { service: { id: service.id } });
  const other = { ...makeOauth2Plugin({ enable_client_credentials: true }, { service: { id: service.id } }), name: 'header-auth', config: {} };
  const consumer = makeConsumer('bob');
  const anon = makeConsumer('anon');
  headerAuthConsumer = makeConsumer('header-user');
  const credential = await makeCredential(consumer);
  await env.publish({
    services: [service],
    routes: [route],
    plugins: [oauth, other],
    consumers: [consumer, anon, headerAuthConsumer],
    credentials: { oauth2_credentials: [credential] },
  });
  return { credential };
}

test('logical OR (anonymous set): another plugin authenticated, oauth2 stands aside and clears its headers', async () => {
  await configure({ anonymous: 'anon' });
  const res = await env.dataPlanes[0].call('/api/x', {
    https: false,
    headers: { 'x-demo-user': 'header-user', 'x-authenticated-scope': 'admin', 'x-authenticated-userid': 'root' },
  });
  assert.equal(res.status, 200, res.body);
  const h = res.json().headers;
  assert.equal(h['x-consumer-username'], 'header-user');
  assert.equal(h['x-authenticated-scope'], undefined);
  assert.equal(h['x-authenticated-userid'], undefined);
  assert.equal(h['x-anonymous-consumer'], undefined);
  // Nobody authenticated: the anonymous consumer.
  const anon = await env.dataPlanes[0].call('/api/x', { https: false });
  assert.equal(anon.json().headers['x-consumer-username'], 'anon');
  assert.equal(anon.json().headers['x-anonymous-consumer'], 'true');
});

test('logical AND (no anonymous): another plugin succeeding is not enough', async () => {
  const { credential } = await configure({});
  const res = await env.dataPlanes[0].call('/api/x', { https: false, headers: { 'x-demo-user': 'header-user' } });
  assert.equal(res.status, 401);
  assert.equal(res.json().error_description, 'The access token is missing');
  const tok = await env.dataPlanes[0].call('/api/oauth2/token', { form: { grant_type: 'client_credentials', client_id: credential.client_id, client_secret: credential.plain_secret } });
  const both = await env.dataPlanes[0].call('/api/x', { https: false, headers: { 'x-demo-user': 'header-user', authorization: `Bearer ${tok.json().access_token}` } });
  assert.equal(both.status, 200);
  assert.equal(both.json().headers['x-consumer-username'], 'bob', 'oauth2 runs last (lower priority) and sets its consumer');
});
