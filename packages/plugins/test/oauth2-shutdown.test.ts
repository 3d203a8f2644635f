// `gatehouse data-plane` as its own process, with the oauth2 plugin subscribed to revocations:
// SIGTERM while Redis is unreachable must end the process within seconds (every close on the
// shutdown path bounded), not when Redis comes back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { buildSnapshot, publishSnapshot } from '@gatehouse/core/test-fixtures.ts';
import { RedisStore } from '@gatehouse/core/store/redis.ts';
import { getFreePort, tempDir, testRedisPrefix, TEST_REDIS_URL } from '@gatehouse/core/testing.ts';
import { KEYS } from '../src/oauth2/tokens.ts';
import { makeOauth2Plugin, makeRoute, makeService, request, startRedisRelay, type Relay } from './oauth2-helpers.ts';

const bin = join(import.meta.dirname, '../../../bin/gatehouse.js');

let relay: Relay;
let store: RedisStore;
let probe: Redis;
const prefix = testRedisPrefix();
before(async () => {
  relay = await startRedisRelay();
  store = new RedisStore({ url: TEST_REDIS_URL, prefix });
  probe = new Redis(TEST_REDIS_URL);
});
after(async () => {
  await relay.close();
  await store.close();
  probe.disconnect();
});

async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, output: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('SIGTERM with Redis cut: the data plane (oauth2 subscribed to revocations) exits 0 within seconds', async (t) => {
  const service = makeService(await getFreePort());
  const plugin = makeOauth2Plugin({ enable_client_credentials: true }, { service: { id: service.id } });
  await publishSnapshot(store, buildSnapshot(1, { services: [service], routes: [makeRoute(['/api'], service)], plugins: [plugin] }));
  const dir = tempDir('gatehouse-oauth2-shutdown-');
  const port = await getFreePort();
  const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: relay.url, GATEHOUSE_REDIS_PREFIX: prefix, GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`, GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_WORKERS: '1', GATEHOUSE_LOG_LEVEL: 'error' };
  delete env.DATABASE_URL;
  const child = spawn(process.execPath, [bin, 'data-plane'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await waitFor('the oauth2 route served', async () => (await request(port, '/api/x').catch(() => null))?.status === 401, 60_000, () => output);
    const subscribers = async () => Number(((await probe.pubsub('NUMSUB', `${prefix}${KEYS.channel}`)) as [string, number])[1]);
    await waitFor('the revocation subscription', async () => (await subscribers()) === 1, 10_000, () => output);

    await relay.cut();
    // Let the data plane notice: its connections drop and start retrying.
    await new Promise((r) => setTimeout(r, 500));
    const start = Date.now();
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000).unref())]);
    const ms = Date.now() - start;
    t.diagnostic(`exited ${ms} ms after SIGTERM`);
    assert.notEqual(code, 'timeout', `still running 15 s after SIGTERM\n${output.slice(-3000)}`);
    assert.equal(code, 0, output.slice(-3000));
    assert.ok(ms < 10_000, `exited after ${ms} ms`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await relay.restore();
    dir.remove();
  }
});
