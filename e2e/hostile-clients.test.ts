// A data plane as its own process (two cluster workers, plain and TLS listeners) against the
// bytes an outside probe sent: requests cut off mid-body, malformed chunked bodies, oversized
// and trickled heads and bodies, headers a client must not control. After each, the process
// and both workers are still alive and serving, and no uncaught exception was logged.
import assert from 'node:assert/strict';
import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { consumerEntity, buildSnapshot, publishSnapshot, routeEntity, serviceEntity } from '@gatehouse/core/test-fixtures.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { makeCredential, makeOauth2Plugin } from '../packages/plugins/test/oauth2-helpers.ts';
import { startUpstream, type Echo, type Upstream } from '../packages/data-plane/test/helpers.ts';
import { dataPlaneProcess, http, waitFor, type Proc } from './proxy-helpers.ts';

const HEADER_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 2000;

/** Sends `bytes` on a fresh connection (TLS when asked), then closes it after `closeAfterMs` unless the server closed first; resolves with what came back. */
function send(port: number, bytes: string | string[], options: { tls?: boolean; closeAfterMs?: number; gapMs?: number } = {}): Promise<string> {
  const parts = Array.isArray(bytes) ? bytes : [bytes];
  return new Promise((resolve) => {
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    const writeFrom = (i: number) => {
      if (i >= parts.length || socket.destroyed) return;
      socket.write(parts[i]);
      timer = setTimeout(() => writeFrom(i + 1), options.gapMs ?? 0);
    };
    const socket: Socket = options.tls
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => writeFrom(0))
      : createConnection(port, '127.0.0.1', () => writeFrom(0));
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    setTimeout(() => socket.destroy(), options.closeAfterMs ?? 10_000);
  });
}

function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1] ?? 0);
}

function bodyOf(answer: string): unknown {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
}

