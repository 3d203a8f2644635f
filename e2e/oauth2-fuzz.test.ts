// Generated malformed requests (fast-check, seeded: a failure prints the seed and the shrunk
// request that reproduces it) against every proxy-side OAuth endpoint and a protected resource,
// on a data-plane process with two workers. Every answer is below 500 and shows no stack or
// file path, no worker ends, and the workers' memory stops growing once the heap has grown to the largest bodies.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { buildSnapshot, consumerEntity, publishSnapshot, routeEntity, serviceEntity } from '@gatehouse/core/test-fixtures.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { makeCredential, makeOauth2Plugin } from '../packages/plugins/test/oauth2-helpers.ts';
import { KEYS as OAUTH2_KEYS } from '../packages/plugins/src/oauth2/tokens.ts';
import { startUpstream, type Upstream } from '../packages/data-plane/test/helpers.ts';
import { dataPlaneProcess, http, waitFor, type Proc } from './proxy-helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261207);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1200);

const ENDPOINTS = [
  '/api/oauth2/authorize',
  '/api/oauth2/token',
  '/api/oauth2/revoke',
  '/api/oauth2/introspect',
  '/api/.well-known/oauth-authorization-server',
  '/api/resource',
  '/api/oauth2/token/',
  '/api/deeper/oauth2/token',
];
const PARAMS = [
  'grant_type', 'client_id', 'client_secret', 'code', 'redirect_uri', 'scope', 'state', 'response_type', 'provision_key',
  'authenticated_userid', 'refresh_token', 'code_challenge', 'code_challenge_method', 'code_verifier', 'token', 'token_type_hint',
  'username', 'password', 'access_token', 'assertion',
  // Names that trip naive parsers.
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'scope[]', 'client_id[]', 'a[b][c]', '', '%00', 'grant_type%5B%5D',
];
const GRANTS = ['authorization_code', 'client_credentials', 'password', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'implicit'];

type Known = { clientId: string; secret: string; provisionKey: string };

/** A value a client might send: plausible or hostile, and huge where it can be (bodies, not URLs or headers). */
function value(known: Known, huge = false): fc.Arbitrary<string> {
  const values = [
    fc.constantFrom(known.clientId, known.secret, known.provisionKey, 'https://app.test/cb', 'read', ...GRANTS, 'code', 'token', 'S256', 'plain'),
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('', ' ', '%', '%zz', '%00', '\u0000', '\r\nX-Injected: 1', '../../etc/passwd', '{"a":1}', '[]', 'null', '1e999', '-1'),
  ];
  if (huge) values.push(fc.integer({ min: 1000, max: 1_000_000 }).map((n) => 'x'.repeat(n)));
  return fc.oneof(...values);
}

interface Generated {
  method: string;
  path: string;
  inQuery: [string, string][];
  inBody: [string, string][];
  encoding: 'form' | 'json' | 'json-garbage' | 'multipart' | 'none' | 'bytes';
  jsonValue: unknown;
  bytes: Uint8Array;
  authorization: string | null;
  contentType: string | null;
}

