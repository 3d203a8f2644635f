// The same behaviour from both SharedStore implementations: Redis (real server) and in-process.
import assert from 'node:assert/strict';
import { describe, test, after } from 'node:test';
import { MemoryStore, RedisStore, type SharedStore } from '../src/index.ts';
import { TEST_REDIS_URL, testRedisPrefix } from '../src/testing.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const backends: [string, () => SharedStore][] = [
  ['redis', () => new RedisStore({ url: TEST_REDIS_URL, prefix: testRedisPrefix() })],
  ['memory', () => new MemoryStore()],
];

for (const [name, make] of backends) {
  describe(`${name} store`, () => {
    const store = make();
    after(() => store.close());

    test('strings with expiry, NX and getdel', async () => {
      assert.equal(await store.set('a', '1'), true);
      assert.equal(await store.get('a'), '1');
      assert.equal(await store.set('a', '2', { nx: true }), false);
      assert.equal(await store.get('a'), '1');
      assert.deepEqual(await store.mget(['a', 'missing']), ['1', null]);
      await store.set('short', 'x', { ttlMs: 50 });
      assert.equal(await store.exists('short'), true);
      await sleep(120);
      assert.equal(await store.get('short'), null);
      assert.equal(await store.getdel('a'), '1');
      assert.equal(await store.getdel('a'), null);
      await store.set('b', '1');
      await store.pexpire('b', 30);
      await sleep(80);
      assert.equal(await store.exists('b'), false);
    });

    test('getdel is single-use under concurrency', async () => {
      await store.set('code', 'grant-1');
      const results = await Promise.all(Array.from({ length: 20 }, () => store.getdel('code')));
      assert.equal(results.filter((r) => r === 'grant-1').length, 1);
    });

    test('sets and hashes', async () => {
      await store.sadd('s', 'x', 'y');
      await store.srem('s', 'x');
      assert.deepEqual(await store.smembers('s'), ['y']);
      await store.hset('h', 'f1', 'v1');
      await store.hset('h', 'f2', 'v2');
      await store.hdel('h', 'f1');
      assert.deepEqual(await store.hgetall('h'), { f2: 'v2' });
      assert.equal(await store.del('s', 'h', 'nothing'), 2);
    });

    test('publish reaches subscribers until they unsubscribe', async () => {
      const got: string[] = [];
      const unsubscribe = await store.subscribe('chan', (m) => got.push(m));
      await store.publish('chan', 'hello');
      for (let i = 0; i < 50 && got.length === 0; i++) await sleep(10);
      assert.deepEqual(got, ['hello']);
      await unsubscribe();
      await store.publish('chan', 'after');
      await sleep(50);
      assert.deepEqual(got, ['hello']);
    });

    test('streams: consumer group delivery, pending redelivery, ack', async () => {
      await store.xgroupEnsure('events', 'cp');
      await store.xgroupEnsure('events', 'cp'); // idempotent
      await store.xadd('events', { type: 'issued', n: '1' });
      await store.xadd('events', { type: 'issued', n: '2' });
      const batch = await store.xreadgroup('events', 'cp', 'c1', 10, 100);
      assert.deepEqual(batch.map((e) => e.fields.n), ['1', '2']);
      // Not acknowledged: still pending for this consumer (what a restarted consumer re-reads).
      const pending = await store.xpending('events', 'cp', 'c1', 10);
      assert.deepEqual(pending.map((e) => e.fields.n), ['1', '2']);
      await store.xack('events', 'cp', ...batch.map((e) => e.id));
      assert.deepEqual(await store.xpending('events', 'cp', 'c1', 10), []);
      // A blocking read returns as soon as something arrives.
      const started = Date.now();
      const waiting = store.xreadgroup('events', 'cp', 'c1', 10, 2000);
      await sleep(30);
      await store.xadd('events', { n: '3' });
      const next = await waiting;
      assert.deepEqual(next.map((e) => e.fields.n), ['3']);
      assert.ok(Date.now() - started < 1500);
    });

    test('keysWithPrefix lists live keys under a prefix, matched literally', async () => {
      await store.set('kp:[x]*:1', 'a');
      await store.set('kp:[x]*:2', 'b');
      await store.set('kp:other', 'c');
      await store.set('kp:[x]*:gone', 'd', { ttlMs: 1 });
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual((await store.keysWithPrefix('kp:[x]*:')).sort(), ['kp:[x]*:1', 'kp:[x]*:2']);
    });

    test('ping', async () => {
      assert.equal(await store.ping(), true);
    });
  });
}

test('the in-process store frees expired keys nobody reads again', async () => {
  const store = new MemoryStore({ sweepIntervalMs: 20 });
  try {
    for (let i = 0; i < 50; i++) await store.set(`old:${i}`, 'x'.repeat(1000), { ttlMs: 10 });
    await store.set('kept', 'y');
    await store.sadd('expiring-set', 'a');
    await store.pexpire('expiring-set', 10);
    const deadline = Date.now() + 5000;
    while (store.size > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(store.size, 1);
    assert.equal(await store.get('kept'), 'y');
  } finally {
    await store.close();
  }
});

test('redis keys carry the configured prefix', async () => {
  const prefix = testRedisPrefix();
  const a = new RedisStore({ url: TEST_REDIS_URL, prefix });
  const b = new RedisStore({ url: TEST_REDIS_URL, prefix: testRedisPrefix() });
  try {
    await a.set('k', 'from-a');
    assert.equal(await b.get('k'), null);
    const { Redis } = await import('ioredis');
    const raw = new Redis(TEST_REDIS_URL);
    assert.equal(await raw.get(`${prefix}k`), 'from-a');
    await raw.quit();
    await a.del('k');
  } finally {
    await a.close();
    await b.close();
  }
});

test('a redis store pointed at a dead port fails fast instead of hanging', async () => {
  const store = new RedisStore({ url: 'redis://127.0.0.1:1', prefix: 'x:' });
  try {
    const started = Date.now();
    await assert.rejects(store.get('k'));
    assert.equal(await store.ping(), false);
    assert.ok(Date.now() - started < 3000);
  } finally {
    await store.close();
  }
});