describe('hostile clients against a data-plane process', () => {
  const prefix = testRedisPrefix();
  const dir = tempDir();
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  let up: Upstream;
  let dp: Proc;
  let port: number;
  let tlsPort: number;
  const echoes: Echo[] = [];

  before(async () => {
    up = await startUpstream('hostile', (req, res, body) => {
      echoes.push({ method: req.method!, url: req.url!, headers: req.headers, body: body.toString(), upstream: 'hostile' });
    });
    const svc = serviceEntity({ host: '127.0.0.1', port: up.port, retries: 0 });
    const oauthRoute = routeEntity({ paths: ['/secured'] }, svc);
    const consumer = consumerEntity('app');
    const { plain_secret: _secret, ...credential } = await makeCredential(consumer);
    await publishSnapshot(
      store,
      buildSnapshot(1, {
        services: [svc],
        routes: [routeEntity({ paths: ['/plain'] }, svc), oauthRoute],
        consumers: [consumer],
        plugins: [makeOauth2Plugin({ enable_client_credentials: true }, { route: { id: oauthRoute.id } })],
        credentials: { oauth2_credentials: [credential] },
      }),
    );
    ({ proc: dp, port, tlsPort } = await dataPlaneProcess(prefix, dir.path, {
      GATEHOUSE_LOG_LEVEL: 'info',
      GATEHOUSE_CLIENT_HEADER_TIMEOUT: String(HEADER_TIMEOUT_MS),
      GATEHOUSE_CLIENT_REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_MS),
    }));
    await waitFor('the data plane serving', async () => (await http(port, '/plain/ready')).status === 200, 60_000, [dp]);
  });

  after(async () => {
    await dp.stop();
    await up.close();
    await store.close();
    dir.remove();
  });

  /** The process and every worker lived through it, and each listener still serves. */
  async function stillServing(): Promise<void> {
    assert.equal(dp.child.exitCode, null, dp.output.slice(-2000));
    assert.doesNotMatch(dp.output, /worker died|uncaught exception|Unhandled 'error' event/);
    // Several requests, so both workers are asked.
    for (let i = 0; i < 4; i++) assert.equal((await http(port, `/plain/after-${i}`)).status, 200);
    assert.equal(statusOf(await send(tlsPort, 'GET /plain/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { tls: true })), 200);
  }

  test('a request cut off in the middle of its streamed body ends no process or worker (Content-Length and chunked, plain and TLS)', async () => {
    const heads = [
      'POST /plain/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789',
      'POST /plain/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n',
    ];
    for (const tls of [false, true]) {
      // Eight each, as the probe sent: with two workers every one of them gets some.
      for (let i = 0; i < 8; i++) for (const bytes of heads) await send(tls ? tlsPort : port, bytes, { tls, closeAfterMs: 150 });
    }
    await stillServing();
  });

  test('malformed chunked bodies and transfer codings are answered 400 with Kong’s body, and end no worker', async () => {
    const bodies = {
      'Transfer-Encoding: xchunked': 'Transfer-Encoding: xchunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n',
      'a bare LF after a chunk size': 'Transfer-Encoding: chunked\r\n\r\n5\nabcde\r\n0\r\n\r\n',
      'a space before a chunk size': 'Transfer-Encoding: chunked\r\n\r\n 5\r\nabcde\r\n0\r\n\r\n',
      'a chunk size that overflows': 'Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabcde\r\n0\r\n\r\n',
      'a Content-Length in the trailer': 'Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\nContent-Length: 5\r\n\r\n',
    };
    for (const [what, rest] of Object.entries(bodies)) {
      for (const tls of [false, true]) {
        const answer = await send(tls ? tlsPort : port, `POST /plain/chunks HTTP/1.1\r\nHost: x\r\n${rest}`, { tls });
        assert.equal(statusOf(answer), 400, `${what} (${tls ? 'TLS' : 'plain'}): ${answer}`);
        assert.deepEqual(bodyOf(answer), { message: 'Bad request' }, what);
      }
    }
    assert.ok(!echoes.some((e) => e.url === '/chunks' && e.body !== ''), 'no malformed body reached the upstream whole');
    await stillServing();
  });

  test('a head over the limit is 431 (headers) or 414 (URL) with Kong’s body', async () => {
    const big = await send(port, `GET /plain/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
    assert.equal(statusOf(big), 431, big);
    assert.deepEqual(bodyOf(big), { message: 'Request header or cookie too large' });
    const many = await send(port, `GET /plain/x HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`);
    assert.equal(statusOf(many), 431, many);
    const longUrl = await send(port, `GET /plain/${'u'.repeat(70 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(longUrl), 414, longUrl);
    assert.deepEqual(bodyOf(longUrl), { message: 'URI too long' });
    await stillServing();
  });

  test('a head trickled slower than GATEHOUSE_CLIENT_HEADER_TIMEOUT is answered 408 and closed', async () => {
    const started = Date.now();
    const parts = ['GET /plain/slow HTTP/1.1\r\nHost: x\r\n', ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: y\r\n`)];
    const answer = await send(port, parts, { gapMs: 250, closeAfterMs: 30_000 });
    assert.equal(statusOf(answer), 408, answer);
    assert.deepEqual(bodyOf(answer), { message: 'Request timeout' });
    // Well before the head would have been complete (40 × 250 ms).
    assert.ok(Date.now() - started < 9_000, `answered after ${Date.now() - started} ms`);
    await stillServing();
  });

  test('a body trickled past GATEHOUSE_CLIENT_REQUEST_TIMEOUT is answered 408, to a plain route and to /oauth2/token', async () => {
    const plain = await send(port, ['POST /plain/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n', ...Array.from({ length: 40 }, () => 'a')], { gapMs: 250, closeAfterMs: 30_000 });
    assert.equal(statusOf(plain), 408, plain);
    const token = await send(
      tlsPort,
      ['POST /secured/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n', ...Array.from({ length: 40 }, () => 'a')],
      { tls: true, gapMs: 250, closeAfterMs: 30_000 },
    );
    assert.equal(statusOf(token), 408, token);
    await stillServing();
  });

  test('a client leaving an oauth2 endpoint mid-body is one info line, not a plugin failure with a stack', async () => {
    const marker = `left-${Date.now()}`;
    await send(tlsPort, `POST /secured/oauth2/token HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${marker}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\ngrant_type=client`, { tls: true, closeAfterMs: 200 });
    const lines = await waitFor('the log line', async () => {
      const found = dp.output.split('\n').filter((l) => l.includes(marker));
      return found.length ? found : null;
    }, 10_000, [dp]);
    assert.equal(lines.length, 1, lines.join('\n'));
    const entry = JSON.parse(lines[0]);
    assert.equal(entry.level, 'info');
    assert.equal(entry.message, 'client closed the connection during a plugin');
    assert.equal(entry.stack, undefined);
    assert.equal(entry.error, undefined);
    await stillServing();
  });

  test('Forwarded from an untrusted client does not reach the upstream; TE is not forwarded; TRACE is 405', async () => {
    echoes.length = 0;
    const res = await http(port, '/plain/fwd', { headers: { Forwarded: 'for=203.0.113.9;host=evil.test;proto=https', TE: 'trailers' } });
    assert.equal(res.status, 200);
    const seen = echoes.find((e) => e.url === '/fwd');
    assert.ok(seen);
    assert.equal(seen.headers.forwarded, undefined);
    assert.equal(seen.headers.te, undefined);
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    const trace = await http(port, '/plain/trace', { method: 'TRACE' });
    assert.equal(trace.status, 405);
    assert.deepEqual(trace.json(), { message: 'Method not allowed' });
    assert.ok(!echoes.some((e) => e.method === 'TRACE'), 'TRACE never reaches the upstream');
  });
});
