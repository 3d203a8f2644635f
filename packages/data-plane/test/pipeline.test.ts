// The plugin pipeline with small plugins defined here (not in the registry): phases, order,
// Kong's scope precedence, consumer-scoped configs after authentication, body buffering,
// failing handlers, and the handler lifecycle.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import type { PluginDefinition, PluginHandler, RequestContext } from '@gatehouse/core/plugin-sdk.ts';
import type { Snapshot } from '@gatehouse/core/snapshot.ts';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { KEYS as OAUTH2_KEYS } from '@gatehouse/plugins/oauth2/tokens.ts';
import { tempDir } from '@gatehouse/core/testing.ts';
import { startDataPlane, type DataPlane } from '../src/index.ts';
import { consumer, dpConfig, plugin, publish, req, route, service, snapshot, snapshotApplier, startUpstream, waitFor, type Echo, type Upstream } from './helpers.ts';

const calls: string[] = [];
let factoryCalls = 0;
const snapshotsSeen: number[] = [];
const logged: { id: string; status: number; consumer: string | null }[] = [];

/**
 * Tags the upstream request with its config's tag; `deny` short-circuits (with `denyReason` in a
 * header); `fail` throws; `async` waits `delayMs` (5) first; `raw` writes the tag into the
 * request's headers itself, past setUpstreamHeader's checks; `upstreamOnly` sets no response header.
 */
const tagger: PluginDefinition<{ tag: string; deny?: boolean; denyReason?: string; fail?: boolean; async?: boolean; delayMs?: number; raw?: boolean; upstreamOnly?: boolean }> = {
  name: 'tagger',
  version: '1.0.0',
  priority: 1000,
  configSchema: z.strictObject({
    tag: z.string(),
    deny: z.boolean().optional(),
    denyReason: z.string().optional(),
    fail: z.boolean().optional(),
    async: z.boolean().optional(),
    delayMs: z.number().optional(),
    raw: z.boolean().optional(),
    upstreamOnly: z.boolean().optional(),
  }),
  dataPlane: async () => ({
    default: () => {
      factoryCalls++;
      const handler: PluginHandler<{ tag: string; deny?: boolean; denyReason?: string; fail?: boolean; async?: boolean; delayMs?: number; raw?: boolean; upstreamOnly?: boolean }> = {
        onSnapshot(s: Snapshot) {
          snapshotsSeen.push(s.version);
        },
        async access(ctx, config) {
          calls.push(`tagger:${config.tag}`);
          if (config.async) await new Promise((r) => setTimeout(r, config.delayMs ?? 5));
          if (config.fail) throw new Error('tagger exploded');
          if (config.deny) return ctx.respond(403, { message: `denied by ${config.tag}` }, { 'x-denied': '1', ...(config.denyReason ? { 'x-deny-reason': config.denyReason } : {}) });
          if (config.raw) ctx.req.headers['x-tag'] = config.tag;
          else ctx.setUpstreamHeader('X-Tag', config.tag);
          ctx.setUpstreamHeader('X-Consumer-ID', ctx.consumer?.id ?? null);
        },
        response(ctx, config, upstream) {
          if (!config.upstreamOnly) ctx.res.setHeader('x-tagged', `${config.tag}:${upstream.statusCode}`);
        },
        log(ctx) {
          logged.push({ id: ctx.requestId, status: ctx.res.statusCode, consumer: ctx.consumer?.username ?? null });
        },
      };
      return handler;
    },
  }),
};

/** Authenticates `x-user: <username>` against the snapshot's consumers (runs before tagger). */
const userAuth: PluginDefinition<Record<string, never>> = {
  name: 'user-auth',
  version: '1.0.0',
  priority: 1400,
  configSchema: z.strictObject({}),
  dataPlane: async () => ({
    default: () => {
      let byName = new Map<string, Snapshot['consumers'][number]>();
      return {
        onSnapshot(s) {
          byName = new Map(s.consumers.map((c) => [c.username!, c]));
        },
        access(ctx: RequestContext) {
          calls.push('user-auth');
          const name = ctx.req.headers['x-user'];
          const c = typeof name === 'string' ? byName.get(name) : undefined;
          if (!c) return ctx.respond(401, { message: 'Unauthorized' });
          ctx.consumer = c;
          ctx.credential = { id: c.id, identifier: c.username! };
        },
      };
    },
  }),
};