function generated(known: Known): fc.Arbitrary<Generated> {
  const pairs = (huge: boolean) => fc.array(fc.tuple(fc.constantFrom(...PARAMS), value(known, huge)), { maxLength: 8 });
  return fc.record({
    // Mostly POST: the endpoints read their parameters from POST bodies.
    method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 12 }, fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD')),
    path: fc.constantFrom(...ENDPOINTS),
    inQuery: pairs(false),
    inBody: pairs(true),
    encoding: fc.constantFrom('form', 'form', 'json', 'json-garbage', 'multipart', 'none', 'bytes'),
    jsonValue: fc.jsonValue({ maxDepth: 4 }),
    bytes: fc.uint8Array({ maxLength: 200 }),
    authorization: fc.option(
      fc.oneof(
        fc.tuple(value(known), value(known)).map(([id, secret]) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`),
        fc.string({ maxLength: 30 }).map((s) => `Basic ${s}`),
        value(known).map((s) => `Bearer ${s}`),
        fc.constantFrom('Basic', 'Bearer', 'Basic =', 'Digest x', `Basic ${Buffer.from(known.clientId).toString('base64')}`),
      ),
    ),
    contentType: fc.option(fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'multipart/form-data', 'text/plain', 'application/json; charset=latin1', 'x/y; boundary=')),
  });
}

function encodePairs(pairs: [string, string][]): string {
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

function bodyOf(g: Generated): { body: Buffer | null; type: string | null } {
  switch (g.encoding) {
    case 'form':
      return { body: Buffer.from(encodePairs(g.inBody)), type: 'application/x-www-form-urlencoded' };
    case 'json':
      return { body: Buffer.from(JSON.stringify(Object.fromEntries(g.inBody))), type: 'application/json' };
    case 'json-garbage':
      return { body: Buffer.from(JSON.stringify(g.jsonValue) ?? 'undefined'), type: 'application/json' };
    case 'multipart':
      return { body: Buffer.from(`--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--b--\r\n`), type: 'multipart/form-data; boundary=b' };
    case 'bytes':
      return { body: Buffer.from(g.bytes), type: null };
    default:
      return { body: null, type: null };
  }
}

/** Header values Node would refuse to send are not what this test is about: such a request is sent without them. */
function safeHeader(v: string | null): string | null {
  return v !== null && /^[\t\x20-\x7e\x80-\xff]*$/.test(v) && v.length < 8000 ? v : null;
}

/** The pids of a process's children (the cluster workers), from /proc. */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

describe('generated malformed OAuth requests against a data-plane process', () => {
  const prefix = testRedisPrefix();
  const dir = tempDir();
  const store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 4, rejectUnauthorized: false });
  let up: Upstream;
  let dp: Proc;
  let port: number;
  let tlsPort: number;
  let known: Known;

  before(async () => {
    up = await startUpstream('fuzz');
    const svc = serviceEntity({ host: '127.0.0.1', port: up.port, retries: 0 });
    const route = routeEntity({ paths: ['/api'] }, svc);
    const consumer = consumerEntity('fuzz-app');
    const { plain_secret: secret, ...credential } = await makeCredential(consumer, { hash_secret: true });
    const plugin = makeOauth2Plugin(
      { scopes: ['read', 'write'], enable_authorization_code: true, enable_client_credentials: true, enable_implicit_grant: true, enable_password_grant: true },
      { route: { id: route.id } },
    );
    known = { clientId: credential.client_id, secret, provisionKey: plugin.config.provision_key as string };
    // What a control plane sets once the store holds its tokens (else a token not found is 503: restoring).
    await store.set(OAUTH2_KEYS.sentinel, String(Date.now()));
    await publishSnapshot(store, buildSnapshot(1, { services: [svc], routes: [route], consumers: [consumer], plugins: [plugin], credentials: { oauth2_credentials: [credential] } }));
    ({ proc: dp, port, tlsPort } = await dataPlaneProcess(prefix, dir.path));
    await waitFor('the data plane serving', async () => (await http(port, '/api/resource')).status === 401, 60_000, [dp]);
  });

  after(async () => {
    agent.destroy();
    await dp.stop();
    await up.close();
    await store.close();
    dir.remove();
  });

  function send(g: Generated): Promise<{ status: number; body: string }> {
    const bodiless = g.method === 'GET' || g.method === 'HEAD';
    const { body, type } = bodiless ? { body: null, type: null } : bodyOf(g);
    const query = encodePairs(g.inQuery);
    const headers: Record<string, string> = { host: 'gateway.test' };
    const contentType = safeHeader(g.contentType ?? type);
    if (contentType !== null && body !== null) headers['content-type'] = contentType;
    const authorization = safeHeader(g.authorization);
    if (authorization !== null) headers.authorization = authorization;
    if (body !== null) headers['content-length'] = String(body.length);
    const path = query ? `${g.path}?${query}` : g.path;
    return new Promise((resolve, reject) => {
      const r = httpsRequest({ host: '127.0.0.1', port: tlsPort, path, method: g.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      r.setTimeout(15_000, () => r.destroy(new Error('timed out')));
      r.on('error', reject);
      r.end(body ?? undefined);
    });
  }

  test(`${RUNS} generated requests: every answer below 500, no stack or file path, no worker ends, memory settles`, async (t) => {
    const workers = childrenOf(dp.child.pid!);
    assert.equal(workers.length, 2);
    // Warm both workers up first, so JIT and caches are not counted as growth.
    for (let i = 0; i < 200; i++) await send({ method: 'POST', path: '/api/oauth2/token', inQuery: [], inBody: [['grant_type', 'client_credentials']], encoding: 'form', jsonValue: null, bytes: new Uint8Array(), authorization: null, contentType: null });
    const before = workers.map(rssKb);
    let halfway: number[] = [];
    let sent = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(generated(known), async (g) => {
        if (++sent === Math.floor(RUNS / 2)) halfway = workers.map(rssKb);
        const res = await send(g);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `status ${res.status}: ${res.body.slice(0, 300)}`);
        assert.doesNotMatch(res.body, /\n\s+at |node:internal|\/packages\/|\/node_modules\/|\.ts:\d+/, 'a stack trace or file path in the body');
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
    );
    assert.ok((statuses.get(200) ?? 0) + (statuses.get(302) ?? 0) > 0 || statuses.size > 3, `too few kinds of answer to have exercised anything: ${[...statuses]}`);
    assert.deepEqual(childrenOf(dp.child.pid!), workers, 'no worker ended or was replaced');
    assert.doesNotMatch(dp.output, /worker died|uncaught exception|unhandled rejection/);
    // Memory: the first half grows the heap to what 1 MB bodies need (V8 keeps the pages); the
    // second half, as hostile as the first, must not grow it further: nothing is kept per request.
    await new Promise((r) => setTimeout(r, 2000));
    const afterKb = workers.map(rssKb);
    t.diagnostic(`answers by status: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; worker RSS kB before ${before}, halfway ${halfway}, after ${afterKb}`);
    for (let i = 0; i < workers.length; i++) assert.ok(afterKb[i] < halfway[i] + 48 * 1024, `worker ${i}: ${halfway[i]} kB halfway, ${afterKb[i]} kB after`);
  });
});
