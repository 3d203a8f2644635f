// `gatehouse migrations up|status` as a user runs them (the real bin/gatehouse.js in a child
// process), on a real Postgres and on an embedded PGlite in a temporary data directory: the
// output, the exit codes and the `_prisma_migrations` rows with their checksums.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openDatabase, readMigrations, type Database } from '@gatehouse/core';
import { createTestDatabase, tempDir, type TestDatabase } from '@gatehouse/core/testing.ts';

const root = join(import.meta.dirname, '../../..');
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function gatehouse(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bin/gatehouse.js'), ...args], {
      env: { ...process.env, DATABASE_URL: '', REDIS_URL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const files = readMigrations();

async function checkRows(db: Database) {
  const rows = await db.sql.query<{
    migration_name: string;
    checksum: string;
    finished_at: Date | null;
    rolled_back_at: Date | null;
    applied_steps_count: number;
    logs: string | null;
  }>('SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count, logs FROM "_prisma_migrations" ORDER BY migration_name');
  assert.deepEqual(
    rows.map((r) => [r.migration_name, r.checksum]),
    files.map((f) => [f.name, f.checksum]),
    'one row per migration with the SHA-256 of its file',
  );
  for (const r of rows) {
    assert.ok(r.finished_at, 'finished');
    assert.equal(r.rolled_back_at, null);
    assert.equal(r.applied_steps_count, 1);
    assert.match(r.checksum, /^[0-9a-f]{64}$/);
  }
  // The schema is really there.
  const tables = await db.sql.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
  );
  for (const t of ['services', 'routes', 'consumers', 'plugins', 'config_version', 'oauth2_credentials', 'oauth2_tokens']) {
    assert.ok(tables.some((x) => x.table_name === t), `table ${t}`);
  }
}

async function scenario(env: Record<string, string>, open: () => Promise<Database>) {
  const pending = await gatehouse(['migrations', 'status'], env);
  assert.equal(pending.code, 0, pending.stderr);
  for (const f of files) assert.match(pending.stdout, new RegExp(`^pending\\s+${f.name}$`, 'm'));
  assert.match(pending.stdout, new RegExp(`${files.length} migrations: 0 applied, ${files.length} pending`));

  const up = await gatehouse(['migrations', 'up'], env);
  assert.equal(up.code, 0, up.stderr);
  for (const f of files) assert.match(up.stdout, new RegExp(`^applied ${f.name}$`, 'm'));

  const again = await gatehouse(['migrations', 'up'], env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /database is up to date/);

  const applied = await gatehouse(['migrations', 'status'], env);
  assert.equal(applied.code, 0);
  for (const f of files) assert.match(applied.stdout, new RegExp(`^applied\\s+${f.name}\\s+\\d{4}-\\d\\d-\\d\\dT`, 'm'));

  let db = await open();
  try {
    await checkRows(db);
    // A migration file changed after it was applied shows as modified (exit code 1).
    await db.sql.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, ['0'.repeat(64), files[0].name]);
  } finally {
    await db.close();
  }
  const modified = await gatehouse(['migrations', 'status'], env);
  assert.equal(modified.code, 1);
  assert.match(modified.stdout, new RegExp(`^modified\\s+${files[0].name}`, 'm'));
  const refused = await gatehouse(['migrations', 'up'], env);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^gatehouse: migration .* was changed after it was applied \(checksum mismatch\)\n$/);

  db = await open();
  try {
    await db.sql.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, [files[0].checksum, files[0].name]);
  } finally {
    await db.close();
  }
}

test('migrations up and status on Postgres', async () => {
  const testDb: TestDatabase = await createTestDatabase({ migrate: false });
  cleanups.push(() => testDb.drop());
  await scenario({ DATABASE_URL: testDb.url }, () => openDatabase({ databaseUrl: testDb.url, dataDir: '/tmp' }));
});

test('migrations up and status on the embedded PGlite (no DATABASE_URL)', async () => {
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  await scenario({ GATEHOUSE_DATA_DIR: dir.path }, () => openDatabase({ databaseUrl: null, dataDir: dir.path }));
});

test('configuration and connection errors are one line and exit 1', async () => {
  const bad = await gatehouse(['migrations', 'status'], { GATEHOUSE_WORKERS: 'lots' });
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, "gatehouse: GATEHOUSE_WORKERS: expected a whole number from 1 to 256, got 'lots'\n");
  const listen = await gatehouse(['control-plane'], { GATEHOUSE_ADMIN_LISTEN: 'nonsense' });
  assert.equal(listen.code, 1);
  assert.match(listen.stderr, /^gatehouse: GATEHOUSE_ADMIN_LISTEN: 'nonsense' is not of the form addr:port \[ssl\]\n$/);
  const down = await gatehouse(['migrations', 'status'], { DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/nowhere' });
  assert.equal(down.code, 1);
  assert.equal(down.stderr.trim().split('\n').length, 1, down.stderr);
  assert.match(down.stderr, /^gatehouse: cannot connect to the database/);
  const usage = await gatehouse(['migrations', 'sideways'], {});
  assert.equal(usage.code, 1);
});
