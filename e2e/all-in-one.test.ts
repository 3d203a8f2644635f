// `npm start` (the README's command; it runs `gatehouse start`) with neither DATABASE_URL nor
// REDIS_URL: embedded PGlite under the data dir, one in-process store shared by the control
// plane and the data plane, in one process.
// Config written on the admin API is served by the proxy; a restart keeps it (PGlite on disk).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getFreePort, tempDir } from '@gatehouse/core/testing.ts';
import { gatehouse, http, npmStart, upstream, waitFor, type Proc } from './proxy-helpers.ts';

describe('all-in-one: npm start', () => {
  const dir = tempDir();
  let adminPort: number;
  let proxyPort: number;
  let proc: Proc;
  let up: Awaited<ReturnType<typeof upstream>>;
  const start = () =>
    npmStart({
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      ...(process.env.DEBUG_E2E ? { GATEHOUSE_LOG_LEVEL: 'info' } : {}),
    });
  const admin = (path: string, method = 'GET', body?: unknown) => http(adminPort, path, { method, body });
  const served = async (path: string, want: (status: number, body: string) => boolean, what: string) =>
    waitFor(
      what,
      async () => {
        const res = await http(proxyPort, path);
        return want(res.status, res.body);
      },
      // Generous: on a loaded machine the control plane's publisher on PGlite has been seen to
      // stall for tens of seconds (reported; /status below shows where a change got stuck).
      90_000,
      [proc],
      20,
    ).catch(async (err) => {
      // Say where the change got stuck: the database, the publisher or the data plane.
      const status = await admin('/status').then((r) => r.body, (e) => String(e));
      throw new Error(`${(err as Error).message}\nadmin /status: ${status}`);
    });

  before(async () => {
    up = await upstream('aio');
    adminPort = await getFreePort();
    proxyPort = await getFreePort();
    proc = start();
    await waitFor('npm start', async () => /proxy listening on/.test(proc.output), 90_000, [proc]);
  });
  after(async () => {
    await proc.stop();
    await up.close();
    dir.remove();
  });

  test('prints where the admin API and the proxy listen', () => {
    assert.match(proc.output, new RegExp(`admin API listening on http://127\\.0\\.0\\.1:${adminPort}`));
    assert.match(proc.output, new RegExp(`proxy listening on http://127\\.0\\.0\\.1:${proxyPort}`));
    assert.match(proc.output, /all-in-one: embedded PGlite/);
  });

  test('before any config: the proxy answers 404 for unknown routes once the (empty) config is applied, or 503 while waiting', async () => {
    const res = await http(proxyPort, '/anything');
    assert.ok([404, 503].includes(res.status), `status ${res.status}`);
  });

  test('create, update and delete through the admin API reach the proxy', async () => {
    assert.equal((await admin('/services', 'POST', { name: 'aio', url: `http://127.0.0.1:${up.port}` })).status, 201);
    assert.equal((await admin('/services/aio/routes', 'POST', { name: 'aio-route', paths: ['/aio'] })).status, 201);
    const t0 = Date.now();
    await served('/aio/hello', (s, b) => s === 200 && JSON.parse(b).url === '/hello', 'route served');
    assert.ok(Date.now() - t0 < 5000);
    assert.equal((await admin('/routes/aio-route', 'PATCH', { paths: ['/moved'], strip_path: false })).status, 200);
    await served('/moved/x', (s, b) => s === 200 && JSON.parse(b).url === '/moved/x', 'updated route served');
    assert.equal((await admin('/routes/aio-route', 'DELETE')).status, 204);
    await served('/moved/x', (s) => s === 404, 'deleted route gone');
  });

  test('SIGTERM to npm alone (as a supervisor sends it) stops the gateway; a restart keeps the configuration (PGlite in the data dir)', async () => {
    assert.equal((await admin('/services/aio/routes', 'POST', { name: 'kept', paths: ['/kept'] })).status, 201);
    await served('/kept', (s) => s === 200, 'route before restart');
    proc.child.kill('SIGTERM');
    const groupGone = () => {
      try {
        process.kill(-proc.child.pid!, 0);
        return false;
      } catch {
        return true;
      }
    };
    await waitFor('npm and the gateway it started gone', async () => groupGone(), 20_000);
    await proc.stop();
    proc = start();
    await waitFor('npm start again', async () => /proxy listening on/.test(proc.output), 90_000, [proc]);
    await served('/kept', (s) => s === 200, 'route after restart');
  });
});

describe('gatehouse start with DATABASE_URL and REDIS_URL: the split deployment in one command', () => {
  test('control plane on Postgres, data plane workers through Redis; a route created is served', async () => {
    const { createTestDatabase, testRedisPrefix, TEST_REDIS_URL } = await import('@gatehouse/core/testing.ts');
    const db = await createTestDatabase();
    const dir = tempDir();
    const up = await upstream('split-start');
    const adminPort = await getFreePort();
    const proxyPort = await getFreePort();
    const proc = gatehouse('start', {
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: testRedisPrefix(),
      GATEHOUSE_DATA_DIR: dir.path,
      GATEHOUSE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      GATEHOUSE_WORKERS: '2',
    });
    try {
      await waitFor('npm start', async () => /proxy listening on/.test(proc.output), 90_000, [proc]);
      assert.match(proc.output, /control plane on Postgres, data plane through Redis \(2 workers\)/);
      assert.equal((await http(adminPort, '/services', { method: 'POST', body: { name: 's', url: `http://127.0.0.1:${up.port}` } })).status, 201);
      assert.equal((await http(adminPort, '/services/s/routes', { method: 'POST', body: { paths: ['/s'] } })).status, 201);
      await waitFor('route served by the workers', async () => (await http(proxyPort, '/s/x')).status === 200, 30_000, [proc]);
      assert.equal((await http(proxyPort, '/s/x')).json().url, '/x');
    } finally {
      await proc.stop();
      await up.close();
      await db.drop();
      dir.remove();
    }
  });
});
