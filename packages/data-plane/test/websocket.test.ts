// WebSocket handshakes through the proxy, against a real upstream on loopback that switches
// protocols and echoes bytes: routing, access plugins and upstream headers as for any request,
// then a tunnel both ways (ws and wss); refusals, failures and other Upgrade protocols.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import type { PluginDefinition } from '@gatehouse/core/plugin-sdk.ts';
import { MemoryStore } from '@gatehouse/core/store/memory.ts';
import { tempDir } from '@gatehouse/core/testing.ts';
import { startDataPlane, type DataPlane } from '../src/index.ts';
import { dpConfig, plugin, route, service, snapshotApplier, startUpstream, waitFor, writeForever, type Echo, type Upstream } from './helpers.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key: string) => createHash('sha1').update(key + GUID).digest('base64');

const logged: { status: number; path: string }[] = [];

/** Lets a request in only with `x-let-in: yes`; names the consumer for the upstream; logs. */
const gate: PluginDefinition<Record<string, never>> = {
  name: 'gate',
  version: '1.0.0',
  priority: 1000,
  configSchema: z.strictObject({}),
  dataPlane: async () => ({
    default: () => ({
      access(ctx) {
        if (ctx.req.headers['x-let-in'] !== 'yes') return ctx.respond(401, { message: 'Unauthorized' });
        ctx.setUpstreamHeader('X-Consumer-Username', 'ws-user');
      },
      log(ctx) {
        logged.push({ status: ctx.res.statusCode, path: ctx.req.url ?? '' });
      },
    }),
  }),
};

/** Lets everything in, after `ms` (400). */
const slowGate: PluginDefinition<{ ms?: number }> = {
  name: 'slow-gate',
  version: '1.0.0',
  priority: 900,
  configSchema: z.strictObject({ ms: z.number().optional() }),
  dataPlane: async () => ({
    default: () => ({
      async access(_ctx, config) {
        await new Promise((r) => setTimeout(r, config.ms ?? 400));
      },
    }),
  }),
};

const HANDSHAKE = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;

type Handshake =
  | { kind: 'tunnel'; headers: IncomingHttpHeaders; socket: Socket; head: Buffer }
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: string; complete: boolean; closed: Promise<void> };

/** A WebSocket handshake to the proxy; resolves with the tunnel or with the ordinary response. */
function handshake(port: number, path: string, options: { headers?: Record<string, string>; tls?: boolean; key?: string } = {}): Promise<Handshake> {
  const key = options.key ?? 'dGhlIHNhbXBsZSBub25jZQ==';
  const send = options.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = send({
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      rejectUnauthorized: false,
      headers: { host: 'ws.example.test', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': key, ...options.headers },
    });
    r.setTimeout(10_000, () => r.destroy(new Error(`handshake ${path} timed out`)));
    r.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => resolve({ kind: 'tunnel', headers: res.headers, socket, head }));
    r.on('response', (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      const closed = new Promise<void>((done) => res.socket.once('close', () => done()));
      const answer = () => ({ kind: 'response' as const, status: res.statusCode!, headers: res.headers, body, complete: res.complete, closed });
      res.on('end', () => resolve(answer()));
      res.on('error', () => {});
      res.on('close', () => resolve(answer()));
    });
    r.on('error', reject);
    r.end();
  });
}

/** A plain GET (no Upgrade) through the proxy; resolves with its status. */
function plainGet(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    r.on('error', reject);
    r.end();
  });
}

/** The handshake was answered without a tunnel (asserted). */
function answered(h: Handshake): Extract<Handshake, { kind: 'response' }> {
  assert.equal(h.kind, 'response');
  return h as Extract<Handshake, { kind: 'response' }>;
}

/** The handshake opened a tunnel (asserted). */
function tunnelled(h: Handshake): Extract<Handshake, { kind: 'tunnel' }> {
  assert.equal(h.kind, 'tunnel');
  return h as Extract<Handshake, { kind: 'tunnel' }>;
}

