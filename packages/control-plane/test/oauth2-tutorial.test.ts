// The admin half of Kong's OAuth 2.0 tutorial (the "StepOn" walkthrough), with the same curl
// requests (form bodies), against the real app with the oauth2 plugin's own admin entities.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { sha256Hex } from '@gatehouse/core/crypto.ts';
import { openTestApp, type TestApp } from './helpers.ts';

let t: TestApp;
let api: ReturnType<typeof request>;
before(async () => {
  t = await openTestApp({ pluginParts: true });
  api = request(t.app);
});
after(async () => {
  await t.close();
});

test('service, route, consumer, oauth2 plugin and application as in the tutorial', async () => {
  // curl -X POST http://localhost:8001/services --data "name=stepon" --data "url=http://mockbin.org/request"
  const service = await api.post('/services').type('form').send({ name: 'stepon', url: 'http://mockbin.org/request' }).expect(201);
  assert.equal(service.body.name, 'stepon');
  assert.equal(service.body.host, 'mockbin.org');
  assert.equal(service.body.path, '/request');
  assert.equal(service.body.protocol, 'http');
  assert.equal(service.body.port, 80);

  // curl -X POST http://localhost:8001/services/stepon/routes --data "paths[]=/stepon"
  const route = await api.post('/services/stepon/routes').type('form').send('paths[]=/stepon').expect(201);
  assert.deepEqual(route.body.paths, ['/stepon']);
  assert.deepEqual(route.body.service, { id: service.body.id });
  assert.deepEqual(route.body.protocols, ['http', 'https']);
  assert.equal(route.body.name, null);

  // curl -X POST http://localhost:8001/services/stepon/plugins --data "name=oauth2" \
  //   --data "config.scopes=user_profile" --data "config.scopes=biometric" --data "config.scopes=step_counts" \
  //   --data "config.enable_authorization_code=true"
  const plugin = await api
    .post('/services/stepon/plugins')
    .type('form')
    .send('name=oauth2&config.scopes=user_profile&config.scopes=biometric&config.scopes=step_counts&config.enable_authorization_code=true')
    .expect(201);
  assert.equal(plugin.body.name, 'oauth2');
  assert.deepEqual(plugin.body.service, { id: service.body.id });
  assert.equal(plugin.body.route, null);
  assert.equal(plugin.body.consumer, null);
  assert.equal(plugin.body.enabled, true);
  assert.deepEqual(plugin.body.protocols, ['grpc', 'grpcs', 'http', 'https']);
  assert.deepEqual(plugin.body.config, {
    scopes: ['user_profile', 'biometric', 'step_counts'],
    mandatory_scope: false,
    provision_key: plugin.body.config.provision_key,
    token_expiration: 7200,
    enable_authorization_code: true,
    enable_implicit_grant: false,
    enable_client_credentials: false,
    enable_password_grant: false,
    hide_credentials: false,
    accept_http_if_already_terminated: false,
    anonymous: null,
    global_credentials: false,
    auth_header_name: 'authorization',
    refresh_token_ttl: 1209600,
    reuse_refresh_token: false,
    pkce: 'lax',
    realm: null,
  });
  assert.match(plugin.body.config.provision_key, /^[A-Za-z0-9]{32}$/);
  assert.deepEqual(Object.keys(plugin.body.config), [
    'scopes', 'mandatory_scope', 'provision_key', 'token_expiration', 'enable_authorization_code', 'enable_implicit_grant',
    'enable_client_credentials', 'enable_password_grant', 'hide_credentials', 'accept_http_if_already_terminated', 'anonymous',
    'global_credentials', 'auth_header_name', 'refresh_token_ttl', 'reuse_refresh_token', 'pkce', 'realm',
  ], 'config in the schema order');

  // The same plugin in JSON is a 409 (one per name/route/service/consumer).
  await api
    .post('/plugins')
    .send({ name: 'oauth2', service: { id: service.body.id }, config: { scopes: ['user_profile', 'biometric', 'step_counts'], enable_authorization_code: true } })
    .expect(409);

  // curl -X POST http://localhost:8001/consumers --data "username=stepon_user"
  const consumer = await api.post('/consumers').type('form').send({ username: 'stepon_user' }).expect(201);
  assert.equal(consumer.body.username, 'stepon_user');
  assert.equal(consumer.body.custom_id, null);

  // curl -X POST http://localhost:8001/consumers/stepon_user/oauth2 --data "name=Stepon Application" \
  //   --data "redirect_uris[]=http://localhost:8080/callback"
  const app = await api
    .post('/consumers/stepon_user/oauth2')
    .type('form')
    .send('name=Stepon Application&redirect_uris[]=http://localhost:8080/callback')
    .expect(201);
  assert.equal(app.body.name, 'Stepon Application');
  assert.deepEqual(app.body.consumer, { id: consumer.body.id });
  assert.deepEqual(app.body.redirect_uris, ['http://localhost:8080/callback']);
  assert.match(app.body.client_id, /^[A-Za-z0-9]{32}$/);
  assert.match(app.body.client_secret, /^[A-Za-z0-9]{32}$/);
  assert.equal(app.body.hash_secret, false);
  assert.equal(app.body.client_type, 'confidential');

  // The consent page looks the application up by client_id.
  const byClientId = await api.get(`/oauth2/${app.body.client_id}`).expect(200);
  assert.equal(byClientId.body.id, app.body.id);
  const nested = await api.get(`/consumers/stepon_user/oauth2`).expect(200);
  assert.equal(nested.body.data.length, 1);
  assert.equal(nested.body.next, null);
  const owner = await api.get(`/oauth2/${app.body.id}/consumer`).expect(200);
  assert.equal(owner.body.username, 'stepon_user');

  // The data planes get all of it in the next snapshot, the application with its client_id.
  await t.publisher.flush();
  const pointer = JSON.parse((await t.store.get('config:latest'))!);
  const snapshot = JSON.parse((await t.store.get(`config:snapshot:${pointer.version}`))!);
  assert.equal(snapshot.services[0].name, 'stepon');
  assert.deepEqual(snapshot.routes[0].paths, ['/stepon']);
  // The provision_key only as its hash: the admin API above is the one place that shows it.
  assert.equal(snapshot.plugins[0].config.provision_key, `$sha256$${sha256Hex(plugin.body.config.provision_key)}`);
  assert.equal(snapshot.consumers[0].username, 'stepon_user');
  const creds = Object.values(snapshot.credentials).flat() as any[];
  assert.ok(creds.some((c) => c.client_id === app.body.client_id));
});
