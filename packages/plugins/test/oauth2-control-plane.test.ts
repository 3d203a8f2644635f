// The oauth2 control-plane part on its own: the event consumer's crash recovery (entries
// delivered but never acknowledged come back through xpending), idempotent replays, the
// restore after Redis lost its data, and the all-in-one mode on the in-process store.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '@gatehouse/core/config.ts';
import { newId, sha256Hex } from '@gatehouse/core/crypto.ts';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { openTestDatabase, tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import type { Database } from '@gatehouse/core/db/client.ts';
import { startControlPlane } from '@gatehouse/control-plane';
import { startDataPlane } from '@gatehouse/data-plane';
import { CONSUMER_GROUP, createOauth2ControlPlane } from '../src/oauth2/control-plane.ts';
import { KEYS, TokenStore, type TokenRecord } from '../src/oauth2/tokens.ts';
import { request, silent, startEchoUpstream, startTcpRelay } from './oauth2-helpers.ts';

let db: Database;
let closeDb: () => Promise<void>;
let consumerId: string;
let credentialId: string;

before(async () => {
  const t = await openTestDatabase();
  db = t.db;
  closeDb = t.close;
  consumerId = newId();
  credentialId = newId();
  await db.prisma.consumer.create({ data: { id: consumerId, username: 'bob', createdAt: 1, updatedAt: 1 } });
  await db.prisma.oauth2Credential.create({
    data: { id: credentialId, consumerId, name: 'app', clientId: 'cid', clientSecret: '$sha256$x$y', createdAt: 1 },
  });
});
after(() => closeDb());

function record(fields: Partial<TokenRecord> = {}): TokenRecord {
  const now = Math.floor(Date.now() / 1000);
  return {
    id: newId(),
    credential_id: credentialId,
    client_id: 'cid',
    service_id: null,
    plugin_id: null,
    expires_in: 3600,
    created_at: now,
    scope: 'a',
    authenticated_userid: 'u',
    grant_id: newId(),
    access_hash: sha256Hex(newId()),
    refresh_hash: sha256Hex(newId()),
    purge_at: now + 86400,
    ...fields,
  };
}

const waitFor = async (what: string, fn: () => Promise<boolean>, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('event consumer', () => {
  test('entries delivered before a crash (never acknowledged) are applied after restart; replays are harmless', async () => {
    const prefix = testRedisPrefix();
    const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
    try {
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix });
      const tokens = new TokenStore(store);
      const lost = record();
      // A previous control plane took the entry and died before writing it.
      await store.xgroupEnsure(KEYS.stream, CONSUMER_GROUP);
      await tokens.emit({ t: 'token', token: lost });
      const taken = await store.xreadgroup(KEYS.stream, CONSUMER_GROUP, 'cp-crashed', 10, 100);
      assert.equal(taken.length, 1);
      assert.equal(await db.prisma.oauth2Token.count({ where: { id: lost.id } }), 0);

      const part = createOauth2ControlPlane({ config, db, store, logger: silent }, { consumerName: 'cp-crashed', sentinelIntervalMs: 100 });
      const stop = await part.start!();
      try {
        await waitFor('redelivered row', async () => (await db.prisma.oauth2Token.count({ where: { id: lost.id } })) === 1);
        assert.deepEqual(await store.xpending(KEYS.stream, CONSUMER_GROUP, 'cp-crashed', 10), [], 'acknowledged');
        // The same event again (at-least-once delivery), then an update and a grant revocation.
        await tokens.emit({ t: 'token', token: lost });
        const second = record({ grant_id: lost.grant_id });
        await tokens.emit({ t: 'token', token: second });
        await waitFor('second row', async () => (await db.prisma.oauth2Token.count({ where: { grantId: lost.grant_id } })) === 2);
        await tokens.emit({ t: 'token_update', id: second.id, access_hash: 'f'.repeat(64), created_at: second.created_at + 5, expires_in: 10, purge_at: null });
        await waitFor('update', async () => (await db.prisma.oauth2Token.findUnique({ where: { id: second.id } }))?.accessTokenHash === 'f'.repeat(64));
        // A token whose credential no longer exists is dropped, not retried forever.
        await tokens.emit({ t: 'token', token: record({ credential_id: newId() }) });
        await tokens.emit({ t: 'grant_revoke', grant_id: lost.grant_id });
        await waitFor('grant revoked', async () => (await db.prisma.oauth2Token.count({ where: { grantId: lost.grant_id } })) === 0);
        await waitFor('all acknowledged', async () => (await store.xpending(KEYS.stream, CONSUMER_GROUP, 'cp-crashed', 10)).length === 0);
      } finally {
        await stop();
      }
    } finally {
      await store.del(KEYS.stream, KEYS.sentinel);
      await store.close();
    }
  });

  test('tokens and codes issued under a client_id the credential no longer has are not written', async () => {
    const prefix = testRedisPrefix();
    const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
    const crid = newId();
    await db.prisma.oauth2Credential.create({ data: { id: crid, consumerId, name: 'renamed', clientId: 'cid-new', clientSecret: '$sha256$x$y', createdAt: 1 } });
    try {
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix });
      const part = createOauth2ControlPlane({ config, db, store, logger: silent }, { sentinelIntervalMs: 100 });
      const stop = await part.start!();
      try {
        const tokens = new TokenStore(store);
        // Still in the stream when the client_id changed from cid-old to cid-new.
        const stale = record({ credential_id: crid, client_id: 'cid-old' });
        const now = Math.floor(Date.now() / 1000);
        const code = (clientId: string | undefined) => ({
          id: newId(), credential_id: crid, ...(clientId ? { client_id: clientId } : {}), service_id: null, plugin_id: null, authenticated_userid: 'u', scope: null,
          redirect_uri: null, challenge: null, challenge_method: null, grant_id: newId(), created_at: now, expires_at: now + 300, code_hash: sha256Hex(newId()),
        });
        const staleCode = code('cid-old');
        const current = record({ credential_id: crid, client_id: 'cid-new' });
        const currentCode = code('cid-new');
        const olderCode = code(undefined);
        await tokens.emit({ t: 'token', token: stale });
        await tokens.emit({ t: 'code', code: staleCode });
        await tokens.emit({ t: 'token', token: current });
        await tokens.emit({ t: 'code', code: currentCode });
        await tokens.emit({ t: 'code', code: olderCode });
        await waitFor('current token written', async () => (await db.prisma.oauth2Token.count({ where: { id: current.id } })) === 1);
        await waitFor('codes written', async () => (await db.prisma.oauth2AuthorizationCode.count({ where: { id: { in: [currentCode.id, olderCode.id] } } })) === 2);
        await waitFor('all acknowledged', async () => (await store.xpending(KEYS.stream, CONSUMER_GROUP, 'control-plane', 10)).length === 0);
        assert.equal(await db.prisma.oauth2Token.count({ where: { id: stale.id } }), 0, 'stale token not written');
        assert.equal(await db.prisma.oauth2AuthorizationCode.count({ where: { id: staleCode.id } }), 0, 'stale code not written');
      } finally {
        await stop();
      }
    } finally {
      await db.prisma.oauth2Credential.delete({ where: { id: crid } });
      await store.del(KEYS.stream, KEYS.sentinel);
      await store.close();
    }
  });

  test('Postgres unreachable: events stay pending and are written once it is back', async () => {
    const prefix = testRedisPrefix();
    const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
    const t = await openTestDatabase();
    const relay = await startTcpRelay(t.testDb.url);
    const { openDatabase } = await import('@gatehouse/core/db/client.ts');
    const viaRelay = await openDatabase({ databaseUrl: relay.url, dataDir: '/tmp' });
    try {
      const cid = newId();
      const crid = newId();
      await t.db.prisma.consumer.create({ data: { id: cid, username: 'bob', createdAt: 1, updatedAt: 1 } });
      await t.db.prisma.oauth2Credential.create({ data: { id: crid, consumerId: cid, name: 'app', clientId: 'cid2', clientSecret: '$sha256$x$y', createdAt: 1 } });
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix });
      const part = createOauth2ControlPlane({ config, db: viaRelay, store, logger: silent }, { sentinelIntervalMs: 100 });
      const stop = await part.start!();
      try {
        const tokens = new TokenStore(store);
        const before = record({ credential_id: crid, client_id: 'cid2' });
        await tokens.emit({ t: 'token', token: before });
        await waitFor('written while up', async () => (await t.db.prisma.oauth2Token.count({ where: { id: before.id } })) === 1);
        await relay.cut();
        const during = [record({ credential_id: crid, client_id: 'cid2' }), record({ credential_id: crid, client_id: 'cid2' })];
        for (const r of during) await tokens.emit({ t: 'token', token: r });
        await tokens.emit({ t: 'token_delete', ids: [before.id] });
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(await t.db.prisma.oauth2Token.count({ where: { id: { in: during.map((r) => r.id) } } }), 0, 'not written while down');
        await relay.restore();
        await waitFor(
          'written after recovery',
          async () =>
            (await t.db.prisma.oauth2Token.count({ where: { id: { in: during.map((r) => r.id) } } })) === 2 &&
            (await t.db.prisma.oauth2Token.count({ where: { id: before.id } })) === 0,
          15_000,
        );
      } finally {
        await stop();
      }
    } finally {
      await viaRelay.close().catch(() => {});
      await relay.close();
      await store.del(KEYS.stream, KEYS.sentinel);
      await store.close();
      await t.close();
    }
  });

  test('restore: live tokens and unused codes go back into an empty store; expired ones do not', async () => {
    const prefix = testRedisPrefix();
    const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
    try {
      const now = Math.floor(Date.now() / 1000);
      const live = record();
      const expiredAccess = record({ created_at: now - 7200, expires_in: 60 });
      for (const r of [live, expiredAccess]) {
        await db.prisma.oauth2Token.create({
          data: {
            id: r.id, credentialId, expiresIn: r.expires_in, accessTokenHash: r.access_hash, refreshTokenHash: r.refresh_hash,
            authenticatedUserid: r.authenticated_userid, scope: r.scope, grantId: r.grant_id, createdAt: r.created_at, purgeAt: r.purge_at,
          },
        });
      }
      const codeHash = sha256Hex(newId());
      await db.prisma.oauth2AuthorizationCode.create({
        data: { id: newId(), codeHash, credentialId, grantId: newId(), createdAt: now, expiresAt: now + 200, authenticatedUserid: 'u' },
      });
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix });
      const part = createOauth2ControlPlane({ config, db, store, logger: silent }, { sentinelIntervalMs: 100 });
      const stop = await part.start!();
      try {
        assert.equal(await store.exists(KEYS.sentinel), true);
        const tokens = new TokenStore(store);
        assert.equal((await tokens.lookupAccess(live.access_hash))?.id, live.id);
        assert.equal((await tokens.lookupRefresh(live.refresh_hash!))?.id, live.id);
        assert.equal(await tokens.lookupAccess(expiredAccess.access_hash), null, 'expired access token not restored');
        assert.equal((await tokens.lookupRefresh(expiredAccess.refresh_hash!))?.id, expiredAccess.id, 'its refresh token is');
        assert.equal((await tokens.lookupCode(codeHash))?.authenticated_userid, 'u');
        assert.deepEqual((await store.smembers(KEYS.grant(live.grant_id))).sort(), [`a:${live.access_hash}`, `r:${live.refresh_hash}`].sort());
        // Losing the data again (sentinel gone) triggers another restore.
        await store.del(KEYS.sentinel, KEYS.access(live.access_hash));
        await waitFor('restored again', async () => (await store.exists(KEYS.sentinel)) && (await store.exists(KEYS.access(live.access_hash))));
      } finally {
        await stop();
      }
    } finally {
      const tokens = await db.prisma.oauth2Token.findMany();
      await store.del(KEYS.stream, KEYS.sentinel, ...tokens.flatMap((t) => [KEYS.access(t.accessTokenHash), KEYS.refresh(t.refreshTokenHash ?? '')]));
      await db.prisma.oauth2Token.deleteMany();
      await db.prisma.oauth2AuthorizationCode.deleteMany();
      await store.close();
    }
  });
});

