// `gatehouse data-plane` as a process: refuses to start without REDIS_URL (even with a
// DATABASE_URL), and with Redis unreachable and no disk cache it starts and answers 503.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { getFreePort, tempDir } from '@gatehouse/core/testing.ts';
import { req, waitFor } from './helpers.ts';

const root = join(import.meta.dirname, '../../..');
const bin = join(root, 'bin/gatehouse.js');
const baseEnv = () => {
  const env = { ...process.env };
  for (const k of ['DATABASE_URL', 'REDIS_URL', 'GATEHOUSE_REDIS_PREFIX', 'GATEHOUSE_DATA_DIR']) delete env[k];
  return env;
};

describe('gatehouse data-plane (process)', () => {
  test('refuses to start without REDIS_URL, with a message that says why, whatever DATABASE_URL says', () => {
    const dir = tempDir();
    try {
      const res = spawnSync(process.execPath, [bin, 'data-plane'], {
        env: { ...baseEnv(), DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/postgres', GATEHOUSE_DATA_DIR: dir.path },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(res.status, 1);
      assert.match(res.stderr, /^gatehouse: REDIS_URL is not set: a data plane receives its configuration from the control plane through Redis/);
      assert.match(res.stderr, /never uses DATABASE_URL/);
    } finally {
      dir.remove();
    }
  });

  test('Redis unreachable and no disk cache: starts, answers 503 naming Redis, stops on SIGTERM', async () => {
    const dir = tempDir();
    const port = await getFreePort();
    const deadRedis = await getFreePort();
    const child = spawn(process.execPath, [bin, 'data-plane'], {
      env: { ...baseEnv(), REDIS_URL: `redis://:secret@127.0.0.1:${deadRedis}`, GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`, GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_WORKERS: '1', GATEHOUSE_LOG_LEVEL: 'error' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor('proxy listening', () => /proxy listening on http:\/\/127\.0\.0\.1:\d+/.test(output), 60_000, 50);
      const res = await req(port, '/anything');
      assert.equal(res.status, 503);
      // The password never shows.
      assert.deepEqual(res.json(), { message: `no configuration loaded yet: waiting for the control plane (Redis at redis://127.0.0.1:${deadRedis})` });
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      dir.remove();
    }
  });

  test('startup failures are one line naming what to fix: a proxy port taken, a database that cannot be reached', async () => {
    const dir = tempDir();
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as import('node:net').AddressInfo).port;
    const deadDb = await getFreePort();
    try {
      const dp = spawnSync(process.execPath, [bin, 'data-plane'], {
        env: { ...baseEnv(), REDIS_URL: 'redis://127.0.0.1:6379', GATEHOUSE_REDIS_PREFIX: `cli-test-${process.pid}:`, GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`, GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_WORKERS: '1', GATEHOUSE_LOG_LEVEL: 'error' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(dp.status, 1);
      assert.equal(dp.stderr, `gatehouse: GATEHOUSE_PROXY_LISTEN: cannot listen on 127.0.0.1:${port}: EADDRINUSE\n`);
      const start = spawnSync(process.execPath, [bin, 'start'], {
        env: { ...baseEnv(), DATABASE_URL: `postgresql://postgres@127.0.0.1:${deadDb}/postgres`, GATEHOUSE_DATA_DIR: dir.path, GATEHOUSE_LOG_LEVEL: 'error' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(start.status, 1);
      assert.match(start.stderr, /^gatehouse: cannot connect to the database \(DATABASE_URL\): .*ECONNREFUSED.*\n$/);
    } finally {
      taken.close();
      dir.remove();
    }
  });
});
