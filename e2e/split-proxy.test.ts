// Split deployment as separate processes: one control plane (Postgres + Redis), two data planes
// (Redis only; the second with two node:cluster workers), a real upstream. Config written on
// the admin API reaches both data planes; they keep serving with the control plane gone; a data
// plane restarted while Redis is unreachable serves from its disk cache; once Redis is back,
// changes flow again.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createConnection, createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, getFreePort, tempDir, testRedisPrefix, TEST_REDIS_URL, type TestDatabase } from '@gatehouse/core/testing.ts';
import { gatehouse, http, redisLink, root, upstream, waitFor, type Proc } from './proxy-helpers.ts';

describe('split deployment: control plane + two data planes', () => {
  let db: TestDatabase;
  const prefix = testRedisPrefix();
  const dirs = [tempDir(), tempDir(), tempDir()];
  const importLog = join(dirs[2].path, 'imports.log');
  let adminPort: number;
  let cp: Proc;
  const dps: { proc: Proc; port: number; env: Record<string, string> }[] = [];
  let up: Awaited<ReturnType<typeof upstream>>;
  const procs = () => [cp, ...dps.map((d) => d.proc)];

  const startCp = () =>
    gatehouse('control-plane', {
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      GATEHOUSE_DATA_DIR: dirs[2].path,
    });
  const admin = (path: string, method = 'GET', body?: unknown) => http(adminPort, path, { method, body });
  const both = (path: string, want: (status: number, body: string) => boolean, what: string) =>
    waitFor(
      what,
      async () => {
        for (const dp of dps) {
          const res = await http(dp.port, path);
          if (!want(res.status, res.body)) return false;
        }
        return true;
      },
      20_000,
      procs(),
    );

  before(async () => {
    db = await createTestDatabase();
    up = await upstream('e2e-upstream');
    adminPort = await getFreePort();
    cp = startCp();
    for (let i = 0; i < 2; i++) {
      const port = await getFreePort();
      const env = {
        REDIS_URL: TEST_REDIS_URL,
        GATEHOUSE_REDIS_PREFIX: prefix,
        GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`,
        GATEHOUSE_DATA_DIR: dirs[i].path,
        GATEHOUSE_WORKERS: String(i + 1),
        GATEHOUSE_TEST_IMPORT_LOG: i === 0 ? importLog : '',
      };
      const proc = gatehouse('data-plane', env, i === 0 ? ['--import', join(root, 'e2e/fixtures/record-imports.mjs')] : []);
      dps.push({ proc, port, env });
    }
    await waitFor('admin API', async () => (await admin('/status')).status === 200, 60_000, procs());
    for (const dp of dps) await waitFor('data plane listening', async () => /proxy listening on/.test(dp.proc.output), 60_000, procs());
  });

  after(async () => {
    await Promise.all(procs().map((p) => p.stop()));
    await up.close();
    await db.drop();
    for (const d of dirs) d.remove();
  });

  test('the data-plane process loads neither express nor Prisma nor pg', () => {
    const loaded = readFileSync(importLog, 'utf8').split('\n');
    assert.ok(loaded.some((u) => u.includes('/packages/data-plane/src/')), 'the log recorded the data plane itself');
    const forbidden = loaded.filter((u) => /\/node_modules\/(express|pg|pg-pool|@prisma|prisma|@electric-sql|pglite-prisma-adapter)\//.test(u) || /\/packages\/(control-plane\/src|core\/src\/db)\//.test(u));
    assert.deepEqual(forbidden, []);
  });

  test('a route created on the admin API is served by both data planes; update and delete reach both', async () => {
    assert.equal((await admin('/services', 'POST', { name: 'e2e', url: `http://127.0.0.1:${up.port}/base` })).status, 201);
    const created = await admin('/services/e2e/routes', 'POST', { name: 'e2e-route', paths: ['/e2e'] });
    assert.equal(created.status, 201, created.body);
    await both('/e2e/x', (s, b) => s === 200 && JSON.parse(b).url === '/base/x', 'route on both data planes');

    assert.equal((await admin('/routes/e2e-route', 'PATCH', { paths: ['/changed'] })).status, 200);
    await both('/changed/y', (s, b) => s === 200 && JSON.parse(b).url === '/base/y', 'updated route on both');
    await both('/e2e/x', (s) => s === 404, 'old path gone on both');

    assert.equal((await admin('/routes/e2e-route', 'DELETE')).status, 204);
    await both('/changed/y', (s) => s === 404, 'deleted route gone on both');

    // Both data planes report through their heartbeats.
    const dataPlanes = await waitFor('heartbeats', async () => {
      const res = await admin('/clustering/data-planes');
      const list = res.status === 200 ? res.json().data : [];
      return list.length === 2 ? list : null;
    });
    assert.deepEqual(dataPlanes.map((d: { workers?: number }) => d.workers).sort(), [1, 2]);
  });

  test('a WebSocket handshake on an http route is tunnelled by both data planes (and by each cluster worker)', async () => {
    // The upstream switches protocols and echoes what comes through the tunnel.
    up.server.on('upgrade', (req: import('node:http').IncomingMessage, socket: import('node:net').Socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-Path: ${req.url}\r\n\r\n`);
      socket.on('data', (d: Buffer) => socket.write(`echo:${d}`));
      socket.on('end', () => socket.end());
      socket.on('error', () => socket.destroy());
    });
    assert.equal((await admin('/services', 'POST', { name: 'e2e-ws', url: `http://127.0.0.1:${up.port}/live` })).status, 201);
    assert.equal((await admin('/services/e2e-ws/routes', 'POST', { name: 'e2e-ws-route', paths: ['/ws'] })).status, 201);
    await both('/ws', (s) => s !== 404, 'WebSocket route on both data planes');
    const tunnel = (port: number, message: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = createConnection(port, '127.0.0.1', () =>
          socket.write('GET /ws/feed HTTP/1.1\r\nHost: e2e.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
        );
        let text = '';
        socket.setEncoding('latin1');
        socket.setTimeout(10_000, () => socket.destroy(new Error('tunnel timed out')));
        socket.on('data', (d: string) => {
          text += d;
          if (text.endsWith('\r\n\r\n') && text.startsWith('HTTP/1.1 101')) socket.write(message);
          if (text.endsWith(`echo:${message}`)) {
            socket.end();
            resolve(text);
          }
        });
        socket.on('error', reject);
        socket.on('close', () => reject(new Error(`closed after: ${text}`)));
      });
    // Several connections per data plane: the one with two workers spreads them over both.
    for (const dp of dps) {
      for (let i = 0; i < 4; i++) {
        const text = await tunnel(dp.port, `hello ${i}`);
        assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
        assert.match(text, /\r\nX-Seen-Path: \/live\/feed\r\n/);
      }
    }
    assert.equal((await admin('/routes/e2e-ws-route', 'DELETE')).status, 204);
    assert.equal((await admin('/services/e2e-ws', 'DELETE')).status, 204);
  });

  /**
   * Process ids of a data plane's cluster workers, from /proc: its children running worker.ts
   * (not any child: tsx starts an esbuild process when its compile cache is cold).
   */
  const workersOf = (dp: { proc: Proc }) =>
    readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((pid) => {
        try {
          return (
            Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === dp.proc.child.pid &&
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('data-plane/src/worker.ts')
          );
        } catch {
          return false;
        }
      })
      .map(Number);

  test('a data-plane worker that dies is replaced, and the new one serves the current config', async () => {
    const dp = dps[1]; // two workers
    const children = () => workersOf(dp);
    const before = await waitFor('two workers', async () => (children().length === 2 ? children() : null));
    assert.equal((await admin('/services/e2e/routes', 'POST', { name: 'workers', paths: ['/workers'] })).status, 201);
    await both('/workers', (s) => s === 200, 'route before the worker dies');
    process.kill(before[0], 'SIGKILL');
    const after = await waitFor('a replacement worker', async () => {
      const now = children();
      return now.length === 2 && !now.includes(before[0]) ? now : null;
    }, 30_000, procs());
    assert.ok(after.includes(before[1]));
    // Every connection lands on some worker: many fresh ones all get the route.
    for (let i = 0; i < 20; i++) assert.equal((await http(dp.port, '/workers')).status, 200);
    assert.match(dp.proc.output, /worker died; starting a new one/);
  });

  test('upstreams that reset mid-response or answer garbage never kill a worker', async () => {
    const dp = dps[1]; // two workers
    const workers = await waitFor('two workers', async () => (workersOf(dp).length === 2 ? workersOf(dp).sort() : null));
    const deaths = () => dp.proc.output.split('worker died').length;
    const deathsBefore = deaths();
    // Reads a request head, then either sends half a response and resets, or sends garbage.
    const bad = createNetServer((socket) => {
      let head = '';
      socket.on('data', (chunk) => {
        head += chunk;
        if (!head.includes('\r\n\r\n')) return;
        if (head.startsWith('GET /bad/reset')) {
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial');
          socket.resetAndDestroy();
        } else socket.end('NOT HTTP AT ALL\r\n\r\n');
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
    try {
      const badPort = (bad.address() as AddressInfo).port;
      assert.equal((await admin('/services', 'POST', { name: 'bad', url: `http://127.0.0.1:${badPort}` })).status, 201);
      assert.equal((await admin('/services/bad/routes', 'POST', { name: 'bad', paths: ['/bad'], strip_path: false })).status, 201);
      await waitFor('bad route on the two-worker data plane', async () => (await http(dp.port, '/bad/garbage')).status === 502, 20_000, procs());
      // Raw requests: the client sees the head, part of the body, then the connection closed.
      const rawGet = (path: string) =>
        new Promise<string>((resolve, reject) => {
          let text = '';
          const socket = createConnection(dp.port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`));
          socket.setTimeout(10_000, () => socket.destroy(new Error(`${path} timed out`)));
          socket.on('data', (c) => (text += c));
          socket.on('error', () => {});
          socket.on('close', () => resolve(text));
          socket.once('timeout', () => reject(new Error(`${path} timed out`)));
        });
      for (let i = 0; i < 10; i++) {
        const cut = await rawGet('/bad/reset');
        assert.match(cut, /^HTTP\/1\.1 200 OK\r\n[\s\S]*partial$/);
        const garbage = await http(dp.port, '/bad/garbage');
        assert.equal(garbage.status, 502);
        assert.deepEqual(garbage.json(), { message: 'An invalid response was received from the upstream server' });
      }
      assert.deepEqual(workersOf(dp).sort(), workers, 'the same two workers');
      assert.equal(deaths(), deathsBefore, 'no worker died');
    } finally {
      bad.close();
    }
  });

  test('with the control plane killed, both data planes keep serving', async () => {
    assert.equal((await admin('/services/e2e/routes', 'POST', { name: 'survivor', paths: ['/survive'] })).status, 201);
    await both('/survive', (s) => s === 200, 'route before the control plane dies');
    await cp.stop('SIGKILL');
    for (let i = 0; i < 5; i++) await both('/survive', (s) => s === 200, 'serving without a control plane');
  });

  test('a data plane restarted while Redis is unreachable serves from its disk cache; with Redis back, changes flow again', async () => {
    const dp = dps[0];
    assert.ok(existsSync(join(dirs[0].path, 'data-plane', 'config.json')));
    await dp.proc.stop();
    const link = await redisLink(await getFreePort());
    // Redis unreachable: the link is closed.
    dp.env = { ...dp.env, REDIS_URL: link.url, GATEHOUSE_TEST_IMPORT_LOG: '' };
    dp.proc = gatehouse('data-plane', dp.env);
    await waitFor('restarted data plane', async () => /proxy listening on/.test(dp.proc.output), 60_000, procs());
    assert.equal((await http(dp.port, '/survive')).status, 200, 'served from the disk cache');

    await link.open();
    try {
      cp = startCp();
      await waitFor('admin API back', async () => (await admin('/status')).status === 200, 60_000, procs());
      assert.equal((await admin('/services/e2e/routes', 'POST', { name: 'after-outage', paths: ['/after'] })).status, 201);
      await both('/after', (s) => s === 200, 'a change after the outage on both');
    } finally {
      await dp.proc.stop();
      await link.cut();
    }
  });
});