/** Reads the body (bounded) and rewrites it and the query. */
const bodyRewrite: PluginDefinition<Record<string, never>> = {
  name: 'body-rewrite',
  version: '1.0.0',
  priority: 800,
  configSchema: z.strictObject({}),
  dataPlane: async () => ({
    default: () => ({
      async access(ctx) {
        const body = await ctx.readBody();
        ctx.setUpstreamBody(Buffer.from(body.toString().toUpperCase()));
        ctx.setUpstreamQuery(`len=${body.length}&scheme=${ctx.scheme}&ip=${ctx.clientIp}`);
      },
    }),
  }),
};

const registry = new Map<string, PluginDefinition>([
  ['tagger', tagger],
  ['user-auth', userAuth],
  ['body-rewrite', bodyRewrite],
]);

describe('plugin pipeline', () => {
  const store = new MemoryStore();
  const dir = tempDir();
  let dp: DataPlane;
  let port: number;
  let up: Upstream;
  const applier = snapshotApplier(store, () => dp);
  const apply = applier.apply;

  before(async () => {
    up = await startUpstream('main');
    dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path }), store, plugins: registry });
    port = dp.addresses[0].port;
  });
  after(async () => {
    await dp.close();
    await up.close();
    dir.remove();
  });

  test('Kong precedence: route beats service beats global; handlers created once, onSnapshot on every snapshot', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const other = service({ host: '127.0.0.1', port: up.port });
    const r1 = route({ paths: ['/r1'] }, svc);
    const r2 = route({ paths: ['/r2'] }, svc);
    const r3 = route({ paths: ['/r3'] }, other);
    await apply({
      services: [svc, other],
      routes: [r1, r2, r3],
      plugins: [
        plugin('tagger', { tag: 'global' }),
        plugin('tagger', { tag: 'service' }, { service: { id: svc.id } }),
        plugin('tagger', { tag: 'route' }, { route: { id: r1.id } }),
      ],
    });
    const e1: Echo = (await req(port, '/r1')).json();
    const e2: Echo = (await req(port, '/r2')).json();
    const res3 = await req(port, '/r3');
    assert.equal(e1.headers['x-tag'], 'route');
    assert.equal(e2.headers['x-tag'], 'service');
    assert.equal(res3.json().headers['x-tag'], 'global');
    assert.equal(res3.headers['x-tagged'], 'global:200', 'response phase saw the upstream status');
    await apply({ services: [svc], routes: [r1], plugins: [plugin('tagger', { tag: 'again' })] });
    assert.equal((await req(port, '/r1')).json().headers['x-tag'], 'again');
    assert.equal(factoryCalls, 1);
    assert.deepEqual(snapshotsSeen.slice(-2), [applier.version - 1, applier.version]);
  });

  test('priority order, consumer-scoped config after authentication, plugin-set identity headers reach the upstream', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const r = route({ paths: ['/auth'] }, svc);
    const alice = consumer('alice');
    const bob = consumer('bob');
    await apply({
      services: [svc],
      routes: [r],
      consumers: [alice, bob],
      plugins: [
        plugin('tagger', { tag: 'route' }, { route: { id: r.id } }),
        plugin('tagger', { tag: 'alice-on-route' }, { route: { id: r.id }, consumer: { id: alice.id } }),
        // Kong: consumer-only ranks above route-only (but below route+service).
        plugin('tagger', { tag: 'bob-global' }, { consumer: { id: bob.id } }),
        plugin('user-auth', {}, { route: { id: r.id } }),
      ],
    });
    calls.length = 0;
    const a: Echo = (await req(port, '/auth', { headers: { 'x-user': 'alice', 'x-consumer-id': 'spoof' } })).json();
    assert.deepEqual(calls, ['user-auth', 'tagger:alice-on-route']);
    assert.equal(a.headers['x-tag'], 'alice-on-route');
    assert.equal(a.headers['x-consumer-id'], alice.id);
    const b: Echo = (await req(port, '/auth', { headers: { 'x-user': 'bob' } })).json();
    assert.equal(b.headers['x-tag'], 'bob-global');
    const denied = await req(port, '/auth', { headers: { 'x-consumer-id': 'spoof' } });
    assert.equal(denied.status, 401);
    assert.deepEqual(denied.json(), { message: 'Unauthorized' });
    await waitFor('log phase', () => logged.some((l) => l.status === 401));
    assert.ok(logged.some((l) => l.consumer === 'alice' && l.status === 200));
  });

  test('respond() short-circuits: the upstream is not called, later plugins do not run', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const r = route({ paths: ['/deny'] }, svc);
    await apply({ services: [svc], routes: [r], plugins: [plugin('tagger', { tag: 'gate', deny: true, async: true }, { route: { id: r.id } }), plugin('body-rewrite', {}, { route: { id: r.id } })] });
    const before = up.requests;
    const res = await req(port, '/deny', { method: 'POST', body: 'x'.repeat(100_000) });
    assert.equal(res.status, 403);
    assert.deepEqual(res.json(), { message: 'denied by gate' });
    assert.equal(res.headers['x-denied'], '1');
    assert.equal(up.requests, before);
  });

  test('readBody / setUpstreamBody / setUpstreamQuery; bodies over 8 MiB get 413', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const r = route({ paths: ['/body'] }, svc);
    await apply({ services: [svc], routes: [r], plugins: [plugin('body-rewrite', {}, { route: { id: r.id } })] });
    const echo: Echo = (await req(port, '/body?drop=me', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })).json();
    assert.equal(echo.body, 'HELLO');
    assert.equal(echo.url, '/?len=5&scheme=http&ip=127.0.0.1');
    assert.equal(echo.headers['content-length'], '5');
    const chunked = await req(port, '/body', { method: 'POST', body: Buffer.alloc(9 * 1024 * 1024), headers: { 'transfer-encoding': 'chunked' } });
    assert.equal(chunked.status, 413);
  });

  test('a throwing handler: 500 with Kong message, the request id logged, the data plane keeps serving', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const bad = route({ paths: ['/boom'] }, svc);
    const good = route({ paths: ['/fine'] }, svc);
    await apply({ services: [svc], routes: [bad, good], plugins: [plugin('tagger', { tag: 'x', fail: true, async: true }, { route: { id: bad.id } })] });
    const res = await req(port, '/boom');
    assert.equal(res.status, 500);
    assert.deepEqual(res.json(), { message: 'An unexpected error occurred' });
    assert.ok(res.headers['x-request-id']);
    assert.equal((await req(port, '/fine')).status, 200);
  });

  test('a plugin that sets an upstream header Node refuses to send (a newline in it): 500, the data plane keeps serving', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const sync = route({ paths: ['/newline-sync'] }, svc);
    const later = route({ paths: ['/newline-async'] }, svc);
    const raw = route({ paths: ['/newline-raw'] }, svc);
    const good = route({ paths: ['/fine'] }, svc);
    await apply({
      services: [svc],
      routes: [sync, later, raw, good],
      plugins: [
        plugin('tagger', { tag: 'a\nb' }, { route: { id: sync.id } }),
        plugin('tagger', { tag: 'a\r\nX-Injected: 1', async: true }, { route: { id: later.id } }),
        plugin('tagger', { tag: 'a\nb', async: true, raw: true }, { route: { id: raw.id } }),
      ],
    });
    const before = up.requests;
    for (const path of ['/newline-sync', '/newline-async', '/newline-raw']) {
      const res = await req(port, path);
      assert.equal(res.status, 500, path);
      assert.deepEqual(res.json(), { message: 'An unexpected error occurred' });
      assert.ok(res.headers['x-request-id']);
    }
    assert.equal(up.requests, before, 'nothing reached the upstream');
    assert.equal((await req(port, '/fine')).status, 200);
  });

  test('an upstream header a plugin sets beyond ASCII (José, 张伟) goes as its UTF-8 bytes, as Kong sends it', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const values = ['José', '张伟 José 😀'];
    const routes = values.map((_, i) => route({ paths: [`/utf8-${i}`] }, svc));
    await apply({ services: [svc], routes, plugins: values.map((tag, i) => plugin('tagger', { tag, upstreamOnly: true }, { route: { id: routes[i].id } })) });
    for (const [i, tag] of values.entries()) {
      const res = await req(port, `/utf8-${i}`);
      assert.equal(res.status, 200);
      // Node reads header bytes as Latin-1: turned back into the bytes, they are the UTF-8 of the value.
      assert.equal(Buffer.from(res.json().headers['x-tag'], 'latin1').toString('utf8'), tag);
    }
  });

  test("respond() with a header Node refuses: the plugin's 500, without the headers it had set", async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const r = route({ paths: ['/deny-badly'] }, svc);
    await apply({ services: [svc], routes: [r], plugins: [plugin('tagger', { tag: 'gate', deny: true, denyReason: 'a\nb' }, { route: { id: r.id } })] });
    const res = await req(port, '/deny-badly');
    assert.equal(res.status, 500);
    assert.deepEqual(res.json(), { message: 'An unexpected error occurred' });
    assert.equal(res.headers['x-denied'], undefined);
    assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
  });

  test('a client that leaves while an access plugin is still working: nothing is sent upstream', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const slow = route({ paths: ['/slow-plugin'] }, svc);
    await apply({ services: [svc], routes: [slow], plugins: [plugin('tagger', { tag: 'slow', async: true, delayMs: 300 }, { route: { id: slow.id } })] });
    const before = up.requests;
    for (const method of ['GET', 'DELETE', 'POST']) {
      const client = httpRequest({ host: '127.0.0.1', port, path: '/slow-plugin', method, agent: false, headers: { 'content-length': '0' } });
      client.on('error', () => {});
      client.end();
      await new Promise((r) => setTimeout(r, 50));
      client.destroy();
    }
    // Past the plugin's 300 ms: a forwarded request would have reached the upstream by now.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(up.requests, before, 'a request went upstream for a client that had left');
    assert.equal((await req(port, '/slow-plugin')).status, 200);
  });

  test('disabled plugins and plugins not configured for the scheme are skipped', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const r = route({ paths: ['/skip'] }, svc);
    await apply({
      services: [svc],
      routes: [r],
      plugins: [
        plugin('tagger', { tag: 'off', deny: true }, { route: { id: r.id }, enabled: false }),
        plugin('user-auth', {}, { route: { id: r.id }, protocols: ['https'] }),
      ],
    });
    const res = await req(port, '/skip');
    assert.equal(res.status, 200);
    assert.equal(res.json().headers['x-tag'], undefined);
  });
});

