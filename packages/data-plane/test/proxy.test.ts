// The proxy in-process against real upstream servers on loopback, config through the store's
// snapshot contract (MemoryStore: the all-in-one mode's real store).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createConnection, createServer as createNetServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { tempDir } from '@gatehouse/core/testing.ts';
import { startDataPlane, type DataPlane } from '../src/index.ts';
import { IDENTITY_HEADERS } from '../src/proxy.ts';
import { dpConfig, rawExchange, req, route, service, snapshotApplier, startUpstream, waitFor, writeForever, type Echo, type Upstream } from './helpers.ts';

describe('proxy', () => {
  const store = new MemoryStore();
  const dir = tempDir();
  let dp: DataPlane;
  let port: number;
  let tlsPort: number;
  let up: Upstream;

  const applier = snapshotApplier(store, () => dp);
  const apply = applier.apply;

  before(async () => {
    up = await startUpstream('main');
    dp = await startDataPlane({
      config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl' }),
      store,
      plugins: new Map(),
    });
    port = dp.addresses.find((a) => !a.ssl)!.port;
    tlsPort = dp.addresses.find((a) => a.ssl)!.port;
  });
  after(async () => {
    await dp.close();
    await up.close();
    dir.remove();
  });

  test('no configuration yet: 503 naming what it waits for', async () => {
    const res = await req(port, '/');
    assert.equal(res.status, 503);
    assert.deepEqual(res.json(), { message: 'no configuration loaded yet: waiting for the control plane (in-process store)' });
  });

  test('forwards with strip_path, service path, query, and Kong headers; strips spoofed identity headers', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/base' });
    await apply({ services: [svc], routes: [route({ paths: ['/api'] }, svc)] });
    const res = await req(port, '/api/items?a=1&b=%20', {
      host: 'gw.example.test:8000',
      headers: {
        'X-Consumer-ID': 'spoofed',
        'x-consumer-username': 'admin',
        'X-Credential-Identifier': 'x',
        'X-Authenticated-Scope': 'all',
        'X-Authenticated-Userid': 'root',
        'X-Anonymous-Consumer': 'false',
        'X-Consumer-Custom-ID': 'c',
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'evil.test',
        'x-forwarded-prefix': '/evil',
      },
    });
    assert.equal(res.status, 200);
    const echo: Echo = res.json();
    assert.equal(echo.url, '/base/items?a=1&b=%20');
    for (const h of ['x-consumer-id', 'x-consumer-username', 'x-credential-identifier', 'x-authenticated-scope', 'x-authenticated-userid', 'x-anonymous-consumer', 'x-consumer-custom-id']) {
      assert.equal(echo.headers[h], undefined, `${h} must not reach the upstream`);
    }
    assert.equal(echo.headers.host, `127.0.0.1:${up.port}`);
    // Untrusted peer: X-Forwarded-For is appended to, the others are replaced.
    assert.equal(echo.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(echo.headers['x-real-ip'], '127.0.0.1');
    assert.equal(echo.headers['x-forwarded-proto'], 'http');
    assert.equal(echo.headers['x-forwarded-host'], 'gw.example.test');
    assert.equal(echo.headers['x-forwarded-port'], String(port));
    assert.equal(echo.headers['x-forwarded-path'], '/api/items');
    assert.equal(echo.headers['x-forwarded-prefix'], '/api');
    assert.equal(echo.headers.via, '1.1 gatehouse');
    assert.match(echo.headers['x-request-id'] as string, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.via, '1.1 gatehouse');
    assert.equal(res.headers['x-request-id'], echo.headers['x-request-id']);
  });

  test('each identity header is stripped when it comes alone', async () => {
    // The route from the test above; the proxy checks each name with its own property load.
    for (const name of IDENTITY_HEADERS) {
      const res = await req(port, '/api/x', { host: 'gw.example.test', headers: { [name]: 'spoofed' } });
      assert.equal(res.status, 200);
      assert.equal(res.json().headers[name], undefined, `${name} must not reach the upstream`);
    }
  });

  test('404 when no route matches', async () => {
    const res = await req(port, '/nothing-here');
    assert.equal(res.status, 404);
    assert.deepEqual(res.json(), { message: 'no Route matched with those values' });
  });

  test('the path is normalised before routing, as Kong does: a dot segment or an encoded letter cannot reach one route through another', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/svc/public' });
    const admin = service({ host: '127.0.0.1', port: up.port, path: '/svc/admin' });
    await apply({
      services: [svc, admin],
      routes: [route({ name: 'public', paths: ['/api'] }, svc), route({ name: 'admin', paths: ['/admin'] }, admin), route({ name: 'v', paths: ['~/v[0-9]+'] }, svc)],
    });
    const url = async (path: string) => {
      const res = await req(port, path);
      return res.status === 200 ? (res.json() as Echo).url : res.status;
    };
    // Routed by the normalised path, and sent upstream as such.
    assert.equal(await url('/api/../admin/users'), '/svc/admin/users');
    assert.equal(await url('/api/%2e%2e/admin/users'), '/svc/admin/users');
    assert.equal(await url('/%61dmin/users'), '/svc/admin/users');
    assert.equal(await url('/api//items/./x'), '/svc/public/items/x');
    // Reserved characters stay encoded (upper-cased); so does what is not a valid triplet.
    assert.equal(await url('/api/a%2fb%zz'), '/svc/public/a%2Fb%zz');
    // What remains after a stripped prefix cannot climb out of the service path (Kong's sanitize_uri_postfix).
    assert.equal(await url('/api../admin'), '/svc/public/admin');
    assert.equal(await url('/api..'), '/svc/public');
    assert.equal(await url('/v1../admin'), '/svc/public/admin');
    // An empty query is kept as sent.
    assert.equal(await url('/api/x?'), '/svc/public/x?');
  });

  test('headers spelt with underscores for the ones the gateway vouches for are dropped; a second Host header is refused', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc], routes: [route({ paths: ['/u'] }, svc)] });
    const res = await req(port, '/u', {
      host: 'GW.Example.TEST:8000',
      headers: { X_Consumer_Username: 'admin', x_authenticated_userid: 'root', X_Forwarded_For: '203.0.113.7', X_Real_IP: '203.0.113.7', X_Other_Thing: 'kept' },
    });
    assert.equal(res.status, 200);
    const echo: Echo = res.json();
    for (const name of ['x_consumer_username', 'x_authenticated_userid', 'x_forwarded_for', 'x_real_ip']) assert.equal(echo.headers[name], undefined, `${name} must not reach the upstream`);
    assert.equal(echo.headers.x_other_thing, 'kept');
    // As Kong's $host: lower case, without the port.
    assert.equal(echo.headers['x-forwarded-host'], 'gw.example.test');

    const answer = await rawExchange(port, 'GET /u HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1.1 400 /);
  });

  test('a route header rule is checked against each value of a repeated header', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/canary' });
    const other = service({ host: '127.0.0.1', port: up.port, path: '/stable' });
    await apply({ services: [svc, other], routes: [route({ hosts: ['hdr.test'], headers: { 'x-env': ['canary'] } }, svc), route({ hosts: ['hdr.test'] }, other)] });
    const url = async (headers: Record<string, string | string[]>) => ((await req(port, '/x', { host: 'hdr.test', headers })).json() as Echo).url;
    assert.equal(await url({ 'x-env': 'canary' }), '/canary/x');
    assert.equal(await url({ 'x-env': ['prod', 'canary'] }), '/canary/x');
    assert.equal(await url({ 'x-env': 'prod' }), '/stable/x');
  });

  test('preserve_host and strip_path=false', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc], routes: [route({ paths: ['/keep'], strip_path: false, preserve_host: true }, svc)] });
    const echo: Echo = (await req(port, '/keep/x', { host: 'client.example.test' })).json();
    assert.equal(echo.url, '/keep/x');
    assert.equal(echo.headers.host, 'client.example.test');
  });

  test('https-only route over http: 426 by default, or the configured redirect', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    await apply({
      services: [svc],
      routes: [
        route({ paths: ['/secure'], protocols: ['https'] }, svc),
        route({ paths: ['/moved'], protocols: ['https'], https_redirect_status_code: 301 }, svc),
      ],
    });
    const res = await req(port, '/secure');
    assert.equal(res.status, 426);
    assert.deepEqual(res.json(), { message: 'Please use HTTPS protocol' });
    const moved = await req(port, '/moved/a?b=1', { host: 'gw.example.test:8000' });
    assert.equal(moved.status, 301);
    assert.equal(moved.headers.location, 'https://gw.example.test/moved/a?b=1');
    // Over TLS (self-signed certificate generated into the data dir) the route serves.
    const tlsRes = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = httpsRequest({ host: '127.0.0.1', port: tlsPort, path: '/secure/z', rejectUnauthorized: false, agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      r.on('error', reject);
      r.end();
    });
    assert.equal(tlsRes.status, 200);
    const echo: Echo = JSON.parse(tlsRes.body);
    assert.equal(echo.url, '/z');
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
  });

  test('disabled services and their routes are skipped; a route without a service answers 503', async () => {
    const on = service({ host: '127.0.0.1', port: up.port });
    const off = service({ host: '127.0.0.1', port: up.port, enabled: false });
    await apply({
      services: [on, off],
      routes: [route({ paths: ['/off'] }, off), route({ paths: ['/'] }, on), route({ paths: ['/none'] }, null)],
    });
    const res = await req(port, '/off/x');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/off/x');
    const none = await req(port, '/none');
    assert.equal(none.status, 503);
    assert.deepEqual(none.json(), { message: 'no Service found with those values' });
  });

  test('upstream refusing connections: 502 after retries, and the proxy keeps serving', async () => {
    const dead = await startUpstream('dead');
    await dead.close();
    const svc = service({ host: '127.0.0.1', port: dead.port, retries: 2 });
    const ok = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc, ok], routes: [route({ paths: ['/dead'] }, svc), route({ paths: ['/ok'] }, ok)] });
    const res = await req(port, '/dead');
    assert.equal(res.status, 502);
    assert.deepEqual(res.json(), { message: 'An invalid response was received from the upstream server' });
    assert.equal((await req(port, '/ok')).status, 200);
  });

  test("an upstream host that cannot be resolved: Kong's 503 naming it, and the proxy keeps serving", async () => {
    // A 64-character label is refused by the system resolver itself (ENOTFOUND), so no query
    // ever leaves the machine; any other unknown name would go to the configured DNS server.
    const unresolvable = `${'a'.repeat(64)}.example`;
    const svc = service({ host: unresolvable, port: up.port, retries: 5 });
    const ok = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc, ok], routes: [route({ paths: ['/nxdomain'] }, svc), route({ paths: ['/ok'] }, ok)] });
    const before = up.requests;
    const res = await req(port, '/nxdomain');
    assert.equal(res.status, 503);
    assert.deepEqual(res.json(), { message: 'name resolution failed' });
    assert.match(res.headers['x-request-id'] as string, /\S/);
    assert.equal(up.requests, before, 'nothing reached an upstream');
    assert.equal((await req(port, '/ok')).status, 200);
  });

  test('a chunked body on DELETE or OPTIONS goes upstream as that request\'s body, never as a request of its own (no smuggling)', async () => {
    const seen: { method: string; url: string; body: string }[] = [];
    const recorder = await startUpstream('recorder', (r, res, body) => {
      seen.push({ method: r.method!, url: r.url!, body: body.toString() });
      res.end('ok');
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: recorder.port });
      await apply({ services: [svc], routes: [route({ paths: ['/'] }, svc)] });
      for (const method of ['DELETE', 'OPTIONS']) {
        const inner = 'GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Consumer-Username: admin\r\n\r\n';
        const raw = `${method} /target HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
        const answer = await new Promise<string>((resolve, reject) => {
          const socket = createConnection(port, '127.0.0.1');
          let text = '';
          socket.on('data', (d) => (text += d));
          socket.on('close', () => resolve(text));
          socket.on('error', reject);
          socket.write(raw);
        });
        assert.match(answer, /^HTTP\/1\.1 200/, method);
        // The upstream's pooled connection is reused: a smuggled request would show up on the next one.
        assert.equal((await req(port, '/after')).status, 200);
        assert.deepEqual(
          seen.map((s) => `${s.method} ${s.url}`),
          [`${method} /target`, 'GET /after'],
          `what the upstream saw for ${method}`,
        );
        assert.equal(seen[0].body, inner);
        seen.length = 0;
      }
    } finally {
      await recorder.close();
    }
  });

  test('connections reset by the upstream are retried up to service.retries', async () => {
    const flaky = await startUpstream('flaky');
    // A front whose first `resets` connections are accepted and reset before any response.
    const front = async (resets: number) => {
      const server = createNetServer((sock: Socket) => {
        if (resets-- > 0) sock.resetAndDestroy();
        else flaky.server.emit('connection', sock);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return { server, port: (server.address() as { port: number }).port };
    };
    const a = await front(2);
    const b = await front(1);
    try {
      const withRetries = service({ host: '127.0.0.1', port: a.port, retries: 3 });
      const noRetries = service({ host: '127.0.0.1', port: b.port, retries: 0 });
      await apply({ services: [withRetries, noRetries], routes: [route({ paths: ['/flaky'] }, withRetries), route({ paths: ['/once'] }, noRetries)] });
      const res = await req(port, '/flaky');
      assert.equal(res.status, 200);
      assert.equal(res.json().upstream, 'flaky');
      const once = await req(port, '/once');
      assert.equal(once.status, 502);
    } finally {
      a.server.close();
      b.server.close();
      await flaky.close();
    }
  });

  test('read timeout: 504 with Kong message', async () => {
    const slow = await startUpstream('slow', (_req, res) => {
      setTimeout(() => res.end('late'), 1500);
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: slow.port, read_timeout: 200 });
      await apply({ services: [svc], routes: [route({ paths: ['/slow'] }, svc)] });
      const t0 = Date.now();
      const res = await req(port, '/slow');
      assert.equal(res.status, 504);
      assert.deepEqual(res.json(), { message: 'The upstream server is timing out' });
      assert.ok(Date.now() - t0 < 1400, 'answered before the upstream');
    } finally {
      await slow.close();
    }
  });

  test('connect timeout: each attempt waits connect_timeout, then retries; at the end a 504 with Kong message', async () => {
    // An upstream whose accept queue is full: a stopped process listening with a backlog of
    // one and two connections waiting, so the kernel drops every further handshake.
    const stuck = spawn(process.execPath, ['-e', "require('net').createServer().listen(0, '127.0.0.1', 1, function () { console.log(this.address().port) })"], { stdio: ['ignore', 'pipe', 'inherit'] });
    const waiting: Socket[] = [];
    try {
      const stuckPort = await new Promise<number>((resolve, reject) => {
        stuck.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
        stuck.once('error', reject);
      });
      stuck.kill('SIGSTOP');
      for (let i = 0; i < 2; i++) {
        await new Promise<void>((resolve, reject) => {
          const s = createConnection(stuckPort, '127.0.0.1', () => resolve());
          s.once('error', reject);
          waiting.push(s);
        });
      }
      const svc = service({ host: '127.0.0.1', port: stuckPort, connect_timeout: 300, retries: 2 });
      await apply({ services: [svc], routes: [route({ paths: ['/stuck'] }, svc)] });
      const t0 = Date.now();
      const res = await req(port, '/stuck');
      const elapsed = Date.now() - t0;
      assert.equal(res.status, 504);
      assert.deepEqual(res.json(), { message: 'The upstream server is timing out' });
      assert.ok(elapsed >= 3 * 300, `three attempts of 300 ms each (took ${elapsed} ms)`);
      assert.ok(elapsed < 10_000, 'answered long before read_timeout');
    } finally {
      for (const s of waiting) s.destroy();
      stuck.kill('SIGCONT');
      stuck.kill();
    }
  });

  test('write timeout: a client body that stalls gets 504; one that keeps coming, however slowly, goes through', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port, write_timeout: 500 });
    await apply({ services: [svc], routes: [route({ paths: ['/upload'] }, svc)] });
    const post = (send: (r: import('node:http').ClientRequest) => void) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path: '/upload', method: 'POST', agent: false, headers: { 'content-length': '10' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        r.on('error', reject);
        send(r);
      });

    // 3 of 10 bytes, then nothing: the upstream never gets the rest.
    const t0 = Date.now();
    let stalled: import('node:http').ClientRequest | undefined;
    const cut = await post((r) => {
      stalled = r;
      r.write('abc');
    });
    stalled!.destroy();
    assert.equal(cut.status, 504);
    assert.deepEqual(JSON.parse(cut.body), { message: 'The upstream server is timing out' });
    assert.ok(Date.now() - t0 < 5000, 'answered after write_timeout, not after read_timeout');

    // One byte every 100 ms: a second in all, twice write_timeout, but never a 500 ms stall.
    const slow = await post((r) => {
      let i = 0;
      const next = () => {
        if (i === 9) return void r.end(String(i));
        r.write(String(i++));
        setTimeout(next, 100);
      };
      next();
    });
    assert.equal(slow.status, 200);
    assert.equal(JSON.parse(slow.body).body, '0123456789');
  });

  test("the upstream's response head: status text, repeated headers and Via kept; hop-by-hop and its X-Request-Id replaced; no chunking for HTTP/1.0 clients", async () => {
    const heads = await startUpstream('heads', (_request, res) => {
      res.writeHead(299, 'Fine Indeed', [
        'Set-Cookie', 'a=1',
        'Set-Cookie', 'b=2',
        'Via', '1.1 inner-proxy',
        'X-Request-Id', 'from-upstream',
        'Keep-Alive', 'timeout=30',
        'X-Custom', 'Kept',
      ]);
      res.write('chunk one,');
      res.end('chunk two');
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: heads.port });
      await apply({ services: [svc], routes: [route({ paths: ['/heads'] }, svc)] });
      // Raw HTTP, to see the head exactly as sent (header names, status text, repeats).
      const exchange = (request: string) =>
        new Promise<string>((resolve, reject) => {
          const socket = createConnection(port, '127.0.0.1', () => socket.write(request));
          let text = '';
          socket.on('data', (d) => (text += d));
          socket.on('end', () => resolve(text));
          socket.on('error', reject);
        });
      const raw = await exchange('GET /heads HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine-1\r\nConnection: close\r\n\r\n');
      const [head, body] = raw.split('\r\n\r\n');
      const lines = head.split('\r\n');
      assert.equal(lines[0], 'HTTP/1.1 299 Fine Indeed');
      const values = (name: string) => lines.filter((l) => l.toLowerCase().startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).trim());
      assert.deepEqual(values('set-cookie'), ['a=1', 'b=2']);
      assert.deepEqual(values('via'), ['1.1 inner-proxy, 1.1 gatehouse']);
      assert.deepEqual(values('x-request-id'), ['mine-1']);
      assert.deepEqual(values('x-custom'), ['Kept']);
      assert.deepEqual(values('keep-alive'), [], "the upstream's Keep-Alive is not the client's");
      assert.deepEqual(values('connection'), ['close'], "the client connection's own");
      assert.deepEqual(values('transfer-encoding'), ['chunked']);
      assert.match(body, /chunk one,.*chunk two/s);

      const http10 = await exchange('GET /heads HTTP/1.0\r\nHost: x\r\n\r\n');
      const [head10, body10] = http10.split('\r\n\r\n');
      assert.match(head10, /^HTTP\/1\.1 299 Fine Indeed/);
      assert.doesNotMatch(head10, /transfer-encoding/i, 'an HTTP/1.0 client gets no chunked encoding');
      assert.equal(body10, 'chunk one,chunk two');
    } finally {
      await heads.close();
    }
  });

  test('pooled upstream sockets: the read timeout holds on a reused socket; one idle past the Keep-Alive hint is closed first by the gateway', async () => {
    const pooled = await startUpstream('pooled', (request, res) => {
      // The route strips its /pool prefix.
      if (request.url === '/hang') setTimeout(() => res.end('late'), 2600);
      else res.end('ok');
      return true;
    });
    // Node announces `Keep-Alive: timeout=2` and closes idle sockets after 2 s. The gateway
    // closes them 1 s early (or after read_timeout idle, whichever comes first).
    pooled.server.keepAliveTimeout = 2000;
    const sockets: { openedAt: number; endedByPeerAt: number | null }[] = [];
    pooled.server.on('connection', (socket: Socket) => {
      const entry = { openedAt: Date.now(), endedByPeerAt: null as number | null };
      sockets.push(entry);
      // 'end': the gateway sent FIN; a server-side timeout destroys the socket without it.
      socket.on('end', () => (entry.endedByPeerAt = Date.now()));
    });
    try {
      const svc = service({ host: '127.0.0.1', port: pooled.port, read_timeout: 1800 });
      await apply({ services: [svc], routes: [route({ paths: ['/pool'] }, svc)] });
      assert.equal((await req(port, '/pool/fast')).status, 200);
      assert.equal(sockets.length, 1);
      const t0 = Date.now();
      const timedOut = await req(port, '/pool/hang');
      assert.equal(timedOut.status, 504);
      assert.ok(Date.now() - t0 < 2500, 'the reused socket still timed out reading');
      assert.equal(sockets.length, 1, 'the second request reused the pooled socket');

      assert.equal((await req(port, '/pool/fast')).status, 200);
      const idleSince = Date.now();
      const fresh = sockets[sockets.length - 1];
      await waitFor('the idle socket closed', () => fresh.endedByPeerAt !== null, 3000);
      const idleMs = fresh.endedByPeerAt! - idleSince;
      assert.ok(idleMs >= 800 && idleMs < 1600, `closed by the gateway about 1 s before the upstream would (after ${idleMs} ms)`);
    } finally {
      await pooled.close();
    }
  });

  test('streams both ways: the response starts before the upstream finishes; a large body passes unbuffered', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const streaming = await startUpstream('stream', (r, res, body) => {
      if (r.url === '/stream/upload') {
        res.end(JSON.stringify({ bytes: body.length }));
        return true;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      void gate.then(() => res.end('last'));
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: streaming.port });
      await apply({ services: [svc], routes: [route({ paths: ['/stream'], strip_path: false }, svc)] });
      const first = await new Promise<string>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path: '/stream/down', agent: false }, (res) => {
          res.once('data', (c: Buffer) => {
            resolve(c.toString());
            release();
            res.resume();
          });
        });
        r.on('error', reject);
        r.end();
      });
      assert.equal(first, 'first;');
      const big = Buffer.alloc(20 * 1024 * 1024, 7);
      const res = await req(port, '/stream/upload', { method: 'POST', body: big, headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { bytes: big.length });
    } finally {
      await streaming.close();
    }
  });

  test('one keep-alive client connection carries bodyless and body requests one after another, each forwarded whole', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc], routes: [route({ paths: ['/'] }, svc)] });
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; echo: Echo | null; reused: boolean }>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path, method, agent, headers: body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, echo: text ? JSON.parse(text) : null, reused: r.reusedSocket }));
        });
        r.on('error', reject);
        r.end(body);
      });
    try {
      const sequence: [string, string, string?][] = [
        ['GET', '/a'],
        ['POST', '/b', 'posted body'],
        ['GET', '/c?x=1'],
        ['DELETE', '/d'],
        ['PUT', '/e', ''],
        ['GET', '/f'],
      ];
      for (const [i, [method, path, body]] of sequence.entries()) {
        const res = await send(method, path, body);
        assert.equal(res.status, 200, `${method} ${path}`);
        assert.equal(res.reused, i > 0, `${method} ${path} on the same client connection`);
        assert.equal(res.echo!.method, method);
        assert.equal(res.echo!.url, path);
        assert.equal(res.echo!.body, body ?? '');
      }
    } finally {
      agent.destroy();
    }
  });

  test('headers the Connection header names are hop-by-hop: not forwarded (RFC 9110 7.6.1)', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port });
    await apply({ services: [svc], routes: [route({ paths: ['/named'] }, svc)] });
    const res = await req(port, '/named', { headers: { connection: 'keep-alive, X-Hop, x-other', 'x-hop': 'secret', 'x-other': 'o', 'x-keep': 'yes' } });
    assert.equal(res.status, 200);
    const echo: Echo = res.json();
    assert.equal(echo.headers['x-hop'], undefined);
    assert.equal(echo.headers['x-other'], undefined);
    assert.equal(echo.headers['x-keep'], 'yes');
    // Naming the headers that frame the body does not lose the body.
    const posted = await req(port, '/named', { method: 'POST', body: 'hello', headers: { connection: 'keep-alive, Content-Length', 'content-length': '5' } });
    assert.equal(posted.status, 200);
    assert.equal((posted.json() as Echo).body, 'hello');
  });

  test('a client that reads slowly holds the upstream back (backpressure), then gets the whole body, past read_timeout', async () => {
    const total = 128 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let written = 0;
    const big = await startUpstream('big', (_r, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const more = () => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return true;
    });
    try {
      // The client's pause (1 s) outlasts read_timeout: the upstream is waiting for us then, not silent.
      const svc = service({ host: '127.0.0.1', port: big.port, read_timeout: 300 });
      await apply({ services: [svc], routes: [route({ paths: ['/big'] }, svc)] });
      const received = await new Promise<number>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
          res.pause();
          // The client reads nothing for a while: only what socket buffers hold may leave the upstream.
          setTimeout(() => {
            try {
              assert.ok(written < total / 2, `the upstream wrote ${written} of ${total} bytes to a client that read none`);
            } catch (err) {
              r.destroy();
              return reject(err);
            }
            let bytes = 0;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve(bytes));
            res.on('error', () => {});
            res.on('close', () => !res.complete && reject(new Error(`the response was cut off after ${bytes} of ${total} bytes`)));
            res.resume();
          }, 1000);
        });
        r.on('error', reject);
        r.end();
      });
      assert.equal(received, total);
    } finally {
      await big.close();
    }
  });

  test('a client that takes nothing for GATEHOUSE_SEND_TIMEOUT is dropped, and so is the upstream connection', async () => {
    const dir2 = tempDir();
    const dp2 = await startDataPlane({ config: dpConfig({ GATEHOUSE_DATA_DIR: dir2.path, GATEHOUSE_SEND_TIMEOUT: '400' }), store, plugins: new Map() });
    let upstreamClosed = 0;
    // Writes for ever (until its connection goes); the client below reads nothing until dropped.
    const endless = await startUpstream('endless', (_r, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.on('close', () => (upstreamClosed = Date.now()));
      writeForever(res, Buffer.alloc(64 * 1024, 'y'));
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: endless.port, read_timeout: 60_000 });
      await apply({ services: [svc], routes: [route({ paths: ['/endless'] }, svc)] });
      await waitFor('second data plane applied', () => dp2.configVersion?.version === applier.version);
      const dp2Port = dp2.addresses[0].port;
      const t0 = Date.now();
      const complete = await new Promise<boolean>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port: dp2Port, path: '/endless', agent: false }, (res) => {
          res.pause();
          res.on('error', () => {});
          // A paused client cannot see its connection close: it looks once the upstream's is gone.
          waitFor('upstream connection closed', () => upstreamClosed !== 0).then(() => {
            res.on('close', () => resolve(res.complete));
            res.resume();
          }, reject);
        });
        r.on('error', () => {});
        r.end();
      });
      // Dropped after send_timeout of taking nothing, not after read_timeout (60 s) and not before.
      assert.ok(upstreamClosed - t0 >= 400, `dropped after ${upstreamClosed - t0} ms`);
      assert.ok(upstreamClosed - t0 < 10_000, `dropped after ${upstreamClosed - t0} ms`);
      assert.equal(complete, false, 'the client was cut off, not given an ending');

      // The upstream's response ends while its last bytes still wait in the proxy's socket to
      // the client (whose every write was accepted, so the upstream was never held back): the
      // client is dropped all the same. The proxy's side of the connection is watched to end
      // the response at that moment.
      let proxySide: Socket | null = null;
      (dp2.proxy as unknown as { servers: import('node:net').Server[] }).servers[0].once('connection', (s: Socket) => (proxySide = s));
      const ending = await startUpstream('ending', (_r, res) => {
        const chunk = Buffer.alloc(1024, 'z');
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let sent = 0;
        const next = () => {
          if (res.destroyed) return;
          if ((proxySide?.writableLength ?? 0) > 0 || sent > 256 * 1024 * 1024) return void res.end();
          sent += chunk.length;
          res.write(chunk);
          setImmediate(next);
        };
        next();
        return true;
      });
      try {
        const last = service({ host: '127.0.0.1', port: ending.port, read_timeout: 60_000 });
        await apply({ services: [svc, last], routes: [route({ paths: ['/endless'] }, svc), route({ paths: ['/ending'] }, last)] });
        await waitFor('second data plane applied', () => dp2.configVersion?.version === applier.version);
        const r = httpRequest({ host: '127.0.0.1', port: dp2Port, path: '/ending', agent: false }, (res) => res.pause());
        r.on('error', () => {});
        r.end();
        await waitFor('the proxy dropped the client', () => proxySide?.destroyed === true);
        r.destroy();

        // The same, but the client does take the response, and a pipelined request waits
        // behind it on an upstream that answers late: send_timeout is over once the response is
        // taken, and does not cut the next response's wait short.
        let queued = false;
        proxySide = null;
        (dp2.proxy as unknown as { servers: import('node:net').Server[] }).servers[0].once('connection', (s: Socket) => (proxySide = s));
        const slow = await startUpstream('late', (_r, res) => {
          setTimeout(() => res.end('late answer'), 2500);
          return true;
        });
        try {
          const lateSvc = service({ host: '127.0.0.1', port: slow.port, read_timeout: 60_000 });
          await apply({ services: [svc, last, lateSvc], routes: [route({ paths: ['/endless'] }, svc), route({ paths: ['/ending'] }, last), route({ paths: ['/late'] }, lateSvc)] });
          await waitFor('second data plane applied', () => dp2.configVersion?.version === applier.version);
          const text = await new Promise<string>((resolve, reject) => {
            const socket = createConnection(dp2Port, '127.0.0.1', () => socket.write('GET /ending HTTP/1.1\r\nHost: a\r\n\r\nGET /late HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
            socket.pause();
            let got = '';
            socket.setEncoding('latin1');
            socket.on('data', (c: string) => (got += c));
            socket.on('end', () => resolve(got));
            socket.on('error', reject);
            // Reads once the end of the first response waits in the proxy's socket.
            waitFor('first response queued', () => (queued ||= (proxySide?.writableLength ?? 0) > 0)).then(() => socket.resume(), reject);
          });
          assert.ok(text.endsWith('late answer'), `the pipelined response was cut off: ...${text.slice(-120)}`);
        } finally {
          await slow.close();
        }
      } finally {
        await ending.close();
      }
    } finally {
      await endless.close();
      await dp2.close();
      dir2.remove();
    }
  });

  test('trailers of a chunked upstream response reach the client', async () => {
    const trailing = await startUpstream('trailing', (r, res) => {
      if (r.url!.includes('sized')) {
        // Raw, as Node would not send this head itself.
        res.socket!.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntrailer: x-checksum\r\ncontent-length: 5\r\n\r\nsized');
        return true;
      }
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-count' });
      res.write('part one, ');
      res.write('part two');
      res.addTrailers([['X-Checksum', 'sha256=abc'], ['X-Count', '2']]);
      res.end();
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: trailing.port });
      await apply({ services: [svc], routes: [route({ paths: ['/trailing'] }, svc)] });
      const got = await new Promise<{ body: string; trailers: NodeJS.Dict<string>; headers: NodeJS.Dict<string | string[]> }>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path: '/trailing', agent: false, headers: { te: 'trailers' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ body, trailers: res.trailers, headers: res.headers }));
        });
        r.on('error', reject);
        r.end();
      });
      assert.equal(got.body, 'part one, part two');
      assert.equal(got.headers.trailer, 'x-checksum, x-count');
      assert.deepEqual({ ...got.trailers }, { 'x-checksum': 'sha256=abc', 'x-count': '2' });
      // An HTTP/1.0 client cannot take trailers (no chunked encoding): the body, without them
      // and without the Trailer header announcing them (Node would refuse that head).
      const old = await new Promise<string>((resolve, reject) => {
        const socket = createConnection(port, '127.0.0.1', () => socket.write('GET /trailing HTTP/1.0\r\nHost: localhost\r\n\r\n'));
        let text = '';
        socket.setEncoding('latin1');
        socket.on('data', (c: string) => (text += c));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      assert.match(old, /^HTTP\/1\.1 200 OK\r\n/);
      assert.doesNotMatch(old, /\r\ntrailer:/i);
      assert.ok(old.endsWith('\r\n\r\npart one, part two'), old);
      // Nor can a response with a length (the upstream announced trailers it cannot send): it goes without the header.
      const sized = await req(port, '/trailing?sized=1');
      assert.equal(sized.status, 200);
      assert.equal(sized.body, 'sized');
      assert.equal(sized.headers.trailer, undefined);
    } finally {
      await trailing.close();
    }
  });

  test('a request body streams too: the upstream answers its first chunk while the client is still sending', async () => {
    const early = await startUpstream('early');
    // Instead of the echo handler (which waits for whole bodies): answer on the first chunk.
    early.server.removeAllListeners('request');
    early.server.on('request', (request: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      request.once('data', (chunk: Buffer) => {
        res.end(`upstream got: ${chunk}`);
        request.resume();
      });
    });
    try {
      const svc = service({ host: '127.0.0.1', port: early.port });
      await apply({ services: [svc], routes: [route({ paths: ['/early'] }, svc)] });
      const client = httpRequest({ host: '127.0.0.1', port, path: '/early', method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } });
      client.write('first chunk');
      const answered = new Promise<string>((resolve, reject) => {
        client.once('error', reject).once('response', (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (body += c)).on('end', () => resolve(body));
        });
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer while the request body is open: the proxy waited for the whole body')), 5000)));
      assert.equal(await Promise.race([answered, timeout]).finally(() => clearTimeout(timer)), 'upstream got: first chunk');
      client.end('second chunk');
    } finally {
      await early.close();
    }
  });

  test('a client that leaves mid-download releases the upstream connection at once (not after read_timeout)', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    const endless = await startUpstream('endless', (_r, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024, 1)), 20);
      res.on('close', () => {
        clearInterval(timer);
        upstreamClosed();
      });
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: endless.port, read_timeout: 60_000 });
      await apply({ services: [svc], routes: [route({ paths: ['/endless'] }, svc)] });
      await new Promise<void>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', port, path: '/endless', agent: false }, (res) => {
          res.once('data', () => {
            r.destroy();
            resolve();
          });
        });
        r.on('error', () => {});
        r.once('error', reject);
        r.end();
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the upstream connection outlived its client')), 3000)))]).finally(() => clearTimeout(timer));
    } finally {
      await endless.close();
    }
  });

  test('a client that leaves before the answer: the upstream request is dropped at once and not retried', async () => {
    let started = 0;
    let dropped!: () => void;
    const droppedEarly = new Promise<void>((r) => (dropped = r));
    const slow = await startUpstream('slow-answer', (_r, res) => {
      started++;
      const timer = setTimeout(() => res.end('too late'), 5000);
      res.on('close', () => {
        clearTimeout(timer);
        if (!res.writableFinished) dropped();
      });
      return true;
    });
    try {
      const svc = service({ host: '127.0.0.1', port: slow.port, retries: 3 });
      await apply({ services: [svc], routes: [route({ paths: ['/slow-answer'] }, svc)] });
      const r = httpRequest({ host: '127.0.0.1', port, path: '/slow-answer', agent: false });
      r.on('error', () => {});
      r.end();
      await waitFor('the upstream got the request', () => started === 1);
      r.destroy();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([droppedEarly, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the upstream went on working for a client that left')), 3000)))]).finally(() => clearTimeout(timer));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(started, 1, 'no retry');
    } finally {
      await slow.close();
    }
  });

  test('a snapshot swap does not disturb a request in flight: it finishes on the old config', async () => {
    const old = await startUpstream('old', (_r, res) => {
      setTimeout(() => res.end(JSON.stringify({ upstream: 'old' })), 300);
      return true;
    });
    const fresh = await startUpstream('new');
    try {
      const a = service({ host: '127.0.0.1', port: old.port });
      await apply({ services: [a], routes: [route({ paths: ['/swap'] }, a)] });
      const inflight = req(port, '/swap');
      await new Promise((r) => setTimeout(r, 50));
      const b = service({ host: '127.0.0.1', port: fresh.port });
      await apply({ services: [b], routes: [route({ paths: ['/swap'] }, b)] });
      assert.equal((await inflight).json().upstream, 'old');
      assert.equal((await req(port, '/swap')).json().upstream, 'new');
    } finally {
      await old.close();
      await fresh.close();
    }
  });
});
