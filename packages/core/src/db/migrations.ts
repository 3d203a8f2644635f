// Applies prisma/migrations/<stamp>_<name>/migration.sql in order and records them in
// `_prisma_migrations` exactly as `prisma migrate deploy` does (same table, same checksum:
// SHA-256 of the file), so a later switch to Prisma's own tooling sees a consistent history.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SqlRunner } from './client.ts';

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../../prisma/migrations');

// Arbitrary constant: serialises concurrent `migrations up` runs (several control planes starting).
const ADVISORY_LOCK_KEY = 72707369;

export interface MigrationFile {
  name: string;
  checksum: string;
  sql: string;
}

export interface MigrationState {
  name: string;
  status: 'applied' | 'pending' | 'failed' | 'modified';
  appliedAt: Date | null;
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export function readMigrations(dir = MIGRATIONS_DIR): MigrationFile[] {
  if (!existsSync(dir)) throw new MigrationError(`migrations folder not found: ${dir}`);
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

const CREATE_TABLE = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

interface Row {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

async function appliedRows(sql: Pick<SqlRunner, 'query'>): Promise<Row[]> {
  const exists = await sql.query<{ t: string | null }>(`SELECT to_regclass('"_prisma_migrations"')::text AS t`);
  if (!exists[0]?.t) return [];
  return sql.query<Row>(
    `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL ORDER BY started_at`,
  );
}

export async function migrationStatus(sql: SqlRunner, dir = MIGRATIONS_DIR): Promise<MigrationState[]> {
  const rows = await appliedRows(sql);
  return readMigrations(dir).map((m) => {
    const row = rows.find((r) => r.migration_name === m.name);
    if (!row) return { name: m.name, status: 'pending', appliedAt: null };
    if (!row.finished_at) return { name: m.name, status: 'failed', appliedAt: null };
    return { name: m.name, status: row.checksum === m.checksum ? 'applied' : 'modified', appliedAt: row.finished_at };
  });
}

/** Applies pending migrations, each in its own transaction. Returns the names applied. */
export async function migrateUp(sql: SqlRunner, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = readMigrations(dir);
  return sql.withConnection(async (conn) => {
    await conn.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
    try {
      await conn.exec(CREATE_TABLE);
      const rows = await appliedRows(conn);
      const failed = rows.find((r) => !r.finished_at);
      if (failed) {
        throw new MigrationError(
          `migration ${failed.migration_name} failed earlier and was not finished; fix the database, then delete its row from "_prisma_migrations"`,
        );
      }
      const applied: string[] = [];
      for (const file of files) {
        const row = rows.find((r) => r.migration_name === file.name);
        if (row) {
          if (row.checksum !== file.checksum) {
            throw new MigrationError(`migration ${file.name} was changed after it was applied (checksum mismatch)`);
          }
          continue;
        }
        const id = randomUUID();
        await conn.exec('BEGIN');
        try {
          await conn.query(
            `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, now())`,
            [id, file.checksum, file.name],
          );
          await conn.exec(file.sql);
          await conn.query(
            `UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`,
            [id],
          );
          await conn.exec('COMMIT');
        } catch (err) {
          await conn.exec('ROLLBACK').catch(() => {});
          throw new MigrationError(`migration ${file.name} failed: ${(err as Error).message}`);
        }
        applied.push(file.name);
      }
      return applied;
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => {});
    }
  });
}
