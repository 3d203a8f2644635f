// GATEHOUSE_TRUSTED_IPS (X-Forwarded-* from trusted peers believed, CIDRs), HTTPS upstreams
// (not verified unless tls_verify) and the ssl listener's configured certificate.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { tempDir } from '@gatehouse/core/testing.ts';
import { generateSelfSigned } from '@gatehouse/core/tls.ts';
import { startDataPlane, type DataPlane } from '../src/index.ts';
import { TrustedIps } from '../src/trusted-ips.ts';
import { dpConfig, publish, req, route, service, snapshot, startUpstream, waitFor, type Echo, type Upstream } from './helpers.ts';

describe('trusted IPs', () => {
  test('addresses and CIDRs, IPv4, IPv6 and IPv4-mapped; client address behind trusted hops', () => {
    const t = new TrustedIps(['10.0.0.0/8', '192.0.2.1', '2001:db8::/32']);
    assert.ok(t.has('10.1.2.3'));
    assert.ok(t.has('::ffff:10.1.2.3'));
    assert.ok(t.has('192.0.2.1'));
    assert.ok(!t.has('192.0.2.2'));
    assert.ok(t.has('2001:db8::5'));
    assert.ok(!t.has('2001:db9::5'));
    assert.equal(t.clientIp('10.0.0.1', '203.0.113.9, 10.0.0.7'), '203.0.113.9');
    assert.equal(t.clientIp('10.0.0.1', '10.0.0.9'), '10.0.0.9');
    assert.equal(t.clientIp('10.0.0.1', 'garbage'), '10.0.0.1');
    assert.ok(!new TrustedIps([]).has('127.0.0.1'));
    assert.throws(() => new TrustedIps(['not-an-ip']), /GATEHOUSE_TRUSTED_IPS/);
  });

  test('answers stay the same when asked again (they are cached by address)', () => {
    const t = new TrustedIps(['10.0.0.0/8', '2001:db8::/32']);
    const asked = ['10.9.9.9', '::ffff:10.9.9.9', '11.0.0.1', '::ffff:11.0.0.1', '2001:db8::1', '2001:db9::1', 'not-an-ip', '::ffff:not.an.ip'];
    const first = asked.map((a) => t.has(a));
    assert.deepEqual(first, [true, true, false, false, true, false, false, false]);
    for (let round = 0; round < 3; round++) assert.deepEqual(asked.map((a) => t.has(a)), first);
    assert.equal(t.clientIp('10.0.0.1', '203.0.113.9, 10.0.0.7'), '203.0.113.9');
    assert.equal(t.clientIp('10.0.0.1', '203.0.113.9, 10.0.0.7'), '203.0.113.9');
  });

  describe('through the proxy, with the loopback trusted', () => {
    const store = new MemoryStore();
    const dir = tempDir();
    let dp: DataPlane;
    let up: Upstream;
    before(async () => {
      up = await startUpstream('trusting');
      dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_TRUSTED_IPS: '127.0.0.0/8, ::1' }), store, plugins: new Map() });
      const svc = service({ host: '127.0.0.1', port: up.port });
      await publish(store, snapshot(1, { services: [svc], routes: [route({ paths: ['/t'] }, svc), route({ paths: ['/secure'], protocols: ['https'] }, svc)] }));
      await waitFor('snapshot', () => dp.configVersion?.version === 1);
    });
    after(async () => {
      await dp.close();
      await up.close();
      dir.remove();
    });

    test('X-Forwarded-* from a trusted peer are kept; the client address comes from X-Forwarded-For', async () => {
      const echo: Echo = (
        await req(dp.addresses[0].port, '/t/x', {
          headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example', 'x-forwarded-port': '443', 'x-forwarded-path': '/edge/t/x', 'x-forwarded-prefix': '/edge' },
        })
      ).json();
      assert.equal(echo.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
      assert.equal(echo.headers['x-real-ip'], '203.0.113.7');
      assert.equal(echo.headers['x-forwarded-proto'], 'https');
      assert.equal(echo.headers['x-forwarded-host'], 'public.example');
      assert.equal(echo.headers['x-forwarded-port'], '443');
      assert.equal(echo.headers['x-forwarded-path'], '/edge/t/x');
      assert.equal(echo.headers['x-forwarded-prefix'], '/edge');
    });

    test('an https-only route is served over http when a trusted proxy says the client used https', async () => {
      assert.equal((await req(dp.addresses[0].port, '/secure')).status, 426);
      assert.equal((await req(dp.addresses[0].port, '/secure', { headers: { 'x-forwarded-proto': 'https' } })).status, 200);
    });
  });
});

describe('HTTPS upstreams', () => {
  const store = new MemoryStore();
  const dir = tempDir();
  let dp: DataPlane;
  let server: ReturnType<typeof createServer>;
  let port: number;
  before(async () => {
    const { cert, key } = await generateSelfSigned('upstream.test');
    server = createServer({ cert, key }, (r, res) => {
      r.resume();
      res.end(JSON.stringify({ secure: true, url: r.url, host: r.headers.host }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    dp = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path }), store, plugins: new Map() });
  });
  after(async () => {
    await dp.close();
    server.closeAllConnections();
    server.close();
    dir.remove();
  });

  test('not verified unless tls_verify: a self-signed upstream is reached; with tls_verify it is a 502', async () => {
    const loose = service({ protocol: 'https', host: '127.0.0.1', port, path: '/api' });
    const strict = service({ protocol: 'https', host: '127.0.0.1', port, tls_verify: true, retries: 0 });
    await publish(store, snapshot(1, { services: [loose, strict], routes: [route({ paths: ['/loose'] }, loose), route({ paths: ['/strict'] }, strict)] }));
    await waitFor('snapshot', () => dp.configVersion?.version === 1);
    const ok = await req(dp.addresses[0].port, '/loose/x');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { secure: true, url: '/api/x', host: `127.0.0.1:${port}` });
    const refused = await req(dp.addresses[0].port, '/strict');
    assert.equal(refused.status, 502);
  });
});

describe('ssl listener', () => {
  test('serves the certificate from GATEHOUSE_SSL_CERT / GATEHOUSE_SSL_CERT_KEY', async () => {
    const own = await generateSelfSigned('gw.example.test');
    const dir = tempDir();
    const dp = await startDataPlane({
      config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0 ssl', GATEHOUSE_SSL_CERT: own.cert, GATEHOUSE_SSL_CERT_KEY: own.key }),
      store: new MemoryStore(),
      plugins: new Map(),
    });
    try {
      const presented = await new Promise<X509Certificate>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: dp.addresses[0].port, servername: 'gw.example.test', rejectUnauthorized: false }, () => {
          const cert = socket.getPeerX509Certificate();
          socket.end();
          cert ? resolve(cert) : reject(new Error('no certificate presented'));
        });
        socket.on('error', reject);
      });
      assert.equal(presented.fingerprint256, new X509Certificate(own.cert).fingerprint256);
    } finally {
      await dp.close();
      dir.remove();
    }
  });
});
