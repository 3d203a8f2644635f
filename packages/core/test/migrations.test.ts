import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { openDatabase, migrateUp, migrationStatus, readMigrations } from '../src/index.ts';
import { createTestDatabase, tempDir } from '../src/testing.ts';

const expectedTables = ['config_version', 'consumers', 'oauth2_authorization_codes', 'oauth2_credentials', 'oauth2_tokens', 'plugins', 'routes', 'services'];

async function checkBackend(databaseUrl: string | null, dataDir: string) {
  const db = await openDatabase({ databaseUrl, dataDir });
  try {
    const files = readMigrations();
    assert.ok(files.length >= 1);
    const before = await migrationStatus(db.sql);
    assert.deepEqual(before.map((m) => m.status), files.map(() => 'pending'));

    assert.deepEqual(await migrateUp(db.sql), files.map((f) => f.name));
    // Idempotent: a second run applies nothing.
    assert.deepEqual(await migrateUp(db.sql), []);

    const rows = await db.sql.query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }>(
      'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
    );
    assert.deepEqual(rows.map((r) => r.migration_name), files.map((f) => f.name));
    for (const [i, row] of rows.entries()) {
      assert.equal(row.checksum, createHash('sha256').update(files[i].sql).digest('hex'));
      assert.ok(row.finished_at);
      assert.equal(row.applied_steps_count, 1);
    }
    const status = await migrationStatus(db.sql);
    assert.ok(status.every((m) => m.status === 'applied' && m.appliedAt));

    const tables = await db.sql.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_prisma_migrations' ORDER BY table_name`,
    );
    assert.deepEqual(tables.map((t) => t.table_name), expectedTables);

    // The config version row exists from the start and the client reads it.
    const version = await db.prisma.configVersion.findUniqueOrThrow({ where: { id: 1 } });
    assert.equal(version.version, 0n);
  } finally {
    await db.close();
  }
}

test('migrations apply on real Postgres and are recorded as Prisma does', async () => {
  const testDb = await createTestDatabase({ migrate: false });
  try {
    await checkBackend(testDb.url, '/nonexistent');
  } finally {
    await testDb.drop();
  }
});

test('migrations apply on embedded PGlite under the data dir', async () => {
  const dir = tempDir();
  try {
    await checkBackend(null, dir.path);
    // Persisted: reopening the same data dir finds everything applied.
    const db = await openDatabase({ databaseUrl: null, dataDir: dir.path });
    try {
      const status = await migrationStatus(db.sql);
      assert.ok(status.length > 0 && status.every((m) => m.status === 'applied'));
    } finally {
      await db.close();
    }
  } finally {
    dir.remove();
  }
});

test('a migration edited after it was applied is reported and refused', async () => {
  const testDb = await createTestDatabase();
  const db = await openDatabase({ databaseUrl: testDb.url, dataDir: '/nonexistent' });
  try {
    const [first] = readMigrations();
    await db.sql.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, ['0'.repeat(64), first.name]);
    const status = await migrationStatus(db.sql);
    assert.equal(status.find((m) => m.name === first.name)?.status, 'modified');
    await assert.rejects(migrateUp(db.sql), /changed after it was applied/);
  } finally {
    await db.close();
    await testDb.drop();
  }
});

test('concurrent migration runs apply each migration once', async () => {
  const testDb = await createTestDatabase({ migrate: false });
  const a = await openDatabase({ databaseUrl: testDb.url, dataDir: '/nonexistent' });
  const b = await openDatabase({ databaseUrl: testDb.url, dataDir: '/nonexistent' });
  try {
    const [ra, rb] = await Promise.all([migrateUp(a.sql), migrateUp(b.sql)]);
    assert.equal(ra.length + rb.length, readMigrations().length);
    const rows = await a.sql.query('SELECT 1 FROM "_prisma_migrations"');
    assert.equal(rows.length, readMigrations().length);
  } finally {
    await a.close();
    await b.close();
    await testDb.drop();
  }
});