describe('all-in-one mode (in-process store)', () => {
  for (const database of ['postgres', 'pglite'] as const) {
    test(`issue, persist, revoke, and survive a restart through the database (${database})`, async () => {
      const t = await openTestDatabase();
      const upstream = await startEchoUpstream();
      const dirs = [tempDir(), tempDir()];
      const config = loadConfig({
        DATABASE_URL: database === 'postgres' ? t.testDb.url : '',
        GATEHOUSE_ADMIN_LISTEN: '127.0.0.1:0',
        GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl',
        GATEHOUSE_DATA_DIR: dirs[0].path,
        GATEHOUSE_LOG_LEVEL: 'error',
      });
      const boot = async () => {
        const store = new MemoryStore();
        const cp = await startControlPlane({ config, store, logger: silent });
        const dp = await startDataPlane({ config: { ...config, dataDir: dirs[1].path }, store, logger: silent, pollIntervalMs: 100 });
        const https = dp.addresses.find((a) => a.ssl)!.port;
        const http = dp.addresses.find((a) => !a.ssl)!.port;
        return { cp, dp, store, https, http, admin: cp.adminAddresses[0].url };
      };
      let node = await boot();
      try {
        const api = async (method: string, path: string, body?: unknown) => {
          const res = await fetch(`${node.admin}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
          const text = await res.text();
          return { status: res.status, body: text ? JSON.parse(text) : null };
        };
        await api('POST', '/services', { name: 's', url: `http://127.0.0.1:${upstream.port}` });
        await api('POST', '/services/s/routes', { paths: ['/api'] });
        assert.equal((await api('POST', '/services/s/plugins', { name: 'oauth2', config: { enable_client_credentials: true } })).status, 201);
        await api('POST', '/consumers', { username: 'bob' });
        const cred = (await api('POST', '/consumers/bob/oauth2', { name: 'app' })).body;
        const form = { form: { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }, https: true };
        let token = '';
        await waitFor('token issued', async () => {
          const r = await request(node.https, '/api/oauth2/token', form);
          // The echo upstream answers 200 too until the snapshot with the plugin arrives: a token says it has.
          const issued = r.status === 200 ? r.json().access_token : undefined;
          if (typeof issued === 'string') token = issued;
          return typeof issued === 'string';
        });
        const use = () => request(node.http, '/api/x', { headers: { authorization: `Bearer ${token}` } });
        assert.equal((await use()).status, 200);
        await waitFor('persisted', async () => (await api('GET', `/oauth2_tokens/${token}`)).status === 200);

        // Restart: a new in-process store starts empty; the control plane restores from Postgres.
        await node.dp.close();
        await node.cp.close();
        node = await boot();
        await waitFor('served after restart', async () => (await use()).status === 200);

        assert.equal((await api('DELETE', `/oauth2_tokens/${token}`)).status, 204);
        assert.equal((await use()).status, 401);
      } finally {
        await node.dp.close();
        await node.cp.close();
        await upstream.close();
        await t.close();
        for (const d of dirs) d.remove();
      }
    });
  }
});