/** Reads from `socket` until `expected` bytes (or a text ending with `expected`) arrived, or it closes. */
function read(socket: Socket, expected: number | string, first: Buffer = Buffer.alloc(0)): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = first;
    const done = () => {
      socket.off('data', onData);
      resolve(got.toString());
    };
    const onData = (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (enough()) done();
    };
    const enough = () => (typeof expected === 'number' ? got.length >= expected : got.toString().endsWith(expected));
    if (enough()) return done();
    socket.on('data', onData);
    socket.once('close', done);
    socket.once('error', reject);
  });
}

describe('WebSocket', () => {
  const store = new MemoryStore();
  const dir = tempDir();
  let dp: DataPlane;
  let port: number;
  let tlsPort: number;
  let up: Upstream;
  const handshakes: { url: string; headers: IncomingHttpHeaders }[] = [];
  const upstreamSockets = new Set<Socket>();
  let endlessClosed = 0;
  let lastPlainPort = 0;
  let refusedPort = 0;
  let bigRefusalClosed = 0;
  let flakyAttempts = 0;

  /**
   * Sends an Upgrade request to `path` and reads nothing of the answer: the upstream connection
   * (its close time read by `closedAt`) must be dropped, after GATEHOUSE_SEND_TIMEOUT (500 ms here).
   */
  async function droppedWhileUnread(path: string, headers: Record<string, string>, closedAt: () => number) {
    const t0 = Date.now();
    const r = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => res.pause());
    r.on('error', () => {});
    r.end();
    await waitFor('upstream connection closed', () => closedAt() !== 0);
    assert.ok(closedAt() - t0 >= 500, `dropped after ${closedAt() - t0} ms`);
    r.destroy();
  }

  const applier = snapshotApplier(store, () => dp);
  const apply = applier.apply;

  before(async () => {
    // Ordinary requests get the helper's echo; handshakes are switched (or, under /refuse, refused).
    up = await startUpstream('ws', (req, res) => {
      if (req.url!.includes('/which')) lastPlainPort = req.socket.remotePort!;
      if (!req.url!.includes('/endless')) return;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.on('close', () => (endlessClosed = Date.now()));
      writeForever(res, Buffer.alloc(64 * 1024, 'e'));
      return true;
    });
    up.server.on('upgrade', async (req: IncomingMessage, socket: Socket, head: Buffer) => {
      handshakes.push({ url: req.url!, headers: req.headers });
      upstreamSockets.add(socket);
      socket.once('close', () => upstreamSockets.delete(socket));
      socket.on('end', () => socket.end());
      socket.on('error', () => socket.destroy());
      if (req.url!.endsWith('/refuse')) {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n');
        return;
      }
      if (req.url!.includes('/truncated')) {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\n0123456789');
        return;
      }
      if (req.url!.includes('/slow')) return void setTimeout(() => socket.destroy(), 5000);
      if (req.url!.includes('/refuse-keepalive')) {
        // Refused, on a connection the upstream would keep.
        refusedPort = socket.remotePort!;
        socket.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 5\r\n\r\nnope!');
        return;
      }
      if (req.url!.includes('/refuse-big')) {
        // Refused with a body that never ends (chunked), for a client that takes nothing.
        socket.once('close', () => (bigRefusalClosed = Date.now()));
        socket.write('HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\n\r\n');
        writeForever(socket, `10000\r\n${'r'.repeat(0x10000)}\r\n`);
        return;
      }
      if (req.url!.includes('/flaky') && flakyAttempts++ === 0) return void socket.destroy();
      const delay = req.url!.includes('/flaky') ? 300 : 0;
      if (delay) await new Promise((r) => setTimeout(r, delay));
      // The greeting goes out with the 101 head, in the same write.
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(String(req.headers['sec-websocket-key']))}\r\n\r\nhello;`,
      );
      if (head.length) socket.write(Buffer.concat([Buffer.from('early:'), head]));
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    dp = await startDataPlane({
      config: dpConfig({ GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_PROXY_LISTEN: '127.0.0.1:0, 127.0.0.1:0 ssl', GATEHOUSE_SEND_TIMEOUT: '500' }),
      store,
      plugins: new Map<string, PluginDefinition<any>>([
        ['gate', gate],
        ['slow-gate', slowGate],
      ]),
    });
    port = dp.addresses.find((a) => !a.ssl)!.port;
    tlsPort = dp.addresses.find((a) => a.ssl)!.port;
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/base', read_timeout: 2000 });
    const gated = route({ paths: ['/ws'] }, svc);
    const slow = route({ paths: ['/slowgate'] }, svc);
    await apply({
      services: [svc],
      routes: [gated, slow, route({ paths: ['/open'] }, svc)],
      plugins: [plugin('gate', {}, { route: { id: gated.id } }), plugin('slow-gate', {}, { route: { id: slow.id } })],
    });
  });
  after(async () => {
    await dp.close();
    await up.close();
    dir.remove();
  });

  test('a handshake passes the access plugins and reaches the upstream with Kong headers; bytes then flow both ways', async () => {
    logged.length = 0;
    const before = handshakes.length;
    const h = tunnelled(await handshake(port, '/ws/chat?room=1', { headers: { 'x-let-in': 'yes', 'x-consumer-username': 'admin', 'x-forwarded-for': '203.0.113.7' } }));
    assert.equal(h.headers['sec-websocket-accept'], accept('dGhlIHNhbXBsZSBub25jZQ=='));
    assert.equal(h.headers.upgrade, 'websocket');
    const seen = handshakes[before];
    assert.equal(seen.url, '/base/chat?room=1');
    assert.equal(seen.headers.upgrade, 'websocket');
    assert.match(String(seen.headers.connection), /upgrade/i);
    assert.equal(seen.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==');
    assert.equal(seen.headers['x-consumer-username'], 'ws-user', 'set by the plugin, not the client');
    assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-prefix'], '/ws');
    assert.equal(seen.headers.host, `127.0.0.1:${up.port}`);
    assert.equal(await read(h.socket, 'hello;'.length, h.head), 'hello;');
    h.socket.write('ping 1');
    assert.equal(await read(h.socket, 'echo:ping 1'.length), 'echo:ping 1');
    h.socket.write('ping 2');
    assert.equal(await read(h.socket, 'echo:ping 2'.length), 'echo:ping 2');
    // The client closes: the upstream's connection goes too, and the log phase runs.
    h.socket.end();
    await waitFor('upstream tunnel closed', () => upstreamSockets.size === 0);
    await waitFor('log phase ran', () => logged.length === 1);
    assert.equal(logged[0].status, 101);
  });

  test('wss on the TLS listener: the same tunnel, X-Forwarded-Proto https', async () => {
    const before = handshakes.length;
    const h = tunnelled(await handshake(tlsPort, '/open/secure', { tls: true, key: 'AQIDBAUGBwgJCgsMDQ4PEA==' }));
    assert.equal(h.headers['sec-websocket-accept'], accept('AQIDBAUGBwgJCgsMDQ4PEA=='));
    assert.equal(handshakes[before].headers['x-forwarded-proto'], 'https');
    assert.equal(await read(h.socket, 'hello;'.length, h.head), 'hello;');
    h.socket.write('over tls');
    assert.equal(await read(h.socket, 'echo:over tls'.length), 'echo:over tls');
    h.socket.destroy();
  });

  test('bytes the client sends right behind its handshake reach the upstream once the tunnel is open', async () => {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
    socket.write(
      'GET /open/raw HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nfirst-frame',
    );
    const text = await read(socket, 'first-frame');
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    // In the upstream's handshake head or just after it, depending on how the bytes travel.
    assert.match(text, /\r\n\r\nhello;(early|echo):first-frame$/);
    socket.destroy();
  });

  test('a handshake with a body gets a 400 and nothing reaches the upstream (its length alone would smuggle the next request)', async () => {
    const before = handshakes.length;
    const socket = connect(port, '127.0.0.1');
    socket.write(
      'GET /open/x HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello',
    );
    const text = await read(socket, '"Bad request"}');
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(handshakes.length, before);
    socket.destroy();
  });

  test('a client that leaves while the upstream is answering its handshake has the upstream connection closed at once', async () => {
    const before = handshakes.length;
    const socket = connect(port, '127.0.0.1');
    socket.write('GET /open/slow HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await waitFor('handshake at the upstream', () => handshakes.length === before + 1);
    const t0 = Date.now();
    socket.end();
    // The upstream would hold it for 5 s, read_timeout is 2 s.
    await waitFor('upstream connection closed', () => upstreamSockets.size === 0);
    assert.ok(Date.now() - t0 < 1500, `closed after ${Date.now() - t0} ms`);
  });

  test('an access plugin refusing the handshake answers as for any request, and the connection closes', async () => {
    const before = handshakes.length;
    const h = answered(await handshake(port, '/ws/chat'));
    assert.equal(h.status, 401);
    assert.deepEqual(JSON.parse(h.body), { message: 'Unauthorized' });
    assert.equal(h.headers.connection, 'close');
    await h.closed;
    assert.equal(handshakes.length, before, 'nothing reached the upstream');
  });

  test('a client that leaves while an access plugin works: its handshake never reaches the upstream', async () => {
    const before = handshakes.length;
    const socket = connect(port, '127.0.0.1', () => socket.end(HANDSHAKE('/slowgate/x')));
    socket.on('error', () => {});
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(handshakes.length, before);
    socket.destroy();
  });

  test('headers the Connection header names do not reach the upstream', async () => {
    const before = handshakes.length;
    tunnelled(await handshake(port, '/open/named', { headers: { connection: 'Upgrade, X-Hop', 'x-hop': 'secret', 'x-keep': 'yes' } })).socket.destroy();
    assert.equal(handshakes[before].headers['x-hop'], undefined);
    assert.equal(handshakes[before].headers['x-keep'], 'yes');
    assert.equal(handshakes[before].headers.upgrade, 'websocket');
  });

  test('a connection answered without a tunnel is closed once the client closes its side, even with bytes unread', async () => {
    const server = (dp.proxy as unknown as { servers: import('node:net').Server[] }).servers[0];
    for (const kind of ['websocket', 'h2c']) {
      // A 404 to a WebSocket handshake and to an h2c request, each followed by bytes Node never reads.
      const path = '/nowhere';
      const upgrade = kind === 'websocket' ? HANDSHAKE(path) : `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`;
      let proxySide: Socket | null = null;
      server.once('connection', (s: Socket) => (proxySide = s));
      // More than socket buffers hold: Node stops reading, and would never see the client's FIN.
      const socket = connect(port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      // Sent a piece at a time, and read only once all is sent: the answer must still be there,
      // not lost to a reset of the connection (nor the sending cut off by one).
      for (const piece of [upgrade, ...Array.from({ length: 13 }, () => 'x'.repeat(16_000))]) {
        await new Promise<void>((resolve, reject) => socket.write(piece, (err) => (err ? reject(err) : resolve())));
        await new Promise((r) => setTimeout(r, 10));
      }
      const text = await read(socket, 'values"}');
      assert.match(text, /^HTTP\/1\.1 404 /);
      socket.end();
      // Well before the 5 s a silent client is given.
      await waitFor(`the proxy's side of the ${kind} connection closed`, () => proxySide?.destroyed === true, 2000);
    }
  });

  test('closing the data plane closes its tunnels and handshakes under way; none is sent again', async () => {
    const dir3 = tempDir();
    const dp3 = await startDataPlane({
      config: dpConfig({ GATEHOUSE_DATA_DIR: dir3.path }),
      store,
      plugins: new Map<string, PluginDefinition<any>>([
        ['gate', gate],
        ['slow-gate', slowGate],
      ]),
    });
    try {
      const svc = service({ host: '127.0.0.1', port: up.port, path: '/base', read_timeout: 2000 });
      // Its plugin outlasts close()'s 2 s of grace.
      const late = route({ paths: ['/late'] }, svc);
      await apply({ services: [svc], routes: [route({ paths: ['/open'] }, svc), late], plugins: [plugin('slow-gate', { ms: 3000 }, { route: { id: late.id } })] });
      await waitFor('third data plane applied', () => dp3.configVersion?.version === applier.version);
      const port3 = dp3.addresses[0].port;
      const open = tunnelled(await handshake(port3, '/open/live'));
      // Read, so that the closes are seen.
      open.socket.resume();
      const tunnelClosed = new Promise<void>((r) => open.socket.once('close', () => r()));
      const slowSeen = () => handshakes.filter((x) => x.url.endsWith('/slow')).length;
      const before = slowSeen();
      const pending = connect(port3, '127.0.0.1', () => pending.write(HANDSHAKE('/open/slow')));
      pending.on('error', () => {});
      pending.resume();
      const pendingClosed = new Promise<void>((r) => pending.once('close', () => r()));
      await waitFor('pending handshake at the upstream', () => slowSeen() === before + 1);
      const lateSeen = () => handshakes.filter((x) => x.url === '/base/held').length;
      const waiting = connect(port3, '127.0.0.1', () => waiting.write(HANDSHAKE('/late/held')));
      waiting.on('error', () => {});
      waiting.resume();
      await new Promise((r) => setTimeout(r, 100));
      await dp3.close();
      await tunnelClosed;
      await pendingClosed;
      // Past the plugin's 3 s: the handshake it held is not sent once the data plane is closed.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(slowSeen(), before + 1, 'the pending handshake was sent again');
      assert.equal(lateSeen(), 0, 'a handshake went upstream after close()');
      waiting.destroy();
    } finally {
      await dp3.close();
      dir3.remove();
    }
  });

  test('no route: 404 with Kong body', async () => {
    const h = answered(await handshake(port, '/nowhere'));
    assert.equal(h.status, 404);
    assert.deepEqual(JSON.parse(h.body), { message: 'no Route matched with those values' });
    await h.closed;
  });

  test('an upstream that answers without switching protocols: its response is relayed whole, then the connection closes', async () => {
    const h = answered(await handshake(port, '/open/refuse'));
    assert.equal(h.status, 403);
    assert.equal(h.body, 'nope!');
    assert.equal(h.headers['content-type'], 'text/plain');
    await h.closed;
  });

  test('a refused handshake whose body the upstream cuts short is cut short for the client too', async () => {
    const h = answered(await handshake(port, '/open/truncated'));
    assert.equal(h.status, 403);
    assert.equal(h.body, '0123456789');
    assert.equal(h.complete, false);
    await h.closed;
  });

  test("a refused handshake's upstream connection is not reused for the next request", async () => {
    const h = answered(await handshake(port, '/open/refuse-keepalive'));
    assert.equal(h.status, 403);
    assert.equal(h.body, 'nope!');
    const plain = await plainGet(port, '/open/which');
    assert.equal(plain, 200);
    assert.ok(refusedPort !== 0 && lastPlainPort !== 0);
    assert.notEqual(lastPlainPort, refusedPort, "the plain request went on the refused handshake's connection");
  });

  test('a handshake with Content-Length: 0 is tunnelled like any other', async () => {
    tunnelled(await handshake(port, '/open/zero', { headers: { 'content-length': '0' } })).socket.destroy();
  });

  test('bytes the client sends while a failed attempt is retried still reach the upstream', async () => {
    flakyAttempts = 0;
    const before = handshakes.length;
    const socket = connect(port, '127.0.0.1');
    socket.write('GET /open/flaky HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nfirst;');
    // The second attempt has reached the upstream, which answers it 300 ms later.
    await waitFor('retried handshake at the upstream', () => handshakes.length === before + 2);
    socket.write('second;');
    const text = await read(socket, 'second;');
    assert.match(text, /^HTTP\/1\.1 101 /);
    assert.match(text, /hello;(early:|echo:)first;(echo:)?second;$/);
    socket.destroy();
  });

  test("a refused handshake's body to a client that takes nothing: dropped after GATEHOUSE_SEND_TIMEOUT, not read_timeout", async () => {
    const patient = service({ host: '127.0.0.1', port: up.port, read_timeout: 30_000 });
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/base', read_timeout: 2000 });
    await apply({ services: [svc, patient], routes: [route({ paths: ['/open'] }, svc), route({ paths: ['/patient'] }, patient)] });
    bigRefusalClosed = 0;
    await droppedWhileUnread('/patient/refuse-big', { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }, () => bigRefusalClosed);
  });

  test('another Upgrade request, answered plainly, to a client that takes nothing: dropped after GATEHOUSE_SEND_TIMEOUT', async () => {
    endlessClosed = 0;
    await droppedWhileUnread('/open/endless', { connection: 'Upgrade', upgrade: 'h2c' }, () => endlessClosed);
  });

  test('an upstream that cannot be reached: 502 with Kong body', async () => {
    const closed = createNetServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const dead = service({ host: '127.0.0.1', port: deadPort, retries: 1 });
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/base', read_timeout: 2000 });
    await apply({ services: [svc, dead], routes: [route({ paths: ['/open'] }, svc), route({ paths: ['/dead'] }, dead)] });
    const h = answered(await handshake(port, '/dead'));
    assert.equal(h.status, 502);
    assert.deepEqual(JSON.parse(h.body), { message: 'An invalid response was received from the upstream server' });
  });

  test('a tunnel silent both ways for read_timeout is closed, upstream side too', async () => {
    const quick = service({ host: '127.0.0.1', port: up.port, read_timeout: 300 });
    await apply({ services: [quick], routes: [route({ paths: ['/quick'] }, quick)] });
    const h = tunnelled(await handshake(port, '/quick'));
    const t0 = Date.now();
    // Traffic keeps it open past read_timeout...
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 150));
      h.socket.write(`k${i}`);
    }
    assert.ok(!h.socket.destroyed && Date.now() - t0 > 300);
    // ...silence closes it.
    await new Promise<void>((resolve) => {
      h.socket.resume();
      h.socket.once('close', () => resolve());
    });
    await waitFor('upstream tunnel closed', () => upstreamSockets.size === 0);
  });

  test('another Upgrade protocol (h2c) is not switched to: answered as an ordinary request, Upgrade dropped', async () => {
    const svc = service({ host: '127.0.0.1', port: up.port, path: '/base' });
    await apply({ services: [svc], routes: [route({ paths: ['/open'] }, svc)] });
    const before = handshakes.length;
    const res = await new Promise<{ status: number; echo: Echo; connection: string | undefined }>((resolve, reject) => {
      const r = httpRequest({ host: '127.0.0.1', port, path: '/open/h2c', agent: false, headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, echo: JSON.parse(body), connection: res.headers.connection }));
      });
      r.on('upgrade', () => reject(new Error('switched protocols')));
      r.on('error', reject);
      r.end();
    });
    assert.equal(res.status, 200);
    assert.equal(res.echo.url, '/base/h2c');
    assert.equal(res.echo.headers.upgrade, undefined);
    assert.equal(res.connection, 'close');
    assert.equal(handshakes.length, before);
  });
});
