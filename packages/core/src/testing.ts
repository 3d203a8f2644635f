// Helpers for tests: each test file gets its own Postgres database and Redis key prefix, so
// files run in parallel against the same servers without seeing each other.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from './db/client.ts';
import { migrateUp } from './db/migrations.ts';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates an empty database `gh_test_<random>` (migrated unless told otherwise). */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `gh_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  if (options.migrate !== false) {
    const db = await openDatabase({ databaseUrl: url.toString(), dataDir: tmpdir() });
    await migrateUp(db.sql);
    await db.close();
  }
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

export function testRedisPrefix(): string {
  return `gh_test_${randomBytes(6).toString('hex')}:`;
}

export function tempDir(prefix = 'gatehouse-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function openTestDatabase(): Promise<{ db: Database; testDb: TestDatabase; close(): Promise<void> }> {
  const testDb = await createTestDatabase();
  const db = await openDatabase({ databaseUrl: testDb.url, dataDir: tmpdir() });
  return {
    db,
    testDb,
    async close() {
      await db.close();
      await testDb.drop();
    },
  };
}

/** A TCP port free on 127.0.0.1 right now (for tests that start separate processes). */
export async function getFreePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
