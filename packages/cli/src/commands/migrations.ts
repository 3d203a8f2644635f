// `gatehouse migrations up|status`: the SQL migrations in prisma/migrations, recorded in
// `_prisma_migrations` as `prisma migrate deploy` records them.
import type { Command } from 'commander';
import type { Database } from '@gatehouse/core/db/client.ts';
import { action, configFromEnv } from '../util.ts';

async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const config = configFromEnv();
  const { openDatabase } = await import('@gatehouse/core/db/client.ts');
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    return await fn(db);
  } finally {
    await db.close().catch(() => {});
  }
}

export function register(program: Command): void {
  const migrations = program.command('migrations').description('database schema migrations');

  migrations
    .command('up')
    .description('apply pending migrations')
    .action(
      action(async () => {
        await withDatabase(async (db) => {
          const { migrateUp } = await import('@gatehouse/core/db/migrations.ts');
          const applied = await migrateUp(db.sql);
          if (applied.length === 0) process.stdout.write(`database is up to date (${db.kind}: ${db.location})\n`);
          for (const name of applied) process.stdout.write(`applied ${name}\n`);
        });
      }),
    );

  migrations
    .command('status')
    .description('list applied, pending and modified migrations')
    .action(
      action(async () => {
        await withDatabase(async (db) => {
          const { migrationStatus } = await import('@gatehouse/core/db/migrations.ts');
          const states = await migrationStatus(db.sql);
          process.stdout.write(`database: ${db.kind} (${db.location})\n`);
          for (const s of states) {
            const when = s.appliedAt ? `  ${new Date(s.appliedAt).toISOString()}` : '';
            process.stdout.write(`${s.status.padEnd(8)} ${s.name}${when}\n`);
          }
          const pending = states.filter((s) => s.status === 'pending').length;
          const bad = states.filter((s) => s.status === 'modified' || s.status === 'failed').length;
          process.stdout.write(`${states.length} migrations: ${states.length - pending - bad} applied, ${pending} pending${bad ? `, ${bad} modified or failed` : ''}\n`);
          if (bad) process.exitCode = 1;
        });
      }),
    );
}