describe('plugin pipeline with the real registry (oauth2)', () => {
  const store = new MemoryStore();
  const dir = tempDir();
  let dp: DataPlane;
  let up: Upstream;

  before(async () => {
    up = await startUpstream('protected');
    // No `plugins` option: the data plane loads the registry (@gatehouse/plugins) itself.
    dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path }), store });
    // As the control plane marks a token store it has restored (else unknown tokens are 503).
    await store.set(OAUTH2_KEYS.sentinel, '1');
  });
  after(async () => {
    await dp.close();
    await up.close();
    dir.remove();
  });

  test('an oauth2-protected route rejects a request without a token before the upstream, as Kong does', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    const open = route({ paths: ['/open'] }, svc);
    const guarded = route({ paths: ['/guarded'] }, svc);
    const snap = snapshot(1, {
      services: [svc],
      routes: [open, guarded],
      plugins: [
        plugin(
          'oauth2',
          {
            scopes: null, mandatory_scope: false, provision_key: 'provision-key-0123456789abcdef', token_expiration: 7200,
            enable_authorization_code: false, enable_implicit_grant: false, enable_client_credentials: true, enable_password_grant: false,
            hide_credentials: false, accept_http_if_already_terminated: false, anonymous: null, global_credentials: false,
            auth_header_name: 'authorization', refresh_token_ttl: 1209600, reuse_refresh_token: false, pkce: 'lax', realm: null,
          },
          { route: { id: guarded.id }, protocols: ['http', 'https'] },
        ),
      ],
      credentials: { oauth2_credentials: [] },
    });
    await publish(store, snap);
    await waitFor('snapshot with oauth2', () => dp.configVersion?.version === 1);
    const before = up.requests;
    const res = await req(dp.addresses[0].port, '/guarded/data', { headers: { 'x-consumer-id': 'spoofed' } });
    assert.equal(res.status, 401);
    assert.deepEqual(res.json(), { error: 'invalid_request', error_description: 'The access token is missing' });
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    assert.equal(up.requests, before, 'the upstream was not called');
    const bad = await req(dp.addresses[0].port, '/guarded/data', { headers: { authorization: 'Bearer not-a-token' } });
    assert.equal(bad.status, 401);
    assert.equal(bad.json().error, 'invalid_token');
    const ok = await req(dp.addresses[0].port, '/open/x');
    assert.equal(ok.status, 200);
  });
});
